//! `ledger budgets`: budget status.

use std::process::ExitCode;

use crate::config::ConfigArgs;

/// Arguments of `ledger budgets`.
#[derive(Debug, clap::Args)]
pub(crate) struct BudgetsArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) async fn run(args: BudgetsArgs) -> anyhow::Result<ExitCode> {
    let _config = args.config.load()?;
    anyhow::bail!("`ledger budgets` is not implemented yet")
}
