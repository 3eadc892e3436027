//! HTTP ingest: `POST /v1/usage` validates usage events, writes them to Kafka and answers 202
//! only once Kafka acknowledged every event. OpenTelemetry GenAI spans (OTLP over HTTP or
//! gRPC) and CloudEvents take the same way.
//!
//! - [`config`]: the `[ingest]` settings.
//! - [`keys`]: tenant API keys, stored hashed; the keys file and `ledger ingest keys`.
//! - [`reload`]: putting a changed keys file in force without a restart.
//! - [`limit`]: per-key rate limits (token buckets; 429 with `Retry-After`).
//! - [`validate`]: body and field-level validation (400 answers name index and field).
//! - [`server`]: the axum routes and the acknowledge-after-Kafka write path.
//! - [`otlp`]: OpenTelemetry GenAI spans as usage events, the one mapping of every OTLP
//!   transport: `POST /v1/traces` (OTLP/HTTP, JSON or protobuf, gzip) and OTLP/gRPC's
//!   `TraceService/Export` on the same port.
//! - [`cloudevents`]: `POST /v1/events`: CloudEvents (structured or batch mode) as usage events.
//! - [`metrics`]: `GET /metrics` (Prometheus text).
//! - [`tls`]: the optional HTTPS listener.
//! - [`decide`]: `POST /v1/decide`, the router as a service (`ledger router serve`).
//! - [`mod@run`]: `ledger ingest` (and `ledger router serve`) as a service.
//!
//! A batch is all or nothing: if any event is invalid (400) or belongs to another tenant than
//! the API key's (403), or the key is over its rate limit (429), nothing is written. If Kafka does not acknowledge every event within
//! the ack timeout, the answer is 503 and nothing is acknowledged; resending is safe because
//! the processor counts an `event_id` once. See docs/ingest.md.

pub mod cloudevents;
pub mod config;
pub mod decide;
mod grpc;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod otlp;
pub mod reload;
pub mod run;
pub mod server;
pub mod tls;
mod traces;
pub mod validate;

pub use config::IngestSettings;
pub use keys::{ApiKeys, KeyRecord, KeysError};
pub use run::{run, Launch, SidecarLaunch};
pub use server::{router, serve, IngestState, OPENAPI_YAML};

/// Errors of the ingest server (startup; request problems are HTTP answers).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Unusable settings or keys file (fix the configuration; not retryable).
    #[error("ingest configuration: {0}")]
    Config(String),
    /// The Kafka client could not be created.
    #[error(transparent)]
    Kafka(ledger_kafka::KafkaError),
    /// The keys file is missing, invalid or of the earlier plain-text format.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The listener failed.
    #[error("{0}")]
    Io(String),
    /// The router of `ledger router serve` could not start.
    #[error("router: {0}")]
    Router(#[from] ledger_router::RouterError),
}
