//! Typed processor configuration: defaults < file < `LEDGER__` environment variables.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ledger_clickhouse::ClickHouseConfig;
use ledger_core::acceptance::AcceptanceRules;
use ledger_kafka::{KafkaConfig, TopicNames};
use serde::{Deserialize, Serialize};

/// Everything `ledger process` needs: the shared connections plus its own settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessorConfig {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicNames,
    /// ClickHouse connection and database.
    pub clickhouse: ClickHouseConfig,
    /// The processor's own settings (the `[processor]` section of the config file).
    pub settings: ProcessorSettings,
}

/// The processor's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorSettings {
    /// Consumer group of the processors.
    pub group_id: String,
    /// Stable identity of this instance in the group (Kafka static membership,
    /// `group.instance.id`): a restarted instance takes its partitions back at once instead of
    /// waiting for the session timeout. Must differ between instances; none for dynamic membership.
    pub instance_id: Option<String>,
    /// Partitions of each topic when the processor has to create it.
    pub partitions: i32,
    /// Price catalog sources, in any order (sorted by `effective_from`). Default: the shipped
    /// catalog, LiteLLM's whole file ([`DEFAULT_CATALOG`]).
    pub catalogs: Vec<CatalogSourceConfig>,
    /// Local pricing rules (model aliases and price overrides, docs/pricing.md), a TOML file;
    /// none by default.
    pub pricing_rules: Option<PathBuf>,
    /// Batching of ClickHouse inserts.
    pub batch: BatchConfig,
    /// Idempotency by `event_id`.
    pub dedupe: DedupeConfig,
    /// Which event times are accepted.
    pub acceptance: AcceptanceRules,
    /// Seconds to finish the batch in flight after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// `host:port` of the Prometheus `/metrics` and `/healthz` endpoint; none to disable.
    pub metrics_addr: Option<String>,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        ProcessorSettings {
            group_id: "ledger-processor".to_owned(),
            instance_id: None,
            partitions: 4,
            catalogs: vec![CatalogSourceConfig { path: PathBuf::from(DEFAULT_CATALOG), effective_from: None, name: None }],
            pricing_rules: None,
            batch: BatchConfig::default(),
            dedupe: DedupeConfig::default(),
            acceptance: AcceptanceRules::default(),
            shutdown_grace_secs: 30,
            metrics_addr: None,
        }
    }
}

/// The shipped catalog (relative to the working directory): LiteLLM's file itself, every entry
/// with token prices (catalog/README.md).
pub const DEFAULT_CATALOG: &str = "catalog/sources/litellm-1.110.2-model_prices_and_context_window.json";

/// One catalog source: a LiteLLM-format file and the instant its prices take effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSourceConfig {
    /// Path of the JSON file.
    pub path: PathBuf,
    /// When its prices take effect (default: the beginning of time).
    #[serde(default)]
    pub effective_from: Option<DateTime<Utc>>,
    /// Version name (default: the file stem).
    #[serde(default)]
    pub name: Option<String>,
}

/// When the pending rows are written.
///
/// The assigned partitions are dealt over `concurrent_inserts` lanes; each lane's partitions
/// go in one insert, and each lane has at most one insert in flight, so a partition's rows
/// still land in offset order while the lanes' inserts overlap (ClickHouse runs one insert on
/// one core). At most `2 x concurrent_inserts x max_rows` rows are held: pending and in flight.
///
/// Latency against ClickHouse CPU: each insert writes a part of the ledger and of each rollup
/// (about 260 files) that background merges later rewrite, so ClickHouse's CPU goes with the
/// number of inserts as much as with the rows. The default `max_delay_ms` (200) keeps budget
/// signals within a second (`budget_loop`, at 100 ms: p99 0.2-0.25 s at 1,000-50,000 events/s). For
/// throughput, `max_delay_ms = 1000` makes about one insert a second, as ClickHouse advises: at
/// 100,000 events/s, 100,000-row inserts each second instead of about 46,000-row ones every 0.4 s
/// took ClickHouse from 8.3 to 6.8-7.1 us of CPU per row (`benches/sustained.sh`; at 150,000
/// events/s, 4.7 against 5.7 us with 200 ms), while signals then took p99 1.1-1.4 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Write a lane once this many of its rows (and dead letters) are pending. Default 100,000
    /// (the most a batch may hold; about 45 MB encoded).
    pub max_rows: usize,
    /// Write a lane this long after its first pending row arrived, or, when its insert is
    /// still in flight then, as soon as that completes. Default 200 (see above for 1,000).
    pub max_delay_ms: u64,
    /// Lanes: inserts in flight at once, each of other partitions. Default 1: with keys as
    /// skewed as tenants usually are, one partition carries most rows and its inserts stay
    /// serial anyway, while a second lane adds small inserts, and ClickHouse pays about
    /// 60-170 ms of CPU per insert whatever its size. Worth 2 when partitions are even.
    pub concurrent_inserts: usize,
}

/// Most lanes [`BatchConfig::concurrent_inserts`] accepts.
pub const MAX_CONCURRENT_INSERTS: usize = 8;

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_rows: 100_000, max_delay_ms: 200, concurrent_inserts: 1 }
    }
}

/// Idempotency settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    /// A resend within this many seconds of the original is counted once.
    pub horizon_secs: u64,
    /// At most this many ids are held per partition (oldest evicted first). The default,
    /// 1,800,000, is about 48 MiB per partition in steady use: the id index is a power-of-two
    /// hash table, which evictions take to 2^22 slots; up to 1,835,008 ids keep it there
    /// (2,000,000 would double it to 2^23).
    pub capacity_per_partition: usize,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig { horizon_secs: 3600, capacity_per_partition: 1_800_000 }
    }
}

impl ProcessorConfig {
    /// Cross-field checks; every problem is reported, not just the first.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.kafka.brokers.trim().is_empty() {
            problems.push("kafka.brokers is empty".to_owned());
        }
        let s = &self.settings;
        if s.group_id.trim().is_empty() {
            problems.push("processor.group_id is empty".to_owned());
        }
        if s.partitions < 1 {
            problems.push(format!("processor.partitions must be at least 1 (got {})", s.partitions));
        }
        if s.catalogs.is_empty() {
            problems.push("processor.catalogs: at least one catalog source is required".to_owned());
        }
        let limit = ledger_clickhouse::writer::MAX_BATCH_ROWS;
        if s.batch.max_rows == 0 || s.batch.max_rows > limit {
            problems.push(format!(
                "processor.batch.max_rows must be within 1..={limit} so one insert stays one ClickHouse block (got {})",
                s.batch.max_rows
            ));
        }
        if !(1..=MAX_CONCURRENT_INSERTS).contains(&s.batch.concurrent_inserts) {
            problems.push(format!(
                "processor.batch.concurrent_inserts must be within 1..={MAX_CONCURRENT_INSERTS} (got {})",
                s.batch.concurrent_inserts
            ));
        }
        if s.dedupe.horizon_secs == 0 {
            problems.push("processor.dedupe.horizon_secs must be positive".to_owned());
        }
        problems.extend(s.acceptance.problems("processor.acceptance"));
        let names = [&self.topics.usage, &self.topics.dead_letter, &self.topics.spend, &self.topics.signals];
        for (i, a) in names.iter().enumerate() {
            if a.is_empty() {
                problems.push("topic names must not be empty".to_owned());
            }
            if names[i + 1..].contains(a) {
                problems.push(format!("topic {a} is configured for two roles"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ProcessorConfig::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = ProcessorConfig::default();
        c.settings.batch.max_rows = 0;
        c.settings.batch.concurrent_inserts = 0;
        c.settings.dedupe.horizon_secs = 0;
        c.settings.group_id = " ".into();
        c.topics.spend = c.topics.usage.clone();
        let problems = c.validate().unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems.iter().any(|p| p.contains("max_rows")));
        assert!(problems.iter().any(|p| p.contains("concurrent_inserts must be within 1..=8 (got 0)")));
        assert!(problems.iter().any(|p| p.contains("two roles")));
    }
}
