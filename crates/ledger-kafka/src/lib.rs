//! Kafka adapters of the LLM usage ledger.
//!
//! - [`KafkaConfig`]: broker address and librdkafka overrides, shared by every client.
//! - [`admin`]: create the ledger's topics when missing (partitions, compaction).
//! - [`producer`]: an idempotent, acks=all producer.
//! - [`consumer`]: a manual-offset consumer whose rebalances are reported to the processor.
//! - [`reader`]: bounded reads of a topic up to a known end, and topic watermarks.
//! - [`dead_letter`]: the dead-letter record contract (headers, write and read back, fence).
//! - [`TopicNames`]: the four topics of `docs/architecture.md`, every one configurable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod admin;
pub mod consumer;
pub mod dead_letter;
pub mod producer;
pub mod reader;

/// Connection settings shared by every Kafka client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied last.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig { brokers: "127.0.0.1:9092".to_owned(), options: BTreeMap::new() }
    }
}

impl KafkaConfig {
    /// A librdkafka client configuration with the brokers and the extra options, for producers
    /// and admin clients; consumers take [`KafkaConfig::consumer_config`].
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut cfg = rdkafka::ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        cfg.set("socket.keepalive.enable", "true");
        for (k, v) in &self.options {
            cfg.set(k, v);
        }
        cfg
    }

    /// A librdkafka consumer configuration: the brokers, the defaults every consumer of the
    /// ledger wants, then `properties`, then the extra options (applied last, so they win).
    pub fn consumer_config(&self, properties: &[(&str, &str)]) -> rdkafka::ClientConfig {
        let mut cfg = self.client_config();
        // Once a partition's prefetch queue is over its thresholds (queued.min.messages,
        // queued.max.messages.kbytes), librdkafka postpones that partition's next fetch by this
        // much; the default, 1000 ms, starves a consumer that drains its queue faster than that,
        // as after a pause (the processor waiting for an insert) or reading a topic from the
        // start: measured at 140,000 events/s offered, 111,000/s with a growing lag at 1000 ms,
        // 137,600/s keeping pace at 20 ms.
        cfg.set("fetch.queue.backoff.ms", "20");
        for (k, v) in properties {
            cfg.set(*k, *v);
        }
        for (k, v) in &self.options {
            cfg.set(k, v);
        }
        cfg
    }
}

/// The ledger's topic names (`docs/architecture.md`, "Contracts").
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
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            usage: "llm.usage.v1".to_owned(),
            dead_letter: "llm.usage.dlq.v1".to_owned(),
            spend: "llm.spend.v1".to_owned(),
            signals: "llm.budget-signals.v1".to_owned(),
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
        }
    }
}

/// Errors of the Kafka adapters.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka reported an error.
    #[error("kafka: {context}: {source}")]
    Client {
        /// What we were doing.
        context: String,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic exists with a layout the ledger cannot use.
    #[error("topic {topic}: {problem}")]
    Topic {
        /// Topic name.
        topic: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl KafkaError {
    pub(crate) fn client(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        KafkaError::Client { context: context.into(), source }
    }

    /// True when retrying later may succeed (broker unavailable, timeouts).
    pub fn is_retryable(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as C;
        match self {
            KafkaError::Client { source, .. } => match source.rdkafka_error_code() {
                Some(
                    C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::RequestTimedOut
                    | C::OperationTimedOut
                    | C::NetworkException
                    | C::NotEnoughReplicas
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
                    | C::QueueFull,
                ) => true,
                Some(_) => false,
                None => true,
            },
            KafkaError::Topic { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_config_sets_the_defaults_then_the_properties_then_the_options() {
        let config =
            KafkaConfig { brokers: "kafka:9092".into(), options: [("fetch.wait.max.ms".to_owned(), "7".to_owned())].into() };
        let cfg = config.consumer_config(&[("group.id", "g"), ("fetch.wait.max.ms", "100")]);
        assert_eq!(cfg.get("bootstrap.servers"), Some("kafka:9092"));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("20"), "no one-second stall after a full queue");
        assert_eq!(cfg.get("group.id"), Some("g"));
        assert_eq!(cfg.get("fetch.wait.max.ms"), Some("7"), "the configured options win");

        let overridden = KafkaConfig { options: [("fetch.queue.backoff.ms".to_owned(), "50".to_owned())].into(), ..config };
        assert_eq!(overridden.consumer_config(&[]).get("fetch.queue.backoff.ms"), Some("50"));
    }
}
