//! The `ledger` configuration file and environment: built-in defaults < config file (TOML) < `LEDGER__*` env vars.
//!
//! Nested keys use `__` in environment variables: `LEDGER__KAFKA__BROKERS=host:9092`,
//! `LEDGER__CLICKHOUSE__URL=http://host:8123`, `LEDGER__PROCESSOR__BATCH__MAX_ROWS=50000`.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use ledger_clickhouse::ClickHouseConfig;
use ledger_enforcer::config::EnforcerSettings;
use ledger_ingest::config::IngestSettings;
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_processor::config::{ProcessorConfig, ProcessorSettings};

use crate::OpsError;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicNames,
    /// ClickHouse connection.
    pub clickhouse: ClickHouseConfig,
    /// `ledger process` settings.
    pub processor: ProcessorSettings,
    /// `ledger enforce` settings.
    pub enforcer: EnforcerSettings,
    /// `ledger ingest` settings.
    pub ingest: IngestSettings,
}

impl LedgerConfig {
    /// Loads the layers; every error is reported with where it came from.
    pub fn load(file: Option<&Path>) -> Result<LedgerConfig, OpsError> {
        let mut figment = Figment::from(Serialized::defaults(LedgerConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(OpsError::Invalid(format!(
                    "config file {} does not exist (pass an existing TOML file to --config)",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("LEDGER__").split("__").lowercase(true));
        figment.extract::<LedgerConfig>().map_err(|errors| {
            let lines: Vec<String> = errors.into_iter().map(|e| format!("  - {e}")).collect();
            OpsError::Invalid(format!("invalid configuration:\n{}", lines.join("\n")))
        })
    }

    /// The processor's view of the configuration, with cross-field checks.
    pub fn processor(&self) -> Result<ProcessorConfig, OpsError> {
        let config = ProcessorConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            clickhouse: self.clickhouse.clone(),
            settings: self.processor.clone(),
        };
        config
            .validate()
            .map_err(|problems| OpsError::Invalid(format!("invalid configuration:\n  - {}", problems.join("\n  - "))))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_and_unknown_keys_are_named() {
        let err = LedgerConfig::load(Some(Path::new("/nonexistent/ledger.toml"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ledger.toml does not exist"), "{err}");
        let dir = std::env::temp_dir().join(format!("ledger-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[kafka]\nbrokerz = \"x\"\n").unwrap();
        let err = LedgerConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("unknown field: found `brokerz`") && err.contains("bad.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
