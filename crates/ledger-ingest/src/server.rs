//! The axum application: routes, authentication, the acknowledge-after-Kafka write path.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ledger_core::UsageEvent;
use ledger_kafka::KafkaConfig;
use ledger_schema::{UsageEventCodec, WireFormat};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::IngestSettings;
use crate::decide::Sidecar;
use crate::keys::{ApiKeys, Lookup};
use crate::limit::{RateLimit, RateLimiter, Refusal};
use crate::metrics::Metrics;
use crate::validate::{decision_id_of, parse_event, split_body, BodyError, Door, FieldError};
use crate::IngestError;

/// The OpenAPI document served at `GET /openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../../docs/openapi.yaml");

/// Most field errors listed in one 400 answer.
const MAX_REPORTED_ERRORS: usize = 100;

/// Everything a request needs: settings, the keys in force, rate limits, counters, the producer.
pub struct IngestState {
    pub(crate) settings: IngestSettings,
    /// Replaced as a whole when the keys file changes; a request works with the keys it loaded.
    keys: ArcSwap<ApiKeys>,
    limiter: RateLimiter,
    pub(crate) metrics: Metrics,
    /// The rate limiter's clock starts here (monotonic).
    started: std::time::Instant,
    topic: String,
    producer: FutureProducer,
    codec: UsageEventCodec,
    wire: WireFormat,
    pub(crate) door: Door,
    /// `POST /v1/decide` (`ledger router serve`).
    sidecar: Option<Arc<Sidecar>>,
}

impl std::fmt::Debug for IngestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState").field("topic", &self.topic).field("keys", &*self.keys.load()).finish()
    }
}

impl IngestState {
    /// Builds the state: an idempotent producer whose `message.timeout.ms` is the ack timeout,
    /// so that an event refused with 503 is not delivered much later behind the client's back
    /// (a late delivery would still be harmless: a resend carries the same `event_id`).
    pub fn new(
        kafka: &KafkaConfig,
        topic: String,
        settings: IngestSettings,
        keys: ApiKeys,
        door: Door,
    ) -> Result<IngestState, IngestError> {
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(IngestError::Config(problems.join("; ")));
        }
        let mut kafka = kafka.clone();
        kafka.options.entry("message.timeout.ms".to_owned()).or_insert_with(|| settings.ack_timeout_ms.to_string());
        let producer = ledger_kafka::producer::idempotent_producer(&kafka).map_err(IngestError::Kafka)?;
        let codec = UsageEventCodec::new().map_err(|e| IngestError::Config(format!("usage event schema: {e}")))?;
        let metrics = Metrics::default();
        metrics.set_keys_active(keys.active());
        Ok(IngestState {
            settings,
            keys: ArcSwap::from_pointee(keys),
            limiter: RateLimiter::default(),
            metrics,
            started: std::time::Instant::now(),
            topic,
            producer,
            codec,
            wire: WireFormat::SingleObject,
            door,
            sidecar: None,
        })
    }

    /// Frames the events it writes as `wire` says (single-object by default).
    pub fn with_wire_format(mut self, wire: WireFormat) -> Self {
        self.wire = wire;
        self
    }

    /// Serves `POST /v1/decide` with this router as well (`ledger router serve`).
    pub fn with_sidecar(mut self, sidecar: Arc<Sidecar>) -> IngestState {
        self.sidecar = Some(sidecar);
        self
    }

    /// Puts new keys in force (a changed keys file): the next request sees them.
    pub fn replace_keys(&self, keys: ApiKeys) {
        self.metrics.set_keys_active(keys.active());
        self.limiter.retain(|id| keys.get(id).is_some());
        self.keys.store(Arc::new(keys));
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Waits up to `timeout` for the producer to deliver what it still holds.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "events still undelivered at shutdown (their requests were not acknowledged)");
        }
    }
}

/// The routes: `POST /v1/usage`, `POST /v1/traces` (OTLP/HTTP JSON and protobuf), `POST
/// /v1/events` (CloudEvents; also at OpenMeter's path `/api/v1/events`), OTLP/gRPC's
/// `TraceService/Export`, `GET /healthz`, `GET /metrics`, `GET /openapi.yaml`,
/// and `POST /v1/decide` with a sidecar.
pub fn router(state: Arc<IngestState>) -> Router {
    let limit = state.settings.max_body_bytes;
    let otlp_limit = state.settings.otlp_max_bytes;
    let app = Router::new()
        .route("/v1/usage", post(post_usage))
        .route("/v1/traces", post(crate::traces::post_traces).layer(DefaultBodyLimit::max(otlp_limit)))
        .route("/v1/events", post(crate::cloudevents::post_events))
        .route("/api/v1/events", post(crate::cloudevents::post_events))
        // Only the routes above: counted by status, and timed from here to Kafka's ack.
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), track));
    let app = if state.sidecar.is_some() { app.route("/v1/decide", post(post_decide)) } else { app };
    app.route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route(
            "/metrics",
            get(|State(state): State<Arc<IngestState>>| async move {
                let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
                let mut text = state.metrics.render_prometheus();
                if let Some(sidecar) = &state.sidecar {
                    text.push_str(&sidecar.render_prometheus());
                }
                ([(header::CONTENT_TYPE, content_type)], text)
            }),
        )
        .route(
            "/openapi.yaml",
            get(|| async { ([(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"))], OPENAPI_YAML) }),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::clone(&state))
        // gRPC (HTTP/2) on the same port; it counts its answers by gRPC code itself.
        .merge(crate::grpc::routes(state))
}

/// When a request to an ingest route was received (set by [`track`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received(pub(crate) std::time::Instant);

/// Counts every answer of the ingest routes by status and stamps the request's arrival.
async fn track(State(state): State<Arc<IngestState>>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Received(std::time::Instant::now()));
    let response = next.run(request).await;
    state.metrics.request(response.status().as_u16());
    response
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    /// With 429: the same as the `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_secs: Option<u64>,
}

pub(crate) fn error(status: StatusCode, error: &'static str, message: impl Into<String>, errors: Vec<FieldError>) -> Response {
    (status, Json(ErrorBody { error, message: message.into(), errors, retry_after_secs: None })).into_response()
}

/// Who sent a request: the key's id (not secret; for logs and the rate limit), its tenant
/// and its rate limit.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) key_id: String,
    pub(crate) tenant_id: String,
    limit: Option<RateLimit>,
}

/// Why a request has no caller (answered 401, or gRPC `UNAUTHENTICATED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unauthorized {
    /// No `Authorization: Bearer <key>`.
    Missing,
    /// An unknown or revoked key; the message says which.
    Invalid(String),
}

impl Unauthorized {
    /// What to tell the client.
    pub(crate) fn message(&self) -> String {
        match self {
            Unauthorized::Missing => "send your tenant API key as `Authorization: Bearer <key>`".to_owned(),
            Unauthorized::Invalid(message) => message.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_key(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The key of an `Authorization` value `Bearer <key>` (an HTTP header or gRPC metadata).
pub(crate) fn bearer_key(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|k| !k.is_empty())
}

async fn post_usage(
    State(state): State<Arc<IngestState>>,
    Extension(received): Extension<Received>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let entry = match authenticate(&state, &headers) {
        Ok(entry) => entry,
        Err(answer) => return *answer,
    };
    let body = match read_body(body, state.settings.max_body_bytes, "split the batch") {
        Ok(b) => b,
        Err(answer) => return *answer,
    };
    let values = match split_body(&body, state.settings.max_events) {
        Ok(v) => v,
        Err(BodyError::TooManyEvents { count, max }) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!("the batch has {count} events; at most {max} per request: split the batch"),
                vec![],
            )
        }
        Err(BodyError::Malformed(message)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                message.clone(),
                vec![FieldError { index: None, field: None, message }],
            )
        }
    };
    let count = values.len();
    let now = chrono::Utc::now();
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(count);
    let mut decisions: Vec<(usize, String)> = Vec::new();
    for (i, raw) in values.into_iter().enumerate() {
        let decision = if state.sidecar.is_some() { decision_id_of(raw) } else { None };
        if let Some(event) = parse_event(i, raw, &state.door, now, &mut errors) {
            decisions.extend(decision.map(|id| (events.len(), id)));
            events.push((i, event));
        }
    }
    let reported: Vec<(String, UsageEvent)> =
        decisions.into_iter().filter_map(|(at, id)| events.get(at).map(|(_, e)| (id, e.clone()))).collect();
    let answer = write_batch(&state, &entry, received, count, events, errors, "tenant_id").await;
    // Only now, with the usage in Kafka: the lease learns the actual cost.
    if let (Some(sidecar), StatusCode::ACCEPTED) = (&state.sidecar, answer.status()) {
        for (id, event) in &reported {
            sidecar.report(id, event);
        }
    }
    answer
}

/// The body, or the 413/400 answer; `advice` says how to make it smaller.
pub(crate) fn read_body(body: Result<Bytes, BytesRejection>, limit: usize, advice: &str) -> Result<Bytes, Box<Response>> {
    match body {
        Ok(b) => Ok(b),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds {limit} bytes: {advice}"),
            vec![],
        ))),
        Err(rejection) => {
            Err(Box::new(error(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read the body: {rejection}"), vec![])))
        }
    }
}

/// The rest of a batch request once its `count` items were parsed into `events` (each with its
/// index in the batch) and `errors`: all or nothing. 403 if an event belongs to another tenant than the caller's
/// (named as `tenant_field`), 400 if any item is invalid, 429/413 over the rate limit, 503 if
/// Kafka does not acknowledge, else 202 `{"accepted": n}`.
pub(crate) async fn write_batch(
    state: &IngestState,
    entry: &Caller,
    received: Received,
    count: usize,
    events: Vec<(usize, UsageEvent)>,
    mut errors: Vec<FieldError>,
    tenant_field: &str,
) -> Response {
    let mut foreign = Vec::new();
    for (i, event) in &events {
        if event.attribution.tenant_id != entry.tenant_id {
            foreign.push(FieldError {
                index: Some(*i),
                field: Some(tenant_field.to_owned()),
                message: format!("this API key may write usage of its own tenant only, not of {:?}", event.attribution.tenant_id),
            });
        }
    }
    if !foreign.is_empty() {
        foreign.truncate(MAX_REPORTED_ERRORS);
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_tenant",
            format!("{} of {count} events belong to another tenant than this API key's; nothing was written", foreign.len()),
            foreign,
        );
    }
    if !errors.is_empty() {
        let invalid = count - events.len();
        errors.truncate(MAX_REPORTED_ERRORS);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_events",
            format!("{invalid} of {count} events are invalid; nothing was written: fix them and resend the whole batch"),
            errors,
        );
    }
    if let Err(answer) = admit(state, entry, count) {
        return *answer;
    }
    let events: Vec<UsageEvent> = events.into_iter().map(|(_, e)| e).collect();
    match write_all(state, &events).await {
        Ok(()) => {
            state.metrics.acknowledged(count, received.0.elapsed());
            (StatusCode::ACCEPTED, Json(Accepted { accepted: count })).into_response()
        }
        Err(problem) => {
            tracing::warn!(key = %entry.key_id, tenant = %entry.tenant_id, events = count, %problem, "answered 503");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "kafka_unavailable",
                format!(
                    "{problem}; nothing of this request is acknowledged: resend the same events later \
                     (the same event_id is counted once)"
                ),
                vec![],
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// The caller, or the 401 answer.
pub(crate) fn authenticate(state: &IngestState, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
    caller(state, bearer(headers)).map_err(|problem| Box::new(unauthorized(&problem)))
}

/// The 401 answer (with `WWW-Authenticate`).
pub(crate) fn unauthorized(problem: &Unauthorized) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", problem.message(), vec![]);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge(problem));
    r
}

/// The `WWW-Authenticate` value of a 401.
pub(crate) fn challenge(problem: &Unauthorized) -> HeaderValue {
    match problem {
        Unauthorized::Missing => HeaderValue::from_static("Bearer"),
        Unauthorized::Invalid(_) => HeaderValue::from_static("Bearer error=\"invalid_token\""),
    }
}

/// The caller presenting `key` (from `Authorization: Bearer`, or gRPC's `authorization` metadata).
pub(crate) fn caller(state: &IngestState, key: Option<&str>) -> Result<Caller, Unauthorized> {
    let key = key.ok_or(Unauthorized::Missing)?;
    let keys = state.keys.load();
    let message = match keys.lookup(key) {
        Lookup::Valid(r) => {
            let limit = RateLimit::for_key(r, &state.settings);
            return Ok(Caller { key_id: r.id.clone(), tenant_id: r.tenant_id.clone(), limit });
        }
        Lookup::Revoked(r) => {
            let at = r.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            format!("this API key ({}) was revoked at {at}: ask the ledger's operator for a new one", r.id)
        }
        Lookup::Unknown => "unknown API key: check the key, or ask the ledger's operator for one".to_owned(),
    };
    Err(Unauthorized::Invalid(message))
}

/// Takes `events` from the caller's rate limit, or answers 429 (with `Retry-After`), or 413
/// when the request is larger than the key's burst. Called only once a request is valid and
/// about to be written: nothing of a refused request reaches Kafka.
fn admit(state: &IngestState, caller: &Caller, events: usize) -> Result<(), Box<Response>> {
    take_limit(state, caller, events).map_err(|refusal| Box::new(limit_answer(&refusal, events)))
}

/// Takes `events` from the caller's rate limit; a refusal is counted and logged.
pub(crate) fn take_limit(state: &IngestState, caller: &Caller, events: usize) -> Result<(), Refusal> {
    let Err(refusal) = state.limiter.take(&caller.key_id, caller.limit, events as u64, state.started.elapsed()) else {
        return Ok(());
    };
    state.metrics.rate_limited(events);
    tracing::debug!(key = %caller.key_id, tenant = %caller.tenant_id, events, ?refusal, "rate limited");
    Err(refusal)
}

/// What to tell a client whose `events` its rate limit refused.
pub(crate) fn limit_message(refusal: &Refusal, events: usize) -> String {
    match refusal {
        Refusal::OverBurst { limit } => format!(
            "{events} events are more than this API key may send at once (its burst: {} events, at {} events/s): \
             send at most {} events per request; nothing was written",
            limit.burst, limit.per_second, limit.burst
        ),
        Refusal::Limited { limit, .. } => format!(
            "this API key may send {} events per second (bursts of up to {}); these {events} events are over \
             its limit: resend them after {} s (Retry-After). Nothing of this request was written",
            limit.per_second,
            limit.burst,
            refusal.retry_after_secs()
        ),
    }
}

/// The 413 (over the burst) or 429 answer to a refusal.
pub(crate) fn limit_answer(refusal: &Refusal, events: usize) -> Response {
    let message = limit_message(refusal, events);
    match refusal {
        Refusal::OverBurst { .. } => error(StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", message, vec![]),
        Refusal::Limited { .. } => {
            let secs = refusal.retry_after_secs();
            let body = ErrorBody { error: "rate_limited", message, errors: vec![], retry_after_secs: Some(secs) };
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

/// `POST /v1/decide`: the router's decision for one call ([`Sidecar`]).
async fn post_decide(State(state): State<Arc<IngestState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let started = std::time::Instant::now();
    let Some(sidecar) = &state.sidecar else { return StatusCode::NOT_FOUND.into_response() };
    let caller = match authenticate(&state, &headers) {
        Ok(caller) => caller,
        Err(answer) => return *answer,
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return error(rejection.status(), "bad_request", format!("cannot read the body: {rejection}"), vec![]),
    };
    let answer = match sidecar.decide(&caller.tenant_id, &body) {
        Ok(answer) => answer,
        Err((status, code, message)) => error(status, code, message, vec![]),
    };
    sidecar.observe_handling(started);
    answer
}

/// Writes the events and waits until Kafka acknowledged every one, within the ack timeout.
pub(crate) async fn write_all(state: &IngestState, events: &[UsageEvent]) -> Result<(), String> {
    use rdkafka::error::KafkaError as E;
    use rdkafka::types::RDKafkaErrorCode;
    let timeout = Duration::from_millis(state.settings.ack_timeout_ms);
    let deadline = Instant::now() + timeout;
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let payload = state.codec.encode_framed(event, state.wire).map_err(|e| format!("encoding failed: {e}"))?;
        // The key is the tenant id, exactly as every other producer keys the usage topic: the
        // processor's partitioning and dedupe rely on it.
        let mut record = FutureRecord::to(&state.topic).key(event.attribution.tenant_id.as_bytes()).payload(&payload);
        loop {
            match state.producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((E::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if Instant::now() >= deadline {
                        return Err(format!("Kafka did not take the events within {timeout:?} (producer queue full)"));
                    }
                    record = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(format!("Kafka refused an event: {e}")),
            }
        }
    }
    let acks = async {
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(format!("Kafka did not acknowledge an event: {e}")),
                Err(_) => return Err("the producer shut down before Kafka acknowledged every event".to_owned()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, acks).await {
        Ok(result) => result,
        Err(_) => Err(format!("Kafka did not acknowledge every event within {timeout:?}")),
    }
}

/// Serves on `listener` (a `tokio::net::TcpListener`, or a [`crate::tls::TlsListener`]) until
/// `shutdown` resolves, then lets in-flight requests finish (each is bounded by the ack
/// timeout) and flushes the producer.
pub async fn serve<L>(
    state: Arc<IngestState>,
    listener: L,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
    let app = router(Arc::clone(&state));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| IngestError::Io(format!("HTTP server: {e}")))?;
    let flushing = Arc::clone(&state);
    let _ = tokio::task::spawn_blocking(move || flushing.flush(grace)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys_are_read_case_insensitively() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn the_openapi_document_describes_the_endpoint() {
        assert!(OPENAPI_YAML.contains("/v1/usage"));
        assert!(OPENAPI_YAML.contains("openapi: 3."));
    }
}
