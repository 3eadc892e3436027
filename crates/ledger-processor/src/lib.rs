//! The ledger stream processor.
//!
//! `decode → validate → time window → dedupe → price → batch per partition → ClickHouse`,
//! with rejected events dead-lettered (original bytes plus reason headers). See [`runner`]
//! for the exactly-once argument. A newcomer's map:
//!
//! | module | what it does |
//! |---|---|
//! | [`runner`] | the clients, the per-partition state and the `select!` loop |
//! | `core`, `state` | the processor's state, and each partition's |
//! | `partition` | a partition's fences on assignment; each message's handling |
//! | `decision` | the per-event decision (pure): accept, duplicate or reject |
//! | `lanes` | when pending rows are written, and in which insert; dead letters |
//! | `insert` | inserts beside consumption, and retries that read the fence first |
//! | `commit` | completing inserts: fences, spend publication, offset commits |
//! | `spend` | the cumulative spend updates for the budget enforcer |
//! | [`catalog`] | loading the price catalog's source files |
//! | [`config`], [`stats`] | settings, and the `/metrics` counters |

pub mod catalog;
mod commit;
pub mod config;
mod core;
mod decision;
mod insert;
mod lanes;
mod partition;
pub mod runner;
mod spend;
mod state;
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
    /// The schema settings are wrong, or the schema registry refused a request.
    #[error(transparent)]
    Registry(#[from] ledger_registry::RegistryError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProcessorError {
    /// True when a setting is wrong: the message names it.
    pub fn is_settings(&self) -> bool {
        match self {
            ProcessorError::Config(_) => true,
            ProcessorError::Kafka(e) => e.is_settings(),
            ProcessorError::ClickHouse(e) => e.is_settings(),
            ProcessorError::Registry(e) => e.is_settings(),
            _ => false,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, e: rdkafka::error::KafkaError) -> Self {
        ProcessorError::Kafka(ledger_kafka::KafkaError::client(context.into(), e))
    }
}
