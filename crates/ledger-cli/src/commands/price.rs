//! `ledger price`.

use std::process::ExitCode;

/// Arguments of `ledger price`.
#[derive(Debug, clap::Args)]
pub(crate) struct PriceArgs {}

pub(crate) async fn run(_args: PriceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger price` is not implemented yet")
}
