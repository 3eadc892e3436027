//! `ledger prices`.

use std::process::ExitCode;

/// Arguments of `ledger prices`.
#[derive(Debug, clap::Args)]
pub(crate) struct PricesArgs {}

pub(crate) async fn run(_args: PricesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger prices` is not implemented yet")
}
