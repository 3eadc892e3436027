//! `ledger ingest` as a service: load and check everything, listen (HTTP or HTTPS), watch the
//! keys file, serve until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::validate::Door;
use ledger_kafka::{KafkaConfig, TopicNames};

use crate::config::IngestSettings;
use crate::reload::{watch_keys, KeysWatcher};
use crate::server::{serve, IngestState};
use crate::IngestError;

/// What `ledger ingest` runs with.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The Kafka connection.
    pub kafka: KafkaConfig,
    /// The ledger's topics (events go to `usage`).
    pub topics: TopicNames,
    /// Partitions of the topics when ingest creates them.
    pub partitions: i32,
    /// `[ingest]`, with the command line's overrides applied.
    pub settings: IngestSettings,
    /// What the processor would reject, refused at the door.
    pub door: Door,
    /// How events are framed (`[schema]`); the Confluent framing's schema id is resolved at start.
    pub schema: ledger_registry::SchemaSettings,
}

/// Runs the server until `shutdown` resolves. Settings, keys file and TLS files are checked
/// before anything listens; Kafka may be down (requests are then answered 503 until it is back).
pub async fn run(launch: Launch, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), IngestError> {
    let Launch { kafka, topics, partitions, settings, door, schema } = launch;
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(IngestError::Config(problems.join("; ")));
    }
    let path = settings.api_keys_file.clone();
    let watcher = KeysWatcher::new(&path);
    let keys = crate::keys::file::load(&path)?;
    let tls = settings.tls_files().map(|(cert, key)| crate::tls::server_config(cert, key)).transpose()?;

    // Creating the topics is a convenience; ingest still starts when Kafka is down (but not
    // with Kafka settings that can never work).
    let specs = ledger_kafka::admin::ledger_topics(&topics, partitions);
    ledger_kafka::admin::ensure_topics_best_effort(&kafka, &specs, Duration::from_secs(10)).await.map_err(IngestError::Kafka)?;

    // The schema id before anything listens: a registry that refuses it stops the start.
    let wire = ledger_registry::wire_format(&schema, &topics.usage).await?;
    let (count, active) = (keys.len(), keys.active());
    let state = Arc::new(IngestState::new(&kafka, topics.usage.clone(), settings.clone(), keys, door)?.with_wire_format(wire));
    let tcp = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| IngestError::Io(format!("cannot listen on {} ({e}): in use? pass --listen HOST:PORT", settings.listen)))?;
    let local = tcp.local_addr().map_err(|e| IngestError::Io(format!("listener address: {e}")))?;
    if active == 0 {
        tracing::warn!(path = %path.display(), "every API key is revoked: every request will be answered 401");
    }
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            addr = %local,
            "serving plain HTTP beyond this machine: API keys cross the network in clear text. Set ingest.tls_cert_file \
             and ingest.tls_key_file, or put a TLS proxy in front"
        );
    }
    let interval = Duration::from_millis(settings.reload_interval_ms);
    let watching = tokio::spawn(watch_keys(Arc::clone(&state), watcher, interval));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        addr = %local, scheme, topic = %topics.usage, keys = count, active,
        "ingest listening: POST /v1/usage, POST /v1/traces, GET /healthz, GET /metrics, GET /openapi.yaml"
    );
    let served = match tls {
        Some(config) => {
            let listener =
                crate::tls::TlsListener::new(tcp, config).map_err(|e| IngestError::Io(format!("TLS listener: {e}")))?;
            serve(state, listener, shutdown).await
        }
        None => serve(state, tcp, shutdown).await,
    };
    watching.abort();
    served
}
