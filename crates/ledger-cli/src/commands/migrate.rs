//! `ledger migrate`.

use std::process::ExitCode;

/// Arguments of `ledger migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {}

pub(crate) async fn run(_args: MigrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger migrate` is not implemented yet")
}
