//! `ledger ingest` as a service: load and check everything, listen (HTTP or HTTPS), watch the
//! keys file, serve until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::validate::Door;
use ledger_kafka::{KafkaConfig, TopicNames};

use crate::config::IngestSettings;
use crate::decide::Sidecar;
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
    /// Also serve `POST /v1/decide` with this router (`ledger router serve`).
    pub router: Option<SidecarLaunch>,
}

/// The router of `ledger router serve`.
#[derive(Debug, Clone)]
pub struct SidecarLaunch {
    /// Its settings (Kafka, signals topic, policy, leases).
    pub config: ledger_router::RouterConfig,
    /// The price catalog that estimates calls under lease budgets (the processor's).
    pub catalog: Arc<ledger_core::Catalog>,
    /// How long to wait for the router to read the signals topic before serving.
    pub ready_timeout: Duration,
}

/// Runs the server until `shutdown` resolves. Settings, keys file and TLS files are checked
/// before anything listens; Kafka may be down (requests are then answered 503 until it is back).
pub async fn run(launch: Launch, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), IngestError> {
    let Launch { kafka, topics, partitions, settings, door, schema, router } = launch;
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
    let mut state = IngestState::new(&kafka, topics.usage.clone(), settings.clone(), keys, door)?.with_wire_format(wire);
    let sidecar = match router {
        Some(launch) => Some(start_sidecar(launch).await?),
        None => None,
    };
    if let Some(sidecar) = &sidecar {
        state = state.with_sidecar(sidecar.clone());
    }
    let state = Arc::new(state);
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
    let sweeping = sidecar.map(|sidecar| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                sidecar.sweep();
            }
        })
    });
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
        None => {
            // Answers are small writes on kept-alive connections: none should wait for Nagle's
            // algorithm (the TLS listener sets it too).
            use axum::serve::ListenerExt;
            serve(state, tcp.tap_io(|s| drop(s.set_nodelay(true))), shutdown).await
        }
    };
    watching.abort();
    if let Some(s) = sweeping {
        s.abort();
    }
    served
}

/// Starts the router (a blocking Kafka start) and waits until it has read the signals topic:
/// deciding before that would allow calls a signal blocks, or miss a lease budget.
async fn start_sidecar(launch: SidecarLaunch) -> Result<Arc<Sidecar>, IngestError> {
    let SidecarLaunch { config, catalog, ready_timeout } = launch;
    let router = tokio::task::spawn_blocking(move || {
        let router = ledger_router::Router::start_with_catalog(config, catalog)?;
        router.wait_ready(ready_timeout)?;
        Ok::<_, ledger_router::RouterError>(router)
    })
    .await
    .map_err(|e| IngestError::Io(format!("starting the router: {e}")))?
    .map_err(IngestError::Router)?;
    tracing::info!(instance = router.instance_id(), "router ready: POST /v1/decide");
    Ok(Arc::new(Sidecar::new(router)))
}
