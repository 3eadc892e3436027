//! `ledger stack`.

use std::process::ExitCode;

/// Arguments of `ledger stack`.
#[derive(Debug, clap::Args)]
pub(crate) struct StackArgs {}

pub(crate) async fn run(_args: StackArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger stack` is not implemented yet")
}
