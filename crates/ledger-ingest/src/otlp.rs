//! OTLP/HTTP receiver (JSON encoding): OpenTelemetry GenAI spans become usage events, so a
//! service already instrumented with `gen_ai.*` attributes needs no code change.
//!
//! A span is a usage span when it carries `gen_ai.usage.input_tokens` or
//! `gen_ai.usage.output_tokens`; other spans are ignored. Mapping:
//!
//! | usage event | span |
//! |---|---|
//! | `event_id` | `otlp-{traceId}-{spanId}` (a re-exported span is counted once) |
//! | `event_time` | `endTimeUnixNano` |
//! | `tenant_id` | the API key's tenant (`ledger.tenant_id`, when present, must match) |
//! | `provider` | `gen_ai.provider.name`, else `gen_ai.system` |
//! | `operation` | `gen_ai.operation.name` (default `chat`) |
//! | `request_model` / `response_model` | `gen_ai.request.model` / `gen_ai.response.model` |
//! | `input_tokens`, `output_tokens` | `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` (inclusive, as the GenAI conventions define them) |
//! | `cache_read_input_tokens`, `cache_creation_input_tokens` | `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens` |
//! | `reasoning_output_tokens` | `gen_ai.usage.reasoning.output_tokens` |
//! | `team`, `project`, `user_id`, `feature`, `environment` | `ledger.team`, `ledger.project`, `ledger.user_id` (else `user.id`), `ledger.feature`, `ledger.environment` (else resource `deployment.environment.name`) |
//! | `routed_from_model`, `service_tier` | `ledger.routed_from_model`, `gen_ai.openai.request.service_tier` |
//! | `latency_ms`, `status`, `response_id`, `trace_id` | span duration, `error` when the span status is ERROR, `gen_ai.response.id`, `traceId` |

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ledger_core::attribution::Attribution;
use ledger_core::UsageEvent;
use serde_json::Value;

/// The usage events of an OTLP `ExportTraceServiceRequest` (JSON), and the problems of the
/// GenAI spans that could not be turned into events (`(span, message)`).
pub fn usage_events(request: &Value, tenant: &str) -> Result<(Vec<UsageEvent>, Vec<String>), String> {
    let resource_spans = request
        .get("resourceSpans")
        .and_then(Value::as_array)
        .ok_or("not an OTLP ExportTraceServiceRequest: no `resourceSpans` array")?;
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for rs in resource_spans {
        let resource = attributes(rs.get("resource").and_then(|r| r.get("attributes")));
        let Some(scope_spans) = rs.get("scopeSpans").and_then(Value::as_array) else { continue };
        for ss in scope_spans {
            let Some(spans) = ss.get("spans").and_then(Value::as_array) else { continue };
            for span in spans {
                let attrs = attributes(span.get("attributes"));
                if !attrs.contains_key("gen_ai.usage.input_tokens") && !attrs.contains_key("gen_ai.usage.output_tokens") {
                    continue;
                }
                match span_event(span, &attrs, &resource, tenant) {
                    Ok(e) => events.push(e),
                    Err(problem) => {
                        let id = span.get("spanId").and_then(Value::as_str).unwrap_or("?");
                        problems.push(format!("span {id}: {problem}"));
                    }
                }
            }
        }
    }
    Ok((events, problems))
}

/// OTLP JSON attributes (`[{key, value: {stringValue | intValue | ...}}]`) as plain values.
fn attributes(list: Option<&Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for kv in list.and_then(Value::as_array).into_iter().flatten() {
        let (Some(key), Some(value)) = (kv.get("key").and_then(Value::as_str), kv.get("value")) else { continue };
        let plain = ["stringValue", "intValue", "boolValue", "doubleValue"].iter().find_map(|k| value.get(*k)).cloned();
        if let Some(v) = plain {
            out.insert(key.to_owned(), v);
        }
    }
    out
}

fn text(attrs: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    attrs.get(key).and_then(Value::as_str).map(str::to_owned).filter(|s| !s.is_empty())
}

/// An integer attribute: OTLP JSON sends int64 as a decimal string (or, leniently, a number).
fn count(attrs: &BTreeMap<String, Value>, key: &str) -> Result<i64, String> {
    match attrs.get(key) {
        None => Ok(0),
        Some(Value::String(s)) => s.parse::<i64>().map_err(|_| format!("`{key}` must be an integer (got {s:?})")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("`{key}` must be an integer (got {n})")),
        Some(other) => Err(format!("`{key}` must be an integer (got {other})")),
    }
}

fn nanos(span: &Value, key: &str) -> Option<i64> {
    match span.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn span_event(
    span: &Value,
    attrs: &BTreeMap<String, Value>,
    resource: &BTreeMap<String, Value>,
    tenant: &str,
) -> Result<UsageEvent, String> {
    let trace_id = span.get("traceId").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or("no traceId")?;
    let span_id = span.get("spanId").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or("no spanId")?;
    let end = nanos(span, "endTimeUnixNano").ok_or("no endTimeUnixNano")?;
    let start = nanos(span, "startTimeUnixNano");
    if let Some(claimed) = text(attrs, "ledger.tenant_id") {
        if claimed != tenant {
            return Err(format!("`ledger.tenant_id` is {claimed:?}, but this API key writes usage of {tenant:?} only"));
        }
    }
    let provider = text(attrs, "gen_ai.provider.name")
        .or_else(|| text(attrs, "gen_ai.system"))
        .ok_or("no `gen_ai.provider.name` (or `gen_ai.system`)")?;
    let request_model = text(attrs, "gen_ai.request.model")
        .or_else(|| text(attrs, "gen_ai.response.model"))
        .ok_or("no `gen_ai.request.model`")?;
    let failed = span.get("status").and_then(|s| s.get("code")).is_some_and(|c| c == 2 || c == "STATUS_CODE_ERROR");
    let event = UsageEvent {
        event_id: format!("otlp-{trace_id}-{span_id}"),
        event_time: DateTime::<Utc>::from_timestamp_nanos(end),
        attribution: Attribution {
            tenant_id: tenant.to_owned(),
            team: text(attrs, "ledger.team"),
            project: text(attrs, "ledger.project"),
            user_id: text(attrs, "ledger.user_id").or_else(|| text(attrs, "user.id")),
            api_key_id: text(attrs, "ledger.api_key_id"),
        },
        feature: text(attrs, "ledger.feature"),
        environment: text(attrs, "ledger.environment").or_else(|| text(resource, "deployment.environment.name")),
        tags: text(resource, "service.name").map(|s| BTreeMap::from([("service".to_owned(), s)])).unwrap_or_default(),
        provider,
        operation: text(attrs, "gen_ai.operation.name").unwrap_or_else(|| "chat".to_owned()),
        request_model,
        response_model: text(attrs, "gen_ai.response.model"),
        routed_from_model: text(attrs, "ledger.routed_from_model"),
        input_tokens: count(attrs, "gen_ai.usage.input_tokens")?,
        cache_read_input_tokens: count(attrs, "gen_ai.usage.cache_read.input_tokens")?,
        cache_creation_input_tokens: count(attrs, "gen_ai.usage.cache_creation.input_tokens")?,
        cache_creation_1h_input_tokens: 0,
        output_tokens: count(attrs, "gen_ai.usage.output_tokens")?,
        reasoning_output_tokens: count(attrs, "gen_ai.usage.reasoning.output_tokens")?,
        service_tier: text(attrs, "gen_ai.openai.request.service_tier").filter(|t| t != "auto"),
        provided_cost_usd: None,
        latency_ms: start.map(|s| end.saturating_sub(s) / 1_000_000),
        status: if failed { "error" } else { "ok" }.to_owned(),
        response_id: text(attrs, "gen_ai.response.id"),
        trace_id: Some(trace_id.to_owned()),
    };
    event.validate().map_err(|r| r.to_string())?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn genai_spans_become_events_and_others_are_ignored() {
        let (events, problems) = usage_events(&request(), "acme").unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.event_id, "otlp-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174");
        assert_eq!((e.input_tokens, e.cache_read_input_tokens, e.output_tokens), (1200, 1000, 300));
        assert_eq!(
            (e.provider.as_str(), e.request_model.as_str(), e.attribution.team.as_deref()),
            ("openai", "gpt-4o-mini", Some("search"))
        );
        assert_eq!(e.latency_ms, Some(1500));
        assert_eq!(e.tags.get("service").map(String::as_str), Some("search-api"));
        assert_eq!(e.event_time.timestamp(), 1_764_349_201);
    }

    #[test]
    fn unusable_spans_are_reported() {
        let mut r = request();
        r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][3]["value"]["intValue"] = json!("2000");
        let (events, problems) = usage_events(&r, "acme").unwrap();
        assert!(events.is_empty());
        assert!(problems[0].contains("inconsistent_tokens"), "{problems:?}");
        let mut r = request();
        r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][5] =
            json!({"key": "ledger.tenant_id", "value": {"stringValue": "globex"}});
        let (events, problems) = usage_events(&r, "acme").unwrap();
        assert!(events.is_empty() && problems[0].contains("globex"), "{problems:?}");
        assert!(usage_events(&json!({"spans": []}), "acme").is_err());
    }
}
