//! Kafka adapters of the LLM usage ledger.
//!
//! - [`KafkaConfig`]: broker address, librdkafka properties and the SASL password, shared by
//!   every client; [`check_connection`] fails fast, naming the setting to fix.
//! - [`admin`]: create the ledger's topics when missing (partitions, compaction).
//! - [`producer`]: an idempotent, acks=all producer.
//! - [`consumer`]: a manual-offset consumer whose rebalances are reported to the processor.
//! - [`reader`]: bounded reads of a topic up to a known end, and topic watermarks.
//! - [`dead_letter`]: the dead-letter record contract (headers, write and read back, fence).
//! - [`TopicNames`]: the topics of `docs/architecture.md`, every one configurable.

use serde::{Deserialize, Serialize};

pub mod admin;
pub mod consumer;
pub mod dead_letter;
pub mod producer;
pub mod reader;

mod config;
mod connect;
mod error;

pub use config::{is_secret, property_name, KafkaConfig};
pub use connect::check_connection;
pub use error::KafkaError;

/// `[topics]`: the ledger's topic names (`docs/architecture.md`, "Contracts") and the
/// replication of the topics the tools create (docs/deploy.md: 3 and 2 in production).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Usage events, key = tenant id.
    pub usage: String,
    /// Rejected events: original bytes plus reason headers.
    pub dead_letter: String,
    /// Cumulative spend aggregates (compacted).
    pub spend: String,
    /// Budget signals (compacted, key = scope).
    pub signals: String,
    /// Quota-lease requests of routers (key = budget; docs/budgets.md).
    pub lease_requests: String,
    /// Quota-lease grants of the enforcer (key = router instance).
    pub lease_grants: String,
    /// Replicas of each partition of a topic the tools create (1: a single broker).
    pub replication_factor: i32,
    /// `min.insync.replicas` of the topics the tools create (unset: the broker's default). With
    /// the producers' `acks=all`, a write is acknowledged once this many replicas have it.
    pub min_insync_replicas: Option<i32>,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            usage: "llm.usage.v1".to_owned(),
            dead_letter: "llm.usage.dlq.v1".to_owned(),
            spend: "llm.spend.v1".to_owned(),
            signals: "llm.budget-signals.v1".to_owned(),
            lease_requests: "llm.lease-requests.v1".to_owned(),
            lease_grants: "llm.lease-grants.v1".to_owned(),
            replication_factor: 1,
            min_insync_replicas: None,
        }
    }
}

impl TopicNames {
    /// All names with a common prefix, for tests that need their own topics.
    pub fn with_prefix(prefix: &str) -> Self {
        let d = TopicNames::default();
        TopicNames {
            usage: format!("{prefix}{}", d.usage),
            dead_letter: format!("{prefix}{}", d.dead_letter),
            spend: format!("{prefix}{}", d.spend),
            signals: format!("{prefix}{}", d.signals),
            lease_requests: format!("{prefix}{}", d.lease_requests),
            lease_grants: format!("{prefix}{}", d.lease_grants),
            ..d
        }
    }
}
