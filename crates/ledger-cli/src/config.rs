//! The `ledger` configuration: built-in defaults < config file (TOML) < `LEDGER__*` env vars.
//!
//! Nested keys use `__` in environment variables: `LEDGER__KAFKA__BROKERS=host:9092`,
//! `LEDGER__CLICKHOUSE__URL=http://host:8123`, `LEDGER__PROCESSOR__BATCH__MAX_ROWS=50000`.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use ledger_clickhouse::ClickHouseConfig;
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_enforcer::config::EnforcerSettings;
use ledger_ingest::config::IngestSettings;
use ledger_processor::config::{ProcessorConfig, ProcessorSettings};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LedgerConfig {
    /// Kafka connection.
    pub(crate) kafka: KafkaConfig,
    /// Topic names.
    pub(crate) topics: TopicNames,
    /// ClickHouse connection.
    pub(crate) clickhouse: ClickHouseConfig,
    /// `ledger process` settings.
    pub(crate) processor: ProcessorSettings,
    /// `ledger enforce` settings.
    pub(crate) enforcer: EnforcerSettings,
    /// `ledger ingest` settings.
    pub(crate) ingest: IngestSettings,
}

impl LedgerConfig {
    /// Loads the layers; every error is reported with where it came from.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<LedgerConfig> {
        let mut figment = Figment::from(Serialized::defaults(LedgerConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist (pass an existing TOML file to --config)", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("LEDGER__").split("__").lowercase(true));
        figment.extract::<LedgerConfig>().map_err(|errors| {
            let lines: Vec<String> = errors.into_iter().map(|e| format!("  - {e}")).collect();
            anyhow::anyhow!("invalid configuration:\n{}", lines.join("\n"))
        })
    }

    /// The processor's view of the configuration, with cross-field checks.
    pub(crate) fn processor(&self) -> anyhow::Result<ProcessorConfig> {
        let config = ProcessorConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            clickhouse: self.clickhouse.clone(),
            settings: self.processor.clone(),
        };
        config.validate().map_err(|problems| {
            anyhow::anyhow!("invalid configuration:\n  - {}", problems.join("\n  - "))
        })?;
        Ok(config)
    }
}

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
