//! `ledger ingest`: the HTTP ingest server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use ledger_ingest::{ApiKeys, IngestState};

use crate::config::ConfigArgs;

/// Arguments of `ledger ingest`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger ingest                                     # listen on ingest.listen (127.0.0.1:8080)
  ledger ingest --listen 0.0.0.0:8080 --api-keys /etc/ledger/api-keys.toml
  LEDGER__INGEST__ACK_TIMEOUT_MS=5000 ledger ingest -c config/ledger.toml

  curl -X POST http://127.0.0.1:8080/v1/usage \\
    -H 'Authorization: Bearer acme-example-key-change-me-0001' -H 'Content-Type: application/json' \\
    -d '{\"event_id\":\"call-1\",\"event_time\":\"2026-11-28T17:00:00Z\",\"tenant_id\":\"acme\",
         \"provider\":\"openai\",\"request_model\":\"gpt-4o-mini\",\"input_tokens\":1200,\"output_tokens\":300}'

POST /v1/usage takes one event, a JSON array or {\"events\": [...]} (at most ingest.max_events
events and ingest.max_body_bytes bytes) and answers 202 only after Kafka acknowledged every
event; 400 lists field errors (nothing written), 401/403 for a missing/unknown key or another
tenant's events, 413 when too large, 503 when Kafka did not acknowledge in time (resend: the
same event_id is counted once). API keys: see config/api-keys.example.toml; API: GET
/openapi.yaml; guide: docs/ingest.md.")]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (overrides ingest.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Tenant API keys file (overrides ingest.api_keys_file).
    #[arg(long, value_name = "FILE")]
    api_keys: Option<std::path::PathBuf>,
}

pub(crate) async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let mut settings = config.ingest.clone();
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(path) = args.api_keys {
        settings.api_keys_file = path;
    }
    let keys = ApiKeys::load(&settings.api_keys_file)?;
    let window = config.processor.acceptance;
    let topic = config.topics.usage.clone();

    // Creating the topics is a convenience; ingest still starts when Kafka is down (requests
    // then fail with 503 until it is back).
    let topics = ledger_kafka::admin::ledger_topics(&config.topics, config.processor.partitions);
    ledger_kafka::admin::ensure_topics_best_effort(&config.kafka, &topics, Duration::from_secs(10)).await?;

    let key_count = keys.len();
    let state = Arc::new(IngestState::new(&config.kafka, topic.clone(), settings.clone(), keys, Some(window))?);
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (in use? pass --listen HOST:PORT)", settings.listen))?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(addr = %local, topic = %topic, keys = key_count, "ingest listening: POST /v1/usage, GET /healthz, GET /openapi.yaml");
    let shutdown = ledger_ops::service::start(None, String::new);
    ledger_ingest::serve(state, listener, async move { shutdown.cancelled().await }).await?;
    tracing::info!("ingest stopped");
    Ok(ExitCode::SUCCESS)
}
