//! `ledger process`.

use std::process::ExitCode;

/// Arguments of `ledger process`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProcessArgs {}

pub(crate) async fn run(_args: ProcessArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger process` is not implemented yet")
}
