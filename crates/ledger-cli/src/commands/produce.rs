//! `ledger produce`.

use std::process::ExitCode;

/// Arguments of `ledger produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {}

pub(crate) async fn run(_args: ProduceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger produce` is not implemented yet")
}
