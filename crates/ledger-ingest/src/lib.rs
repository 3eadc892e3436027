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
pub mod door;
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
    /// The schema settings are wrong, or the registry did not give the schema's id.
    #[error(transparent)]
    Registry(#[from] ledger_registry::RegistryError),
    /// The router of `ledger router serve` could not start.
    #[error("router: {0}")]
    Router(#[from] ledger_router::RouterError),
}

/// `ledger ingest --help`'s examples and what each answer means.
pub const HELP: &str = "\
Examples:
  ledger ingest keys add --tenant acme --name 'acme backend'   # prints the new key once
  ledger ingest --listen 0.0.0.0:8443 --api-keys /etc/ledger/api-keys.toml
  curl -X POST http://127.0.0.1:8080/v1/usage -H \"Authorization: Bearer $KEY\" \\
    -H 'Content-Type: application/json' -d @event.json

202 only after Kafka acknowledged every event; 400 lists field errors, 401/403 a missing, unknown
or revoked key or another tenant's events, 413 too large, 429 over the key's rate limit
(Retry-After), 503 Kafka did not acknowledge in time (resend: an event_id counts once). Nothing
of a refused request is written. HTTPS with ingest.tls_cert_file and ingest.tls_key_file; GET
/metrics, GET /openapi.yaml; guide: docs/ingest.md.";

/// `ledger router --help`'s examples and what the answers mean.
pub const ROUTER_HELP: &str = "\
Examples:
  ledger router serve                                  # 127.0.0.1:8080, keys of `ledger ingest keys`
  ledger router serve --listen 127.0.0.1:8081 --config ledger.toml
  curl -X POST http://127.0.0.1:8080/v1/decide -H \"Authorization: Bearer $KEY\" \\
    -d '{\"team\":\"search\",\"model\":\"gpt-4o\",\"input_tokens\":1200,\"max_tokens\":500}'

Answers allow, reroute (with the model to call), throttle (with retry_after_ms) or block, as the
Rust router would; under lease budgets (docs/budgets.md) the answer's decision_id goes on the
call's usage event (POST /v1/usage) so the allowance learns the actual cost. Same API keys, TLS
and /metrics as `ledger ingest`; settings in [router] and [ingest]; guide: docs/router.md.";
