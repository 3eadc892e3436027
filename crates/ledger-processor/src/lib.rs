//! The ledger stream processor.
//!
//! `decode → validate → time window → dedupe → price → batch per partition → ClickHouse`,
//! with rejected events dead-lettered (original bytes plus reason headers). See
//! [`runner`] for the exactly-once argument.

pub mod config;
pub mod dead_letter;
pub mod runner;
pub mod stats;

pub use config::ProcessorConfig;
pub use runner::{Processor, RunOptions};
pub use stats::Stats;

/// Errors of the processor.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The configuration is invalid (every problem listed).
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] ledger_kafka::KafkaError),
    /// ClickHouse failed.
    #[error(transparent)]
    ClickHouse(#[from] ledger_clickhouse::Error),
    /// The Avro schemas could not be loaded.
    #[error(transparent)]
    Schema(#[from] ledger_schema::SchemaError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProcessorError {
    pub(crate) fn kafka(context: impl Into<String>, e: rdkafka::error::KafkaError) -> Self {
        ProcessorError::Kafka(ledger_kafka::KafkaError::Client { context: context.into(), source: e })
    }
}
