//! `ledger migrate`: create or upgrade the ClickHouse schema (versioned, idempotent).

use std::process::ExitCode;

use anyhow::Context;
use ledger_clickhouse::{ClickHouseConfig, MigrationStatus, Migrator};

/// Where the ledger lives; shared by `ledger migrate` and `ledger report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(long, env = "LEDGER__CLICKHOUSE__URL", default_value = ledger_clickhouse::DEFAULT_URL, value_name = "URL")]
    pub(crate) clickhouse_url: String,
    /// Database of the ledger.
    #[arg(long, env = "LEDGER__CLICKHOUSE__DATABASE", default_value = ledger_clickhouse::DEFAULT_DATABASE, value_name = "NAME")]
    pub(crate) database: String,
    /// ClickHouse user (default: the server's `default` user).
    #[arg(long, env = "LEDGER__CLICKHOUSE__USER", value_name = "USER")]
    pub(crate) clickhouse_user: Option<String>,
    /// ClickHouse password (prefer the environment variable).
    #[arg(long, env = "LEDGER__CLICKHOUSE__PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub(crate) clickhouse_password: Option<String>,
}

impl ClickHouseArgs {
    /// The connection settings.
    pub(crate) fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: self.clickhouse_url.clone(),
            database: self.database.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
        }
    }
}

/// Turns a connection failure into advice; other errors keep their context.
pub(crate) fn explain(e: ledger_clickhouse::Error, url: &str) -> anyhow::Error {
    if e.is_connection() {
        anyhow::anyhow!(
            "cannot reach ClickHouse at {url}: {e}\nIs it running? Start the local stack with `ledger stack up`, \
             or pass --clickhouse-url / set LEDGER__CLICKHOUSE__URL."
        )
    } else {
        anyhow::Error::new(e)
    }
}

/// Arguments of `ledger migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) clickhouse: ClickHouseArgs,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let config = args.clickhouse.config();
    let client = config.client().context("invalid ClickHouse settings")?;
    let migrator = Migrator::new(&config.database)?;
    let report = migrator.migrate(&client).await.map_err(|e| explain(e, &config.url))?;
    for o in &report.outcomes {
        let status = match o.status {
            MigrationStatus::Applied => "applied",
            MigrationStatus::AlreadyApplied => "already present",
        };
        println!("{:04}_{:<20} {status}", o.version, o.name);
    }
    println!(
        "database {}: {} applied, {} already present",
        report.database,
        report.applied().len(),
        report.already_applied().len()
    );
    Ok(ExitCode::SUCCESS)
}
