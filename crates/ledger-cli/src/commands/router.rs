//! `ledger router serve`: `POST /v1/decide` beside `POST /v1/usage`, for services in any
//! language ([`ledger_ingest::run()`] with the router; docs/router.md).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::ConfigArgs;

/// Arguments of `ledger router`.
#[derive(Debug, clap::Args)]
#[command(after_help = ledger_ingest::ROUTER_HELP)]
pub(crate) struct RouterArgs {
    #[command(subcommand)]
    command: RouterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RouterCommand {
    /// Serve POST /v1/decide and POST /v1/usage (the ingest server with a router).
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to listen on (overrides ingest.listen).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Tenant API keys file (overrides ingest.api_keys_file).
        #[arg(long, value_name = "FILE")]
        api_keys: Option<PathBuf>,
    },
}

pub(crate) async fn run(args: RouterArgs) -> anyhow::Result<ExitCode> {
    let RouterCommand::Serve { config, listen, api_keys } = args.command;
    let mut config = config.load()?;
    config.ingest.listen = listen.unwrap_or(config.ingest.listen);
    config.ingest.api_keys_file = api_keys.unwrap_or(config.ingest.api_keys_file);
    let launch = config.ingest_launch(true)?;
    let shutdown = ledger_ops::service::start(None, String::new);
    ledger_ingest::run(launch, async move { shutdown.cancelled().await }).await?;
    tracing::info!("router stopped");
    Ok(ExitCode::SUCCESS)
}
