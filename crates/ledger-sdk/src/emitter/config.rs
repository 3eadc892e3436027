//! The emitter's settings and what it reports: why `emit` refused an event, why an accepted
//! event did not reach Kafka, and the counters.

use std::time::Duration;

use ledger_kafka::KafkaConfig;
use ledger_registry::SchemaSettings;

/// What `emit` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Refuse the new event (`emit` returns [`EmitError::QueueFull`]); the default: the
    /// caller's thread never waits.
    DropNewest,
    /// Evict the oldest queued event to make room; the evicted event goes to the failure handler.
    DropOldest,
    /// Wait up to this long for room, then refuse the new event. The only policy that may
    /// block the caller, and only for this bound.
    BlockWithTimeout(Duration),
}

/// Settings of an [`Emitter`](super::Emitter).
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Kafka connection (brokers and extra librdkafka properties, applied last).
    pub kafka: KafkaConfig,
    /// Usage topic.
    pub topic: String,
    /// How events are framed (`schema.framing`), and for the Confluent framing where the
    /// schema id comes from (`schema.ids`, `schema.registry`).
    pub schema: SchemaSettings,
    /// Events held in the in-process queue at most.
    pub queue_capacity: usize,
    /// What happens when the queue is full.
    pub overflow: OverflowPolicy,
    /// How long dropping an emitter that was not shut down waits for its events to be delivered.
    pub drop_flush_timeout: Duration,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            kafka: KafkaConfig::default(),
            topic: "llm.usage.v1".to_owned(),
            schema: SchemaSettings::default(),
            queue_capacity: 100_000,
            overflow: OverflowPolicy::DropNewest,
            drop_flush_timeout: Duration::from_secs(5),
        }
    }
}

/// Why `emit` did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The queue was full (after waiting, with [`OverflowPolicy::BlockWithTimeout`]); the event
    /// was dropped and counted.
    #[error("the emitter's queue is full: the event was dropped (raise queue_capacity or check that Kafka is reachable)")]
    QueueFull,
    /// The emitter is shutting down.
    #[error("the emitter is shut down")]
    Closed,
    /// The event would be rejected by the ledger.
    #[error("invalid usage event: {0}")]
    Invalid(ledger_core::event::Rejection),
}

/// Why an accepted event did not reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// Evicted from a full queue ([`OverflowPolicy::DropOldest`]).
    DroppedOldest,
    /// Kafka refused it or did not acknowledge it within `message.timeout.ms`.
    Kafka(String),
    /// It could not be encoded (a bug; reported rather than lost silently).
    Encode(String),
    /// Still queued when `shutdown` gave up at its deadline.
    Abandoned,
}

/// An accepted event that did not reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The event's id (resend the event with the same id: the ledger counts it once).
    pub event_id: String,
    /// Why.
    pub reason: FailureReason,
}

/// Counters of an emitter (monotonic, except the two gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitterMetrics {
    /// Events taken by `emit`.
    pub accepted: u64,
    /// Events refused by `emit` because the queue was full ([`OverflowPolicy::DropNewest`]).
    pub dropped_newest: u64,
    /// Queued events evicted for newer ones ([`OverflowPolicy::DropOldest`]).
    pub dropped_oldest: u64,
    /// Events refused after waiting for room ([`OverflowPolicy::BlockWithTimeout`]).
    pub dropped_after_timeout: u64,
    /// Events refused because they are invalid.
    pub invalid: u64,
    /// Events Kafka acknowledged.
    pub delivered: u64,
    /// Accepted events Kafka refused or that could not be encoded.
    pub failed: u64,
    /// Accepted events abandoned at a shutdown deadline.
    pub abandoned: u64,
    /// Gauge: events in the in-process queue now.
    pub queued: u64,
    /// Gauge: accepted events neither delivered nor failed nor dropped yet.
    pub outstanding: u64,
}
