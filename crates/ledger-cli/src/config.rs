//! `--config FILE` and the flags that override it; the configuration itself is
//! [`ledger_ops::config::LedgerConfig`] (defaults < file < `LEDGER__*` environment).

pub(crate) use ledger_ops::config::LedgerConfig;

/// `--config FILE`, shared by the commands that talk to Kafka or ClickHouse.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConfigArgs {
    /// TOML config file (see config/ledger.example.toml); `LEDGER__*` env vars override it.
    #[arg(long, short = 'c', env = "LEDGER_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) brokers: Option<String>,
}

impl ConfigArgs {
    /// Loads the configuration and applies the command-line overrides.
    pub(crate) fn load(&self) -> anyhow::Result<LedgerConfig> {
        let mut config = LedgerConfig::load(self.config.as_deref())?;
        if let Some(b) = &self.brokers {
            config.kafka.brokers = b.clone();
        }
        Ok(config)
    }
}
