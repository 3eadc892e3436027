//! `ledger enforce`: the budget enforcer.

use std::process::ExitCode;

use crate::config::ConfigArgs;

/// Arguments of `ledger enforce`.
#[derive(Debug, clap::Args)]
pub(crate) struct EnforceArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) async fn run(args: EnforceArgs) -> anyhow::Result<ExitCode> {
    let _config = args.config.load()?;
    anyhow::bail!("`ledger enforce` is not implemented yet")
}
