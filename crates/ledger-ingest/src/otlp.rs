//! OTLP traces -> usage events: OpenTelemetry GenAI spans become usage events, so a service
//! already instrumented with `gen_ai.*` attributes needs no code change.
//!
//! Every transport decodes into the same protobuf type, [`ExportTraceServiceRequest`]: OTLP/HTTP
//! JSON through its serde mapping ([`decode_json`]), OTLP/HTTP protobuf through prost
//! ([`decode_protobuf`]) and OTLP/gRPC through tonic. [`usage_events`] is the one mapping from a
//! span to a [`UsageEvent`].
//!
//! A span is a usage span when it carries a token count (any name of [`USAGE_ATTRIBUTES`]);
//! other spans are skipped and counted. Mapping:
//!
//! | usage event | span |
//! |---|---|
//! | `event_id` | `otlp-{traceId}-{spanId}` (hex; a re-exported span is counted once) |
//! | `event_time` | `endTimeUnixNano` |
//! | `tenant_id` | the API key's tenant (`ledger.tenant_id`, when present, must match) |
//! | `provider` | `gen_ai.provider.name`, else `gen_ai.system` |
//! | `operation` | `gen_ai.operation.name` (default `chat`) |
//! | `request_model` / `response_model` | `gen_ai.request.model` / `gen_ai.response.model` |
//! | `input_tokens` | `gen_ai.usage.input_tokens`, else the deprecated `gen_ai.usage.prompt_tokens` (inclusive, as the GenAI conventions define them) |
//! | `output_tokens` | `gen_ai.usage.output_tokens`, else the deprecated `gen_ai.usage.completion_tokens` |
//! | `cache_read_input_tokens` | `gen_ai.usage.cache_read.input_tokens`, else `gen_ai.usage.cache_read_input_tokens` |
//! | `cache_creation_input_tokens` | `gen_ai.usage.cache_creation.input_tokens`, else `gen_ai.usage.cache_creation_input_tokens` |
//! | `reasoning_output_tokens` | `gen_ai.usage.reasoning.output_tokens` |
//! | `team`, `project`, `user_id`, `feature`, `environment` | `ledger.team`, `ledger.project`, `ledger.user_id` (else `user.id`), `ledger.feature`, `ledger.environment` (else resource `deployment.environment.name`, else `deployment.environment`) |
//! | `routed_from_model`, `service_tier` | `ledger.routed_from_model`, `gen_ai.openai.request.service_tier` |
//! | `latency_ms`, `status`, `response_id`, `trace_id` | span duration, `error` when the span status is ERROR, `gen_ai.response.id`, `traceId` |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use ledger_core::attribution::Attribution;
use ledger_core::UsageEvent;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;

/// Input tokens (cache reads and writes included): the current name first, then the deprecated one.
const INPUT: [&str; 2] = ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
/// Output tokens (reasoning included).
const OUTPUT: [&str; 2] = ["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"];
/// The part of the input read from a prompt cache.
const CACHE_READ: [&str; 2] = ["gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"];
/// The part of the input written to a prompt cache.
const CACHE_CREATION: [&str; 2] = ["gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"];
/// The part of the output spent on reasoning.
const REASONING: [&str; 1] = ["gen_ai.usage.reasoning.output_tokens"];

/// The token attributes that make a span a usage span (current and deprecated names).
pub const USAGE_ATTRIBUTES: [&str; 9] =
    [INPUT[0], INPUT[1], OUTPUT[0], OUTPUT[1], CACHE_READ[0], CACHE_READ[1], CACHE_CREATION[0], CACHE_CREATION[1], REASONING[0]];

/// What one export request yields.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SpanUsage {
    /// One event per usable usage span.
    pub events: Vec<UsageEvent>,
    /// Spans without any token attribute: not usage, skipped.
    pub skipped: usize,
    /// Usage spans that could not be turned into events, each `span {spanId}: {problem}`.
    pub problems: Vec<String>,
}

/// An OTLP/HTTP JSON body (the protobuf JSON mapping: camelCase names, hex trace and span ids,
/// 64-bit integers as strings or numbers; unknown fields are ignored).
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    if value.get("resourceSpans").is_none() {
        return Err("not an OTLP ExportTraceServiceRequest: no `resourceSpans` array".to_owned());
    }
    serde_json::from_value(value).map_err(|e| format!("not an OTLP ExportTraceServiceRequest ({e})"))
}

/// An OTLP/HTTP protobuf body (`application/x-protobuf`).
pub fn decode_protobuf(body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    use prost::Message as _;
    ExportTraceServiceRequest::decode(body).map_err(|e| format!("not an OTLP ExportTraceServiceRequest in protobuf ({e})"))
}

/// The usage events of an export request, for the API key's `tenant`.
pub fn usage_events(request: &ExportTraceServiceRequest, tenant: &str) -> SpanUsage {
    let mut out = SpanUsage::default();
    for rs in &request.resource_spans {
        let resource = Attributes::of(rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default());
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            let attrs = Attributes::of(&span.attributes);
            if !USAGE_ATTRIBUTES.iter().any(|k| attrs.0.contains_key(k)) {
                out.skipped += 1;
                continue;
            }
            match span_event(span, &attrs, &resource, tenant) {
                Ok(e) => out.events.push(e),
                Err(problem) => out.problems.push(format!("span {}: {problem}", hex(&span.span_id))),
            }
        }
    }
    out
}

/// A span's (or resource's) attributes by key; a repeated key keeps its last value.
struct Attributes<'a>(BTreeMap<&'a str, &'a AnyValue>);

impl<'a> Attributes<'a> {
    fn of(list: &'a [KeyValue]) -> Attributes<'a> {
        Attributes(list.iter().filter_map(|kv| Some((kv.key.as_str(), kv.value.as_ref()?.value.as_ref()?))).collect())
    }

    fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key) {
            Some(AnyValue::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }

    /// A token count: the first of `names` present (the current name before the deprecated
    /// one); an int, or (leniently) a string of digits; absent is 0.
    fn count(&self, names: &[&str]) -> Result<i64, String> {
        let Some((key, value)) = names.iter().find_map(|k| self.0.get(k).map(|v| (*k, *v))) else { return Ok(0) };
        match value {
            AnyValue::IntValue(i) => Ok(*i),
            AnyValue::StringValue(s) => s.parse().map_err(|_| format!("`{key}` must be an integer (got {s:?})")),
            other => Err(format!("`{key}` must be an integer (got {})", kind(other))),
        }
    }
}

fn kind(v: &AnyValue) -> &'static str {
    match v {
        AnyValue::StringValue(_) => "a string",
        AnyValue::BoolValue(_) => "a bool",
        AnyValue::IntValue(_) => "an int",
        AnyValue::DoubleValue(_) => "a double",
        AnyValue::ArrayValue(_) => "an array",
        AnyValue::KvlistValue(_) => "a key-value list",
        AnyValue::BytesValue(_) => "bytes",
        AnyValue::StringValueStrindex(_) => "a string-table index",
    }
}

/// Lowercase hex, as OTLP/JSON spells trace and span ids.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn span_event(span: &Span, attrs: &Attributes<'_>, resource: &Attributes<'_>, tenant: &str) -> Result<UsageEvent, String> {
    if span.trace_id.iter().all(|b| *b == 0) {
        return Err("no traceId".to_owned());
    }
    if span.span_id.iter().all(|b| *b == 0) {
        return Err("no spanId".to_owned());
    }
    let (trace_id, span_id) = (hex(&span.trace_id), hex(&span.span_id));
    let end = i64::try_from(span.end_time_unix_nano).map_err(|_| "endTimeUnixNano is beyond the year 2262")?;
    if end == 0 {
        return Err("no endTimeUnixNano".to_owned());
    }
    let start = i64::try_from(span.start_time_unix_nano).ok().filter(|s| *s > 0);
    if let Some(claimed) = attrs.text("ledger.tenant_id") {
        if claimed != tenant {
            return Err(format!("`ledger.tenant_id` is {claimed:?}, but this API key writes usage of {tenant:?} only"));
        }
    }
    let provider = attrs
        .text("gen_ai.provider.name")
        .or_else(|| attrs.text("gen_ai.system"))
        .ok_or("no `gen_ai.provider.name` (or `gen_ai.system`)")?;
    let request_model =
        attrs.text("gen_ai.request.model").or_else(|| attrs.text("gen_ai.response.model")).ok_or("no `gen_ai.request.model`")?;
    let failed = span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32);
    let event = UsageEvent {
        event_id: format!("otlp-{trace_id}-{span_id}"),
        event_time: DateTime::<Utc>::from_timestamp_nanos(end),
        attribution: Attribution {
            tenant_id: tenant.to_owned(),
            team: attrs.text("ledger.team"),
            project: attrs.text("ledger.project"),
            user_id: attrs.text("ledger.user_id").or_else(|| attrs.text("user.id")),
            api_key_id: attrs.text("ledger.api_key_id"),
        },
        feature: attrs.text("ledger.feature"),
        environment: attrs
            .text("ledger.environment")
            .or_else(|| resource.text("deployment.environment.name"))
            .or_else(|| resource.text("deployment.environment")),
        tags: resource.text("service.name").map(|s| BTreeMap::from([("service".to_owned(), s)])).unwrap_or_default(),
        provider,
        operation: attrs.text("gen_ai.operation.name").unwrap_or_else(|| "chat".to_owned()),
        request_model,
        response_model: attrs.text("gen_ai.response.model"),
        routed_from_model: attrs.text("ledger.routed_from_model"),
        input_tokens: attrs.count(&INPUT)?,
        cache_read_input_tokens: attrs.count(&CACHE_READ)?,
        cache_creation_input_tokens: attrs.count(&CACHE_CREATION)?,
        cache_creation_1h_input_tokens: 0,
        output_tokens: attrs.count(&OUTPUT)?,
        reasoning_output_tokens: attrs.count(&REASONING)?,
        service_tier: attrs.text("gen_ai.openai.request.service_tier").filter(|t| t != "auto"),
        provided_cost_usd: None,
        latency_ms: start.map(|s| end.saturating_sub(s) / 1_000_000),
        status: if failed { "error" } else { "ok" }.to_owned(),
        response_id: attrs.text("gen_ai.response.id"),
        trace_id: Some(trace_id),
    };
    event.validate().map_err(|r| r.to_string())?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn request() -> Value {
        json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "search-api"}}]},
            "scopeSpans": [{"spans": [
                {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                 "startTimeUnixNano": "1764349200000000000", "endTimeUnixNano": "1764349201500000000",
                 "attributes": [
                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
                    {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": 1000}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "300"}},
                    {"key": "ledger.team", "value": {"stringValue": "search"}}]},
                {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000001",
                 "endTimeUnixNano": "1764349201500000000",
                 "attributes": [{"key": "http.route", "value": {"stringValue": "/search"}}]}
            ]}]
        }]})
    }

    fn convert(v: &Value) -> SpanUsage {
        usage_events(&decode_json(v.to_string().as_bytes()).expect("decodes"), "acme")
    }

    #[test]
    fn genai_spans_become_events_and_others_are_skipped() {
        let out = convert(&request());
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!((out.events.len(), out.skipped), (1, 1));
        let e = &out.events[0];
        assert_eq!(e.event_id, "otlp-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174");
        assert_eq!((e.input_tokens, e.cache_read_input_tokens, e.output_tokens), (1200, 1000, 300));
        assert_eq!(
            (e.provider.as_str(), e.request_model.as_str(), e.attribution.team.as_deref()),
            ("openai", "gpt-4o-mini", Some("search"))
        );
        assert_eq!(e.latency_ms, Some(1500));
        assert_eq!(e.tags.get("service").map(String::as_str), Some("search-api"));
        assert_eq!(e.event_time.timestamp(), 1_764_349_201);
        assert_eq!(e.trace_id.as_deref(), Some("5b8efff798038103d269b633813fc60c"));
    }

    #[test]
    fn protobuf_and_json_give_the_same_events() {
        use prost::Message as _;
        let decoded = decode_json(request().to_string().as_bytes()).unwrap();
        let bytes = decoded.encode_to_vec();
        let from_protobuf = usage_events(&decode_protobuf(&bytes).unwrap(), "acme");
        assert_eq!(from_protobuf, convert(&request()));
        assert!(decode_protobuf(b"\xff\xff\xff").unwrap_err().contains("protobuf"));
    }

    #[test]
    fn deprecated_names_and_gen_ai_system_are_understood() {
        let mut r = request();
        let attrs = &mut r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        *attrs = json!([
            {"key": "gen_ai.system", "value": {"stringValue": "anthropic"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "claude-haiku-4-5"}},
            {"key": "gen_ai.usage.prompt_tokens", "value": {"intValue": "9000"}},
            {"key": "gen_ai.usage.cache_read_input_tokens", "value": {"intValue": "8000"}},
            {"key": "gen_ai.usage.cache_creation_input_tokens", "value": {"intValue": "500"}},
            {"key": "gen_ai.usage.completion_tokens", "value": {"intValue": "100"}}]);
        let out = convert(&r);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let e = &out.events[0];
        assert_eq!(e.provider, "anthropic");
        assert_eq!(
            (e.input_tokens, e.cache_read_input_tokens, e.cache_creation_input_tokens, e.output_tokens),
            (9000, 8000, 500, 100)
        );
        // The current name wins over the deprecated one; gen_ai.provider.name over gen_ai.system.
        let attrs = &mut r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        attrs.as_array_mut().unwrap().extend([
            json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": "9100"}}),
            json!({"key": "gen_ai.usage.reasoning.output_tokens", "value": {"intValue": "40"}}),
            json!({"key": "gen_ai.provider.name", "value": {"stringValue": "aws.bedrock"}}),
        ]);
        let e = &convert(&r).events[0];
        assert_eq!((e.input_tokens, e.reasoning_output_tokens, e.provider.as_str()), (9100, 40, "aws.bedrock"));
    }

    #[test]
    fn unusable_spans_are_reported() {
        let mut r = request();
        r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][3]["value"]["intValue"] = json!("2000");
        let out = convert(&r);
        assert!(out.events.is_empty());
        assert!(out.problems[0].contains("inconsistent_tokens"), "{:?}", out.problems);
        assert!(out.problems[0].starts_with("span eee19b7ec3c1b174:"), "{:?}", out.problems);
        let mut r = request();
        r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][5] =
            json!({"key": "ledger.tenant_id", "value": {"stringValue": "globex"}});
        let out = convert(&r);
        assert!(out.events.is_empty() && out.problems[0].contains("globex"), "{:?}", out.problems);
        let mut r = request();
        r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][2]["value"] = json!({"doubleValue": 1200.0});
        assert!(convert(&r).problems[0].contains("must be an integer (got a double)"));
        let mut r = request();
        r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = json!("");
        assert!(convert(&r).problems[0].contains("no traceId"));
        assert!(decode_json(br#"{"spans": []}"#).is_err());
        assert!(decode_json(b"not json").unwrap_err().contains("not JSON"));
        assert!(decode_json(br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}"#).is_err());
    }
}
