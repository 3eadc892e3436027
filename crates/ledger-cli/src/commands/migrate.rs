//! `ledger migrate`: create or upgrade the ClickHouse schema (versioned, idempotent).

use std::process::ExitCode;

use anyhow::Context;
use ledger_clickhouse::{ClickHouseConfig, Migrator};

/// Where the ledger lives; shared by `ledger migrate` and `ledger report`. The flags override
/// the config file and the `LEDGER__CLICKHOUSE__*` environment variables.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClickHouseArgs {
    #[command(flatten)]
    pub(crate) config: crate::config::ConfigArgs,
    /// ClickHouse HTTP endpoint [default: clickhouse.url, http://127.0.0.1:8123].
    #[arg(long, value_name = "URL")]
    pub(crate) clickhouse_url: Option<String>,
    /// Database of the ledger [default: clickhouse.database, ledger].
    #[arg(long, value_name = "NAME")]
    pub(crate) database: Option<String>,
    /// ClickHouse user (default: the server's `default` user). The password comes from the
    /// config file or LEDGER__CLICKHOUSE__PASSWORD / LEDGER__CLICKHOUSE__PASSWORD_FILE, never a
    /// flag (flags show in `ps` and shell history).
    #[arg(long, value_name = "USER")]
    pub(crate) clickhouse_user: Option<String>,
}

impl ClickHouseArgs {
    /// The connection settings: defaults < config file < environment < flags.
    pub(crate) fn config(&self) -> anyhow::Result<ClickHouseConfig> {
        let mut c = self.config.load()?.clickhouse;
        if let Some(v) = &self.clickhouse_url {
            c.url = v.clone();
        }
        if let Some(v) = &self.database {
            c.database = v.clone();
        }
        if let Some(v) = &self.clickhouse_user {
            c.user = Some(v.clone());
        }
        Ok(c)
    }
}

/// Arguments of `ledger migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) clickhouse: ClickHouseArgs,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let config = args.clickhouse.config()?;
    let client = config.client().context("invalid ClickHouse settings")?;
    let migrator = Migrator::new(&config.database)?;
    let report = migrator.migrate(&client).await.map_err(|e| ledger_ops::OpsError::clickhouse(e, &config.url))?;
    print!("{}", report.to_text());
    Ok(ExitCode::SUCCESS)
}
