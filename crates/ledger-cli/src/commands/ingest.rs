//! `ledger ingest`: the HTTP ingest server ([`ledger_ingest::run()`]), and `ledger ingest keys`,
//! which manages its API keys file ([`ledger_ingest::keys::file`]).

use std::path::PathBuf;
use std::process::ExitCode;

use ledger_ingest::keys::file::{self, NewKey, LIST_COLUMNS};

use crate::config::ConfigArgs;

/// Arguments of `ledger ingest`.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = ledger_ingest::HELP
)]
pub(crate) struct IngestArgs {
    #[command(subcommand)]
    command: Option<IngestCommand>,
    #[command(flatten)]
    keys: KeysFileArgs,
    /// Address to listen on (overrides ingest.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum IngestCommand {
    /// Manage the API keys file: add, list, revoke, import (a running server reloads it).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create a key for a tenant and print it once: only its SHA-256 hash is stored.
    Add {
        #[command(flatten)]
        keys: KeysFileArgs,
        /// The tenant whose usage the key may write.
        #[arg(long)]
        tenant: String,
        /// Who holds the key.
        #[arg(long)]
        name: Option<String>,
        /// Events per second (default: ingest.rate_limit; 0: no limit).
        #[arg(long, value_name = "EVENTS")]
        rate_limit: Option<u32>,
        /// Events sent at once at most (default: ingest.burst, else max(rate, ingest.max_events)).
        #[arg(long, value_name = "EVENTS")]
        burst: Option<u32>,
    },
    /// List the keys (never their secrets or hashes).
    List(KeysFileArgs),
    /// Revoke a key by its id: a running server answers it 401 within about a second.
    Revoke {
        #[command(flatten)]
        keys: KeysFileArgs,
        /// The key's id (`keys list`).
        id: String,
    },
    /// Hash the keys of a plain-text keys file of an earlier version in place; clients keep their keys.
    Import(KeysFileArgs),
}

/// Where the keys file is.
#[derive(Debug, clap::Args)]
struct KeysFileArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Tenant API keys file (overrides ingest.api_keys_file).
    #[arg(long, value_name = "FILE")]
    api_keys: Option<PathBuf>,
}

impl KeysFileArgs {
    fn settings(&self) -> anyhow::Result<(crate::config::LedgerConfig, ledger_ingest::IngestSettings)> {
        let config = self.config.load()?;
        let mut settings = config.ingest.clone();
        settings.api_keys_file = self.api_keys.clone().unwrap_or(settings.api_keys_file);
        Ok((config, settings))
    }
}

pub(crate) async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    if let Some(IngestCommand::Keys(command)) = args.command {
        return keys(command);
    }
    let (mut config, settings) = args.keys.settings()?;
    config.ingest = ledger_ingest::IngestSettings { listen: args.listen.unwrap_or(settings.listen.clone()), ..settings };
    let launch = config.ingest_launch(false)?;
    let shutdown = ledger_ops::service::start(None, String::new);
    ledger_ingest::run(launch, async move { shutdown.cancelled().await }).await?;
    tracing::info!("ingest stopped");
    Ok(ExitCode::SUCCESS)
}

fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        KeysCommand::Add { keys, tenant, name, rate_limit, burst } => {
            let path = keys.settings()?.1.api_keys_file;
            let added = file::add(&path, NewKey { tenant_id: tenant, name, rate_limit, burst }, now)?;
            println!("{}", added.key.expose());
            eprintln!("{}", added.note(&path));
        }
        KeysCommand::List(keys) => {
            let (_, settings) = keys.settings()?;
            let rows: Vec<Vec<String>> = file::list(&settings.api_keys_file)?.iter().map(|r| r.list_cells()).collect();
            println!("{}", super::table(&LIST_COLUMNS, rows, &[]));
            let default = settings.rate_limit.map_or("none".to_owned(), |r| format!("{r}/s"));
            println!("{}: rate limit \"default\" = ingest.rate_limit ({default})", settings.api_keys_file.display());
        }
        KeysCommand::Revoke { keys, id } => println!("{}", file::revoke(&keys.settings()?.1.api_keys_file, &id, now)?),
        KeysCommand::Import(keys) => {
            let path = keys.settings()?.1.api_keys_file;
            println!("{}", file::import(&path, now)?.describe(&path));
        }
    }
    Ok(ExitCode::SUCCESS)
}
