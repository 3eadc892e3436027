//! `POST /v1/traces` (OTLP/HTTP, JSON or protobuf, optionally gzip- or deflate-compressed) and
//! the export path every OTLP transport shares ([`export`]; gRPC is [`crate::grpc`]).
//!
//! The answer is OTLP's, in the request's encoding: 200 with an `ExportTraceServiceResponse`
//! (`partialSuccess` names the usage spans that could not be used), sent only once Kafka
//! acknowledged every usage event; failures carry a `google.rpc.Status` for protobuf requests
//! and the ledger's JSON error otherwise. The headers `ledger-usage-spans`,
//! `ledger-skipped-spans` and `ledger-rejected-spans` count the request's spans.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ledger_core::UsageEvent;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use crate::limit::Refusal;
use crate::otlp::SpanUsage;
use crate::server::{self, Caller, IngestState, Received};

/// Most span problems quoted in one `partialSuccess.errorMessage`.
const MAX_QUOTED_PROBLEMS: usize = 20;

/// The counts of an export that Kafka acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exported {
    /// Usage events written.
    pub(crate) usage: usize,
    /// Spans without token attributes.
    pub(crate) skipped: usize,
    /// Usage spans that could not be used, each with its problem.
    pub(crate) problems: Vec<String>,
}

impl Exported {
    /// OTLP's partial success: the rejected spans and why; none when every usage span was used.
    pub(crate) fn partial_success(&self) -> Option<ExportTracePartialSuccess> {
        if self.problems.is_empty() {
            return None;
        }
        let mut quoted = self.problems.iter().take(MAX_QUOTED_PROBLEMS).cloned().collect::<Vec<_>>().join("; ");
        if self.problems.len() > MAX_QUOTED_PROBLEMS {
            quoted.push_str(&format!("; and {} more", self.problems.len() - MAX_QUOTED_PROBLEMS));
        }
        Some(ExportTracePartialSuccess { rejected_spans: self.problems.len() as i64, error_message: quoted })
    }

    /// The span counts as `(header or metadata name, value)`.
    pub(crate) fn counts(&self) -> [(&'static str, usize); 3] {
        [
            ("ledger-usage-spans", self.usage),
            ("ledger-skipped-spans", self.skipped),
            ("ledger-rejected-spans", self.problems.len()),
        ]
    }
}

/// Why an export wrote nothing.
#[derive(Debug)]
pub(crate) enum Refused {
    /// More usage spans than `ingest.max_events`.
    TooMany(String),
    /// The key's rate limit, for this many events.
    Limited(Refusal, usize),
    /// Kafka did not acknowledge every event.
    Kafka(String),
}

/// The export path of every transport: the usage events of `request` for the caller's
/// tenant, checked against the acceptance window, within the key's rate limit, written and
/// acknowledged by Kafka.
pub(crate) async fn export(
    state: &IngestState,
    caller: &Caller,
    request: &ExportTraceServiceRequest,
    received: Instant,
) -> Result<Exported, Refused> {
    let SpanUsage { events: spans, skipped, mut problems } = crate::otlp::usage_events(request, &caller.tenant_id);
    let now = chrono::Utc::now();
    let mut events: Vec<UsageEvent> = Vec::with_capacity(spans.len());
    for event in spans {
        let mut window_errors = Vec::new();
        let id = event.event_id.clone();
        match crate::validate::check_window(0, event, state.window.as_ref(), now, &mut window_errors) {
            Some(e) => events.push(e),
            None => problems.extend(window_errors.into_iter().map(|e| format!("{id}: {}", e.message))),
        }
    }
    state.metrics.otlp_spans(events.len(), skipped, problems.len());
    let max = state.settings.max_events;
    if events.len() > max {
        return Err(Refused::TooMany(format!(
            "{} GenAI usage spans; at most {max} per request: export smaller batches (e.g. OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
            events.len()
        )));
    }
    if !events.is_empty() {
        server::take_limit(state, caller, events.len()).map_err(|r| Refused::Limited(r, events.len()))?;
    }
    if let Err(problem) = server::write_all(state, &events).await {
        tracing::warn!(key = %caller.key_id, tenant = %caller.tenant_id, events = events.len(), %problem, "OTLP export refused");
        return Err(Refused::Kafka(problem));
    }
    if !events.is_empty() {
        state.metrics.acknowledged(events.len(), received.elapsed());
    }
    Ok(Exported { usage: events.len(), skipped, problems })
}

/// The body encoding of an OTLP/HTTP request (and of its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Protobuf,
}

/// `google.rpc.Status`, the body of an OTLP/HTTP protobuf failure.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A failure in the request's encoding.
fn failure(encoding: Encoding, status: StatusCode, error: &'static str, message: String) -> Response {
    match encoding {
        Encoding::Json => server::error(status, error, message, vec![]),
        Encoding::Protobuf => {
            let code = match status {
                StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
                StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
                StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
                _ => tonic::Code::InvalidArgument,
            };
            let body = RpcStatus { code: code as i32, message }.encode_to_vec();
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))], body).into_response()
        }
    }
}

/// `POST /v1/traces`.
pub(crate) async fn post_traces(
    State(state): State<Arc<IngestState>>,
    Extension(received): Extension<Received>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let encoding = match media.as_str() {
        "" | "application/json" => Encoding::Json,
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        other => {
            return server::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type {other:?}: OTLP/HTTP takes application/json or application/x-protobuf"),
                vec![],
            )
        }
    };
    let caller = match server::caller(&state, server::bearer(&headers)) {
        Ok(c) => c,
        Err(problem) => {
            let mut r = failure(encoding, StatusCode::UNAUTHORIZED, "unauthorized", problem.message());
            r.headers_mut().insert(header::WWW_AUTHENTICATE, server::challenge(&problem));
            return r;
        }
    };
    let limit = state.settings.otlp_max_bytes;
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the body exceeds {limit} bytes (ingest.otlp_max_bytes): export smaller batches");
            return failure(encoding, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message);
        }
        Err(rejection) => {
            return failure(encoding, StatusCode::BAD_REQUEST, "bad_request", format!("cannot read the body: {rejection}"))
        }
    };
    let body = match decompress(&headers, body, limit) {
        Ok(b) => b,
        Err((status, error, message)) => return failure(encoding, status, error, message),
    };
    let decoded = match encoding {
        Encoding::Json => crate::otlp::decode_json(&body),
        Encoding::Protobuf => crate::otlp::decode_protobuf(&body),
    };
    let request = match decoded {
        Ok(r) => r,
        Err(message) => return failure(encoding, StatusCode::BAD_REQUEST, "invalid_body", message),
    };
    match export(&state, &caller, &request, received.0).await {
        Ok(exported) => success(encoding, &exported),
        Err(Refused::TooMany(message)) => failure(encoding, StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", message),
        Err(Refused::Limited(refusal, events)) if encoding == Encoding::Json => server::limit_answer(&refusal, events),
        Err(Refused::Limited(refusal, events)) => {
            let message = server::limit_message(&refusal, events);
            let mut r = match refusal {
                Refusal::OverBurst { .. } => failure(encoding, StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", message),
                Refusal::Limited { .. } => failure(encoding, StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
            };
            if matches!(refusal, Refusal::Limited { .. }) {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(refusal.retry_after_secs()));
            }
            r
        }
        Err(Refused::Kafka(problem)) => {
            let message = format!("{problem}; nothing of this request is acknowledged: export again later");
            let mut r = failure(encoding, StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", message);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// The 200 answer: OTLP's `ExportTraceServiceResponse` and the span counts.
fn success(encoding: Encoding, exported: &Exported) -> Response {
    let partial = exported.partial_success();
    let mut r = match encoding {
        Encoding::Json => {
            let body = match &partial {
                None => serde_json::json!({}),
                Some(p) => {
                    serde_json::json!({"partialSuccess": {"rejectedSpans": p.rejected_spans, "errorMessage": p.error_message}})
                }
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        Encoding::Protobuf => {
            let body = ExportTraceServiceResponse { partial_success: partial }.encode_to_vec();
            (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))], body).into_response()
        }
    };
    for (name, n) in exported.counts() {
        r.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from(n));
    }
    r
}

/// The body as sent, or inflated per `Content-Encoding` (gzip, deflate) within `limit` bytes.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, (StatusCode, &'static str, String)> {
    let coding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase();
    let inflated = match coding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit),
        "deflate" => read_limited(flate2::read::ZlibDecoder::new(&body[..]), limit),
        other => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Encoding {other:?}: send gzip, deflate or an uncompressed body"),
            ))
        }
    };
    inflated.map(Bytes::from).map_err(|problem| match problem {
        Inflate::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds {limit} bytes once decompressed (ingest.otlp_max_bytes): export smaller batches"),
        ),
        Inflate::Corrupt(e) => (StatusCode::BAD_REQUEST, "invalid_body", format!("the body is not valid {coding} ({e})")),
    })
}

enum Inflate {
    TooLarge,
    Corrupt(std::io::Error),
}

fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(Inflate::Corrupt)?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(encoding: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        h
    }

    #[test]
    fn gzip_and_deflate_bodies_are_inflated_within_the_limit() {
        let plain = b"{\"resourceSpans\": []}".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decompress(&headers("gzip"), gz.clone(), 1 << 20).unwrap(), plain);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).unwrap();
        assert_eq!(decompress(&headers("deflate"), Bytes::from(z.finish().unwrap()), 1 << 20).unwrap(), plain);
        assert_eq!(decompress(&HeaderMap::new(), Bytes::from_static(b"x"), 1).unwrap(), Bytes::from_static(b"x"));
        // A small body that inflates beyond the limit (a "zip bomb") stops at the limit.
        let (status, error, _) = decompress(&headers("gzip"), gz, plain.len() - 1).unwrap_err();
        assert_eq!((status, error), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
        let (status, _, message) = decompress(&headers("gzip"), Bytes::from_static(b"not gzip"), 1 << 20).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        let (status, _, message) = decompress(&headers("br"), Bytes::from_static(b"x"), 1 << 20).unwrap_err();
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{message}");
    }

    #[test]
    fn partial_success_names_at_most_twenty_problems() {
        let exported = Exported { usage: 1, skipped: 2, problems: (0..25).map(|i| format!("span {i}: bad")).collect() };
        let p = exported.partial_success().unwrap();
        assert_eq!(p.rejected_spans, 25);
        assert!(p.error_message.starts_with("span 0: bad; span 1: bad") && p.error_message.ends_with("and 5 more"));
        assert_eq!(exported.counts(), [("ledger-usage-spans", 1), ("ledger-skipped-spans", 2), ("ledger-rejected-spans", 25)]);
        assert_eq!(Exported { usage: 1, skipped: 0, problems: vec![] }.partial_success(), None);
    }

    #[test]
    fn protobuf_failures_carry_a_google_rpc_status() {
        let r = failure(Encoding::Protobuf, StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", "later".to_owned());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/x-protobuf");
    }
}
