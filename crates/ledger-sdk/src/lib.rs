//! Producer SDK for services that emit LLM usage events.
//!
//! 1. Build the event from the provider's usage object with [`EventBuilder`] (one constructor
//!    per provider convention; token counts are normalized to docs/pricing.md, so cached and
//!    reasoning tokens are never double counted).
//! 2. Hand it to an [`Emitter`]: `emit` validates and queues it and returns at once; a
//!    background thread writes it to Kafka with an idempotent producer (acks=all,
//!    idempotence, lz4), keyed by `tenant_id` like every producer of the ledger.
//! 3. On shutdown call [`Emitter::shutdown`] with a deadline.
//!
//! No async runtime is needed. Events are framed as Avro single objects by default; with
//! [`EmitterConfig::schema`] set to the Confluent framing, the emitter asks the schema registry
//! (or the configured ids) for the schema id once, when it is built.
//!
//! ```no_run
//! use std::time::Duration;
//! use ledger_sdk::{Emitter, EmitterConfig, EventBuilder, OpenAiUsage};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::new(EmitterConfig::default())?;
//! let usage = OpenAiUsage { prompt_tokens: 1200, completion_tokens: 300, cached_tokens: 1000, reasoning_tokens: 0 };
//! let event = EventBuilder::openai("gpt-4o-mini", usage).tenant("acme").team("search").build()?;
//! emitter.emit(event)?;
//! emitter.shutdown(Duration::from_secs(10))?;
//! # Ok(())
//! # }
//! ```

mod builder;
mod emitter;

pub use builder::{AnthropicUsage, BedrockUsage, EventBuilder, GeminiUsage, NormalizedTokens, OpenAiUsage};
pub use emitter::{DeliveryFailure, EmitError, Emitter, EmitterConfig, EmitterMetrics, FailureReason, OverflowPolicy};
pub use ledger_core::UsageEvent;
pub use ledger_kafka::KafkaConfig;
pub use ledger_registry::{RegistryConfig, SchemaSettings};
pub use ledger_schema::Framing;

/// Errors of the SDK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// A provider usage object cannot be normalized.
    #[error("invalid usage for field `{field}`: {message}")]
    InvalidUsage {
        /// The ledger field concerned.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The built event would be rejected by the ledger.
    #[error("invalid usage event: {0}")]
    Rejected(ledger_core::event::Rejection),
    /// The emitter's settings are unusable.
    #[error("emitter configuration: {0}")]
    Config(String),
    /// The Kafka client could not be created.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The schema settings are wrong, or the registry did not give the schema's id.
    #[error("{message}")]
    Registry {
        /// What went wrong (names the setting when one is wrong; never a password).
        message: String,
        /// True when the registry could not be reached: building the emitter again may work.
        retryable: bool,
    },
    /// Events were still undelivered at a flush or shutdown deadline (retryable: flush again,
    /// or resend the reported events; their ids make resending safe).
    #[error("{outstanding} events were still undelivered after {timeout:?} (is Kafka reachable?)")]
    FlushTimeout {
        /// Events neither delivered nor failed at the deadline.
        outstanding: u64,
        /// The deadline given.
        timeout: std::time::Duration,
    },
}

impl SdkError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        SdkError::InvalidUsage { field, message: message.into() }
    }

    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SdkError::FlushTimeout { .. } | SdkError::Kafka(_) | SdkError::Registry { retryable: true, .. })
    }
}
