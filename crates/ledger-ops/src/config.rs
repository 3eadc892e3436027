//! The `ledger` configuration file and environment: built-in defaults < config file (TOML) < `LEDGER__*` env vars.
//!
//! Nested keys use `__` in environment variables: `LEDGER__KAFKA__BROKERS=host:9092`,
//! `LEDGER__CLICKHOUSE__URL=http://host:8123`, `LEDGER__PROCESSOR__BATCH__MAX_ROWS=50000`.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider as _};
use serde::{Deserialize, Serialize};

use ledger_clickhouse::ClickHouseConfig;
use ledger_enforcer::config::EnforcerSettings;
use ledger_ingest::config::IngestSettings;
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_notify::NotifySettings;
use ledger_processor::config::{ProcessorConfig, ProcessorSettings};
use ledger_registry::SchemaSettings;
use ledger_router::RouterSettings;

use crate::OpsError;

/// The sections of the configuration file.
const SECTIONS: [&str; 9] = ["kafka", "topics", "clickhouse", "schema", "processor", "enforcer", "ingest", "notify", "router"];

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
    /// Framing of usage events, Confluent schema ids and the schema registry.
    pub schema: SchemaSettings,
    /// `ledger process` settings.
    pub processor: ProcessorSettings,
    /// `ledger enforce` settings.
    pub enforcer: EnforcerSettings,
    /// `ledger ingest` settings (also the HTTP server of `ledger router serve`).
    pub ingest: IngestSettings,
    /// `ledger notify` settings.
    pub notify: NotifySettings,
    /// `ledger router serve` settings.
    pub router: RouterSettings,
}

impl LedgerConfig {
    /// What `ledger notify` runs with; the budgets file is `budgets`, else `notify.budgets_file`,
    /// else `enforcer.budgets_file`.
    pub fn notifier_config(&self, budgets: Option<std::path::PathBuf>) -> ledger_notify::NotifierConfig {
        let budgets_file = budgets.or(self.notify.budgets_file.clone()).unwrap_or(self.enforcer.budgets_file.clone());
        ledger_notify::NotifierConfig {
            kafka: self.kafka.clone(),
            signals_topic: self.topics.signals.clone(),
            partitions: self.enforcer.partitions,
            replication: ledger_kafka::admin::Replication::of(&self.topics),
            settings: self.notify.clone(),
            budgets_file,
        }
    }

    /// Loads the layers; every error is reported with where it came from. Each section is read
    /// on its own, so a mistake in one does not hide the mistakes in the others (within a
    /// section, the first one is reported).
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
        let mut errors: Vec<String> = Vec::new();
        if let Ok(data) = figment.data() {
            for dict in data.values() {
                for key in dict.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
                    errors.push(format!("unknown section `{key}` (known: {})", SECTIONS.join(", ")));
                }
            }
        }
        fn section<T: serde::de::DeserializeOwned + Default>(figment: &Figment, name: &str, errors: &mut Vec<String>) -> T {
            figment.extract_inner::<T>(name).unwrap_or_else(|e| {
                errors.extend(e.into_iter().map(|e| e.to_string()));
                T::default()
            })
        }
        let mut config = LedgerConfig {
            kafka: section(&figment, "kafka", &mut errors),
            topics: section(&figment, "topics", &mut errors),
            clickhouse: section(&figment, "clickhouse", &mut errors),
            schema: section(&figment, "schema", &mut errors),
            processor: section(&figment, "processor", &mut errors),
            enforcer: section(&figment, "enforcer", &mut errors),
            ingest: section(&figment, "ingest", &mut errors),
            notify: section(&figment, "notify", &mut errors),
            router: section(&figment, "router", &mut errors),
        };
        if errors.is_empty() {
            if let Err(e) = config.kafka.resolve_secrets() {
                errors.push(e.to_string());
            }
            errors.extend(config.schema.problems());
        }
        if !errors.is_empty() {
            let lines: Vec<String> = errors.into_iter().map(|e| format!("  - {e}")).collect();
            return Err(OpsError::Invalid(format!("invalid configuration:\n{}", lines.join("\n"))));
        }
        Ok(config)
    }

    /// What `ledger ingest` runs with; with `router`, what `ledger router serve` runs with: the
    /// same server plus the router. The processor's acceptance rules and catalog go to the door,
    /// so that what the processor would reject is refused there; without `router` a catalog that
    /// does not load leaves only the per-model token limits unchecked at the door (a warning: the
    /// processor checks them), while the router needs it to estimate calls.
    pub fn ingest_launch(&self, router: bool) -> Result<ledger_ingest::Launch, OpsError> {
        let (catalogs, rules) = (&self.processor.catalogs, self.processor.pricing_rules.as_deref());
        let catalog = match ledger_processor::catalog::load_catalog(catalogs, rules) {
            Ok(c) => Some(std::sync::Arc::new(c)),
            Err(e) if router => return Err(OpsError::Invalid(e)),
            Err(e) => {
                tracing::warn!("per-model token limits are not checked at the door: {e}");
                None
            }
        };
        let sidecar = match &catalog {
            Some(catalog) if router => {
                let problems = self.router.leases.problems();
                if !problems.is_empty() {
                    return Err(OpsError::Invalid(format!("invalid configuration:\n  - {}", problems.join("\n  - "))));
                }
                Some(ledger_ingest::SidecarLaunch {
                    config: self.router.router_config(&self.kafka, &self.topics),
                    catalog: catalog.clone(),
                    ready_timeout: std::time::Duration::from_millis(self.router.ready_timeout_ms),
                })
            }
            _ => None,
        };
        Ok(ledger_ingest::Launch {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            partitions: self.processor.partitions,
            settings: self.ingest.clone(),
            door: ledger_ingest::validate::Door { rules: Some(self.processor.acceptance), catalog },
            schema: self.schema.clone(),
            router: sidecar,
        })
    }

    /// The processor's view of the configuration, with cross-field checks.
    pub fn processor(&self) -> Result<ProcessorConfig, OpsError> {
        let config = ProcessorConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            clickhouse: self.clickhouse.clone(),
            schema: self.schema.clone(),
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
        std::fs::write(&file, "[kafka]\nbrokerz = \"x\"\n[processor.batch]\nmax_rows = \"many\"\n[colour]\nx = 1\n").unwrap();
        let err = LedgerConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("unknown field: found `brokerz`") && err.contains("bad.toml"), "{err}");
        assert!(err.contains("max_rows"), "a second section's mistake is reported too: {err}");
        assert!(err.contains("unknown section `colour`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
