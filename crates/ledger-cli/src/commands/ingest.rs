//! `ledger ingest`: the HTTP ingest server.

use std::process::ExitCode;

use crate::config::ConfigArgs;

/// Arguments of `ledger ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let _config = args.config.load()?;
    anyhow::bail!("`ledger ingest` is not implemented yet")
}
