//! `ledger reconcile`: ledger reconciliation.

use std::process::ExitCode;

use crate::config::ConfigArgs;

/// Arguments of `ledger reconcile`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let _config = args.config.load()?;
    anyhow::bail!("`ledger reconcile` is not implemented yet")
}
