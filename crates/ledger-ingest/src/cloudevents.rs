//! `POST /v1/events` (also at OpenMeter's path `/api/v1/events`): CloudEvents 1.0 in JSON, one
//! event in structured mode (`application/cloudevents+json`) or an array in batch mode
//! (`application/cloudevents-batch+json`), in the shape OpenMeter takes. Each CloudEvent becomes
//! one usage event and then goes the way of `/v1/usage`: the same field checks, the batch all or
//! nothing, 202 only once Kafka acknowledged.
//!
//! | usage event | CloudEvent |
//! |---|---|
//! | `event_id` | `ce:{bytes of source}:{source}:{id}`: `source` + `id` identify an event (CloudEvents), so a resend is counted once |
//! | `event_time` | `time` (RFC 3339); when absent, the time the request was received |
//! | `tenant_id` | the API key's tenant (`data.tenant_id`, when present, must match) |
//! | `user_id` | `data.user_id`, else `subject` |
//! | `request_model` | `data.request_model`, or OpenMeter's `data.model` |
//! | `input_tokens`, `output_tokens` | `data.input_tokens`, `data.output_tokens`, or `data.prompt_tokens`, `data.completion_tokens`, or OpenMeter's per-type `data.tokens` with `data.type` `input` (or `system`) / `output` |
//! | every other field | `data.<field>`, named as in `/v1/usage` (`provider`, `team`, `cache_read_input_tokens`, ...) |
//!
//! `data.total_tokens`, when present, must equal input plus output tokens. Token counts may be
//! JSON integers or strings of digits (OpenMeter's examples send strings). `type` and other
//! context attributes and extensions are not stored; unknown `data` fields are refused, so that
//! a typo never silently prices zero tokens.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::server::{self, IngestState, Received};
use crate::validate::{parse_event, FieldError};

/// Usage fields that are token counts (strings of digits are taken as numbers).
const COUNTS: [&str; 7] = [
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "latency_ms",
];

/// `(alias in data, usage field)`: the names OpenMeter users and OpenAI's usage object use.
const ALIASES: [(&str, &str); 3] =
    [("model", "request_model"), ("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")];

/// One CloudEvent as a usage event's JSON object (the fields `/v1/usage` takes), and where
/// each field came from, to name it in errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The usage event's fields.
    pub object: Map<String, Value>,
    /// Usage field -> the CloudEvent's name for it, where it is not `data.<field>`.
    origins: BTreeMap<String, String>,
}

impl Mapped {
    /// The CloudEvent's name of a usage field (`id`, `time`, `subject`, `data.prompt_tokens`, ...).
    pub fn origin(&self, field: &str) -> String {
        self.origins.get(field).cloned().unwrap_or_else(|| format!("data.{field}"))
    }
}

fn problem(index: usize, field: &str, message: impl Into<String>) -> FieldError {
    FieldError { index: Some(index), field: Some(field.to_owned()), message: message.into() }
}

/// The usage event object of the CloudEvent at `index` of a request, for the API key's
/// `tenant`; a missing `time` is `received`. Problems are appended to `errors`.
pub fn usage_object(
    index: usize,
    event: &Value,
    tenant: &str,
    received: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<Mapped> {
    let Value::Object(ce) = event else {
        errors.push(FieldError { index: Some(index), field: None, message: "a CloudEvent must be a JSON object".to_owned() });
        return None;
    };
    let before = errors.len();
    let text = |name: &str, errors: &mut Vec<FieldError>| -> Option<String> {
        match ce.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            None | Some(Value::Null) => None,
            Some(_) => {
                errors.push(problem(index, name, "must be a non-empty string"));
                None
            }
        }
    };
    match text("specversion", errors).as_deref() {
        Some("1.0") => {}
        Some(other) => errors.push(problem(index, "specversion", format!("must be \"1.0\" (got {other:?})"))),
        None if errors.len() == before => errors.push(problem(index, "specversion", "is required (\"1.0\")")),
        None => {}
    }
    let required = |name: &str, errors: &mut Vec<FieldError>| {
        let at = errors.len();
        let value = text(name, errors);
        if value.is_none() && errors.len() == at {
            errors.push(problem(index, name, "is required"));
        }
        value
    };
    let (id, source, _type) = (required("id", errors), required("source", errors), required("type", errors));
    let time = text("time", errors);
    let subject = text("subject", errors);
    if let Some(media) = text("datacontenttype", errors) {
        let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            errors.push(problem(index, "datacontenttype", format!("must be application/json (got {media:?})")));
        }
    }
    if ce.contains_key("data_base64") {
        errors.push(problem(index, "data_base64", "send the usage as a JSON object in `data`, not base64"));
    }
    let data = match ce.get("data") {
        Some(Value::Object(data)) => data.clone(),
        Some(_) => {
            errors.push(problem(index, "data", "must be a JSON object of usage fields"));
            Map::new()
        }
        None => {
            errors.push(problem(index, "data", "is required: the usage fields (provider, model, tokens)"));
            Map::new()
        }
    };
    let mut mapped = Mapped { object: Map::new(), origins: BTreeMap::new() };
    for (key, value) in data {
        if key == "event_id" || key == "event_time" {
            let from = if key == "event_id" { "`source` and `id`" } else { "`time`" };
            errors.push(problem(index, &format!("data.{key}"), format!("comes from the CloudEvent's {from}, not from data")));
            continue;
        }
        let field = ALIASES.iter().find(|(alias, _)| *alias == key).map(|(_, f)| *f).unwrap_or(key.as_str()).to_owned();
        if field != key {
            mapped.origins.insert(field.clone(), format!("data.{key}"));
        }
        if mapped.object.insert(field.clone(), value).is_some() {
            errors.push(problem(index, &format!("data.{key}"), format!("gives `{field}` twice: send one of its names")));
        }
    }
    per_type_tokens(index, &mut mapped, errors);
    for field in COUNTS {
        if let Some(Value::String(s)) = mapped.object.get(field) {
            if let Ok(n) = s.trim().parse::<i64>() {
                mapped.object.insert(field.to_owned(), Value::from(n));
            }
        }
    }
    check_total(index, &mut mapped, errors);
    if let (Some(source), Some(id)) = (&source, &id) {
        mapped.object.insert("event_id".into(), Value::from(format!("ce:{}:{source}:{id}", source.len())));
        mapped.origins.insert("event_id".into(), "id".into());
    }
    let time = time.unwrap_or_else(|| received.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    mapped.object.insert("event_time".into(), Value::from(time));
    mapped.origins.insert("event_time".into(), "time".into());
    mapped.object.entry("tenant_id").or_insert_with(|| Value::from(tenant));
    if let (Some(subject), false) = (subject, mapped.object.contains_key("user_id")) {
        mapped.object.insert("user_id".into(), Value::from(subject));
        mapped.origins.insert("user_id".into(), "subject".into());
    }
    (errors.len() == before).then_some(mapped)
}

/// OpenMeter's one-event-per-token-type form: `tokens` with `type` `input`, `system` or `output`.
fn per_type_tokens(index: usize, mapped: &mut Mapped, errors: &mut Vec<FieldError>) {
    let kind = mapped.object.remove("type");
    let Some(tokens) = mapped.object.remove("tokens") else {
        if kind.is_some() {
            errors.push(problem(index, "data.type", "only goes with `tokens` (OpenMeter's per-type form)"));
        }
        return;
    };
    let field = match kind.as_ref().and_then(Value::as_str) {
        Some("input" | "system") => "input_tokens",
        Some("output") => "output_tokens",
        _ => {
            errors.push(problem(index, "data.type", "with `tokens`, must be \"input\", \"system\" or \"output\""));
            return;
        }
    };
    if mapped.object.insert(field.to_owned(), tokens).is_some() {
        errors.push(problem(index, "data.tokens", format!("gives `{field}` twice: send one of its names")));
    }
    mapped.origins.insert(field.to_owned(), "data.tokens".to_owned());
}

/// `total_tokens` is no usage field; when sent, it must be input plus output tokens.
fn check_total(index: usize, mapped: &mut Mapped, errors: &mut Vec<FieldError>) {
    let Some(total) = mapped.object.remove("total_tokens") else { return };
    let number = |v: Option<&Value>| match v {
        None => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let (Some(total), Some(input), Some(output)) =
        (number(Some(&total)), number(mapped.object.get("input_tokens")), number(mapped.object.get("output_tokens")))
    else {
        if number(Some(&total)).is_none() {
            errors.push(problem(index, "data.total_tokens", "must be an integer"));
        }
        return;
    };
    if input.checked_add(output) != Some(total) {
        errors.push(problem(
            index,
            "data.total_tokens",
            format!("is {total}, but input plus output tokens are {}", i128::from(input) + i128::from(output)),
        ));
    }
}

/// How the body carries its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Structured,
    Batch,
    /// `application/json`: one event or an array.
    Either,
}

/// `POST /v1/events`.
pub(crate) async fn post_events(
    State(state): State<Arc<IngestState>>,
    Extension(received): Extension<Received>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let entry = match server::authenticate(&state, &headers) {
        Ok(entry) => entry,
        Err(answer) => return *answer,
    };
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mode = match media.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "application/cloudevents+json" => Mode::Structured,
        "application/cloudevents-batch+json" => Mode::Batch,
        "" | "application/json" => Mode::Either,
        other => {
            return server::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {other:?}: send application/cloudevents+json (one event) or \
                     application/cloudevents-batch+json (an array of events)"
                ),
                vec![],
            )
        }
    };
    let body = match server::read_body(body, state.settings.max_body_bytes, "split the batch") {
        Ok(b) => b,
        Err(answer) => return *answer,
    };
    let invalid = |message: String| server::error(StatusCode::BAD_REQUEST, "invalid_body", message, vec![]);
    let events = match (mode, serde_json::from_slice::<Value>(&body)) {
        (_, Err(e)) => return invalid(format!("the body is not valid JSON ({e})")),
        (Mode::Structured | Mode::Either, Ok(event @ Value::Object(_))) => vec![event],
        (Mode::Batch | Mode::Either, Ok(Value::Array(events))) => events,
        (Mode::Structured, Ok(_)) => {
            return invalid(
                "application/cloudevents+json carries one CloudEvent object; send an array as \
                 application/cloudevents-batch+json"
                    .to_owned(),
            )
        }
        (_, Ok(_)) => return invalid("application/cloudevents-batch+json carries a JSON array of CloudEvents".to_owned()),
    };
    if events.is_empty() {
        return invalid("the batch is empty: send at least one CloudEvent".to_owned());
    }
    let (count, max) = (events.len(), state.settings.max_events);
    if count > max {
        let message = format!("the batch has {count} events; at most {max} per request: split the batch");
        return server::error(StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", message, vec![]);
    }
    let now = Utc::now();
    let mut errors = Vec::new();
    let mut usage = Vec::with_capacity(count);
    for (i, event) in events.iter().enumerate() {
        let Some(mapped) = usage_object(i, event, &entry.tenant_id, now, &mut errors) else { continue };
        let Ok(raw) = serde_json::value::to_raw_value(&mapped.object) else { continue };
        let before = errors.len();
        if let Some(e) = parse_event(i, &raw, state.window.as_ref(), now, &mut errors) {
            usage.push((i, e));
        }
        for e in &mut errors[before..] {
            if let Some(field) = e.field.as_mut() {
                *field = mapped.origin(field);
            }
        }
    }
    server::write_batch(&state, &entry, received, count, usage, errors, "data.tenant_id").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn map(event: Value) -> Result<Mapped, Vec<FieldError>> {
        let mut errors = Vec::new();
        usage_object(3, &event, "acme", received(), &mut errors).ok_or(errors)
    }

    fn event() -> Value {
        json!({"specversion": "1.0", "type": "llm.usage", "id": "00001", "source": "chat-app",
               "time": "2026-12-01T09:59:58.5Z", "subject": "customer-1",
               "data": {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": "1200",
                        "completion_tokens": 300, "total_tokens": 1500, "cache_read_input_tokens": 1000, "team": "search"}})
    }

    #[test]
    fn an_openmeter_style_event_maps_to_a_usage_event() {
        let m = map(event()).unwrap();
        assert_eq!(
            Value::Object(m.object.clone()),
            json!({"event_id": "ce:8:chat-app:00001", "event_time": "2026-12-01T09:59:58.5Z", "tenant_id": "acme",
                   "user_id": "customer-1", "provider": "openai", "request_model": "gpt-4o-mini", "input_tokens": 1200,
                   "output_tokens": 300, "cache_read_input_tokens": 1000, "team": "search"})
        );
        assert_eq!(
            (m.origin("input_tokens"), m.origin("event_id"), m.origin("team")),
            ("data.prompt_tokens".into(), "id".into(), "data.team".into())
        );
        // It passes the checks of /v1/usage.
        let raw = serde_json::value::to_raw_value(&m.object).unwrap();
        let e = parse_event(0, &raw, None, received(), &mut Vec::new()).expect("a valid usage event");
        assert_eq!((e.input_tokens, e.output_tokens, e.attribution.user_id.as_deref()), (1200, 300, Some("customer-1")));
    }

    #[test]
    fn source_and_id_make_an_unambiguous_event_id() {
        let id = |source: &str, id: &str| {
            let mut e = event();
            e["source"] = json!(source);
            e["id"] = json!(id);
            map(e).unwrap().object["event_id"].clone()
        };
        assert_ne!(id("a:b", "c"), id("a", "b:c"));
        assert_eq!(id("a", "b:c"), json!("ce:1:a:b:c"));
        assert_eq!(id("service-0", "00001"), id("service-0", "00001"));
    }

    #[test]
    fn per_type_tokens_and_defaults() {
        let mut e = event();
        e.as_object_mut().unwrap().remove("time");
        e.as_object_mut().unwrap().remove("subject");
        e["data"] = json!({"provider": "anthropic", "model": "claude-haiku-4-5", "tokens": "123456", "type": "output",
                           "user_id": "u-7", "tenant_id": "acme"});
        let m = map(e).unwrap();
        assert_eq!(m.object["output_tokens"], json!(123456));
        assert_eq!(m.origin("output_tokens"), "data.tokens");
        assert_eq!(m.object["event_time"], json!("2026-12-01T10:00:00Z"), "no time: when it was received");
        assert_eq!((m.object["user_id"].clone(), m.object["tenant_id"].clone()), (json!("u-7"), json!("acme")));
        let mut e = event();
        e["data"] = json!({"provider": "openai", "model": "gpt-4o", "tokens": 5, "type": "system"});
        assert_eq!(map(e).unwrap().object["input_tokens"], json!(5));
    }

    #[test]
    fn problems_name_the_cloudevent_fields() {
        let fields = |e: Value| -> Vec<String> { map(e).unwrap_err().into_iter().map(|e| e.field.unwrap_or_default()).collect() };
        let mut e = event();
        e["specversion"] = json!("0.3");
        e.as_object_mut().unwrap().remove("id");
        e["source"] = json!(7);
        assert_eq!(fields(e), ["specversion", "id", "source"]);
        let mut e = event();
        e["data"]["total_tokens"] = json!(1499);
        e["data"]["input_tokens"] = json!(1);
        e["data"]["event_id"] = json!("x");
        assert_eq!(fields(e), ["data.event_id", "data.prompt_tokens", "data.total_tokens"]);
        let mut e = event();
        e["data"]["type"] = json!("input");
        e["datacontenttype"] = json!("text/plain");
        e["data_base64"] = json!("AAAA");
        assert_eq!(fields(e), ["datacontenttype", "data_base64", "data.type"]);
        let mut e = event();
        e["data"] = json!("tokens=5");
        assert_eq!(fields(e), ["data"]);
        let errors = map(json!([1])).unwrap_err();
        assert_eq!((errors[0].index, errors[0].field.as_deref()), (Some(3), None));
    }

    #[test]
    fn usage_checks_apply_and_unknown_data_fields_are_refused() {
        let mut e = event();
        e["data"]["input_token"] = json!(5);
        e["data"]["output_tokens"] = json!("many");
        e["data"].as_object_mut().unwrap().remove("completion_tokens");
        e["data"].as_object_mut().unwrap().remove("total_tokens");
        let m = map(e).unwrap();
        let raw = serde_json::value::to_raw_value(&m.object).unwrap();
        let mut errors = Vec::new();
        assert!(parse_event(0, &raw, None, received(), &mut errors).is_none());
        let fields: Vec<String> = errors.iter().map(|e| m.origin(e.field.as_deref().unwrap())).collect();
        assert_eq!(fields, ["data.input_token", "data.output_tokens"], "{errors:?}");
    }
}
