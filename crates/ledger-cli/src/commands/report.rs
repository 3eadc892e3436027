//! `ledger report`.

use std::process::ExitCode;

/// Arguments of `ledger report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {}

pub(crate) async fn run(_args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ledger report` is not implemented yet")
}
