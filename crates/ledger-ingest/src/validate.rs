//! Request body -> validated usage events, with field-level errors.
//!
//! Each event is checked field by field against the usage event schema before serde sees it,
//! so that every problem names its field: unknown fields (a typo such as `input_token` would
//! otherwise silently price zero tokens), wrong JSON types, empty required strings, negative
//! token counts, money given as a JSON number, unparsable times; then the ledger's own
//! validation (token parts within their totals) and, when configured, what the processor
//! would reject ([`Door`]: its acceptance rules and the catalog's per-model token limits).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ledger_core::attribution::Attribution;
use ledger_core::{Money, UsageEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::door::check_window;
pub use crate::door::Door;

/// One problem of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Position of the event in the batch (0 for a single event); none for the body itself.
    pub index: Option<usize>,
    /// The field concerned; none when the problem is the whole event or body.
    pub field: Option<String>,
    /// What is wrong and what to send instead.
    pub message: String,
}

impl FieldError {
    pub(crate) fn at(index: usize, field: &str, message: impl Into<String>) -> Self {
        FieldError { index: Some(index), field: Some(field.to_owned()), message: message.into() }
    }
}

/// Why a body could not be turned into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not an event, an array of events or `{"events": [...]}`.
    Malformed(String),
    /// More events than allowed.
    TooManyEvents {
        /// Events in the body.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The events of a body: an array, `{"events": [...]}`, or one event object. The events are
/// borrowed from the body unparsed; [`parse_event`] parses each.
pub fn split_body(body: &[u8], max_events: usize) -> Result<Vec<&RawValue>, BodyError> {
    let not_json = |e: serde_json::Error| {
        BodyError::Malformed(format!(
            "the body is not valid JSON ({e}); send one event object, an array of events or {{\"events\": [...]}}"
        ))
    };
    let events: Vec<&RawValue> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body).map_err(not_json)?,
        Some(b'{') => {
            let map: BTreeMap<Cow<'_, str>, &RawValue> = serde_json::from_slice(body).map_err(not_json)?;
            match map.get("events") {
                Some(events) if map.len() == 1 => serde_json::from_str(events.get())
                    .map_err(|_| BodyError::Malformed("`events` must be an array of event objects".to_owned()))?,
                Some(_) => {
                    return Err(BodyError::Malformed(
                        "a batch object must have the single key `events` (an array of events)".to_owned(),
                    ))
                }
                None => vec![serde_json::from_slice(body).map_err(not_json)?],
            }
        }
        _ => {
            let value: Value = serde_json::from_slice(body).map_err(not_json)?;
            return Err(BodyError::Malformed(format!(
                "the body is a JSON {}; send one event object, an array of events or {{\"events\": [...]}}",
                json_type(&value)
            )));
        }
    };
    if events.is_empty() {
        return Err(BodyError::Malformed("the batch is empty: send at least one event".to_owned()));
    }
    if events.len() > max_events {
        return Err(BodyError::TooManyEvents { count: events.len(), max: max_events });
    }
    Ok(events)
}

#[derive(Clone, Copy)]
enum Kind {
    RequiredString,
    OptionalString,
    /// `operation`, `status`: a string with a default.
    DefaultedString,
    TokenCount,
    OptionalInteger,
    Time,
    Tags,
    Money,
}

const FIELDS: &[(&str, Kind)] = &[
    ("event_id", Kind::RequiredString),
    ("event_time", Kind::Time),
    ("tenant_id", Kind::RequiredString),
    ("team", Kind::OptionalString),
    ("project", Kind::OptionalString),
    ("user_id", Kind::OptionalString),
    ("api_key_id", Kind::OptionalString),
    ("feature", Kind::OptionalString),
    ("environment", Kind::OptionalString),
    ("tags", Kind::Tags),
    ("provider", Kind::RequiredString),
    ("operation", Kind::DefaultedString),
    ("request_model", Kind::RequiredString),
    ("response_model", Kind::OptionalString),
    ("routed_from_model", Kind::OptionalString),
    ("input_tokens", Kind::TokenCount),
    ("cache_read_input_tokens", Kind::TokenCount),
    ("cache_creation_input_tokens", Kind::TokenCount),
    ("cache_creation_1h_input_tokens", Kind::TokenCount),
    ("output_tokens", Kind::TokenCount),
    ("reasoning_output_tokens", Kind::TokenCount),
    ("service_tier", Kind::OptionalString),
    ("provided_cost_usd", Kind::Money),
    ("latency_ms", Kind::OptionalInteger),
    ("status", Kind::DefaultedString),
    ("response_id", Kind::OptionalString),
    ("trace_id", Kind::OptionalString),
    // Not part of the event: the `decision_id` of `POST /v1/decide`, echoed so that the sidecar
    // corrects the call's lease reservation to its actual cost (docs/router.md).
    ("decision_id", Kind::OptionalString),
];

/// Longest string field accepted (ids and names; protects the ledger from megabyte labels).
const MAX_STRING_CHARS: usize = 1024;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks one field's value; `Ok(false)` means "absent" (null for an optional field).
fn check_field(index: usize, name: &str, kind: Kind, value: &Value, errors: &mut Vec<FieldError>) -> bool {
    let mut fail = |message: String| {
        errors.push(FieldError::at(index, name, message));
        true
    };
    match (kind, value) {
        (Kind::RequiredString, Value::String(s)) if s.trim().is_empty() => fail("must not be empty".to_owned()),
        (Kind::RequiredString | Kind::OptionalString | Kind::DefaultedString, Value::String(s))
            if s.chars().count() > MAX_STRING_CHARS =>
        {
            fail(format!("is longer than {MAX_STRING_CHARS} characters"))
        }
        (Kind::RequiredString | Kind::OptionalString | Kind::DefaultedString, Value::String(_)) => true,
        (
            Kind::OptionalString | Kind::DefaultedString | Kind::TokenCount | Kind::OptionalInteger | Kind::Tags | Kind::Money,
            Value::Null,
        ) => false,
        (Kind::RequiredString | Kind::OptionalString | Kind::DefaultedString, v) => {
            fail(format!("must be a string (got a JSON {})", json_type(v)))
        }
        (Kind::TokenCount, Value::Number(n)) => match n.as_i64() {
            Some(i) if i < 0 => fail(format!("must not be negative (got {i})")),
            Some(_) => true,
            None if n.is_u64() => fail(format!("is too large (got {n}; at most {})", i64::MAX)),
            None => fail(format!("must be a whole number of tokens (got {n})")),
        },
        (Kind::OptionalInteger, Value::Number(n)) => {
            if n.as_i64().is_some() {
                true
            } else {
                fail(format!("must be an integer (got {n})"))
            }
        }
        (Kind::TokenCount | Kind::OptionalInteger, v) => fail(format!("must be an integer (got a JSON {})", json_type(v))),
        (Kind::Time, Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(_) => true,
            Err(e) => fail(format!("must be an RFC 3339 time such as 2026-11-28T17:00:00Z ({e}; got {s:?})")),
        },
        (Kind::Time, v) => {
            fail(format!("must be an RFC 3339 time string such as 2026-11-28T17:00:00Z (got a JSON {})", json_type(v)))
        }
        (Kind::Tags, Value::Object(tags)) => {
            for (k, v) in tags {
                if !v.is_string() {
                    errors.push(FieldError::at(
                        index,
                        &format!("tags.{k}"),
                        format!("tag values must be strings (got a JSON {})", json_type(v)),
                    ));
                }
            }
            true
        }
        (Kind::Tags, v) => fail(format!("must be an object of string values (got a JSON {})", json_type(v))),
        (Kind::Money, Value::String(s)) => match s.parse::<Money>() {
            Ok(_) => true,
            Err(e) => fail(format!("must be a decimal number of US dollars as a string such as \"0.0125\" ({e})")),
        },
        (Kind::Money, v) => fail(format!(
            "must be a decimal string such as \"0.0125\" (got a JSON {}): money is never sent as a binary float",
            json_type(v)
        )),
    }
}

/// The usage event with unknown fields denied: the fast path. It only ever *accepts*; any
/// event it does not accept outright goes through the field-by-field checks, which explain
/// the problem. Built field by field into [`UsageEvent`] so that a new event field is a
/// compile error here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictEvent {
    event_id: String,
    event_time: DateTime<Utc>,
    tenant_id: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    feature: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    provider: String,
    #[serde(default = "default_operation")]
    operation: String,
    request_model: String,
    #[serde(default)]
    response_model: Option<String>,
    #[serde(default)]
    routed_from_model: Option<String>,
    #[serde(default)]
    input_tokens: i64,
    #[serde(default)]
    cache_read_input_tokens: i64,
    #[serde(default)]
    cache_creation_input_tokens: i64,
    #[serde(default)]
    cache_creation_1h_input_tokens: i64,
    #[serde(default)]
    output_tokens: i64,
    #[serde(default)]
    reasoning_output_tokens: i64,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    provided_cost_usd: Option<Money>,
    #[serde(default)]
    latency_ms: Option<i64>,
    #[serde(default = "default_status")]
    status: String,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    /// Not part of the event (see `FIELDS`).
    #[serde(default)]
    decision_id: Option<String>,
}

fn default_operation() -> String {
    "chat".to_owned()
}

fn default_status() -> String {
    "ok".to_owned()
}

impl From<StrictEvent> for UsageEvent {
    fn from(e: StrictEvent) -> UsageEvent {
        UsageEvent {
            event_id: e.event_id,
            event_time: e.event_time,
            attribution: Attribution {
                tenant_id: e.tenant_id,
                team: e.team,
                project: e.project,
                user_id: e.user_id,
                api_key_id: e.api_key_id,
            },
            feature: e.feature,
            environment: e.environment,
            tags: e.tags,
            provider: e.provider,
            operation: e.operation,
            request_model: e.request_model,
            response_model: e.response_model,
            routed_from_model: e.routed_from_model,
            input_tokens: e.input_tokens,
            cache_read_input_tokens: e.cache_read_input_tokens,
            cache_creation_input_tokens: e.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: e.cache_creation_1h_input_tokens,
            output_tokens: e.output_tokens,
            reasoning_output_tokens: e.reasoning_output_tokens,
            service_tier: e.service_tier,
            provided_cost_usd: e.provided_cost_usd,
            latency_ms: e.latency_ms,
            status: e.status,
            response_id: e.response_id,
            trace_id: e.trace_id,
        }
    }
}

fn has_overlong_string(e: &UsageEvent) -> bool {
    let long = |s: &str| s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS;
    [&e.event_id, &e.attribution.tenant_id, &e.provider, &e.operation, &e.request_model, &e.status].into_iter().any(|s| long(s))
        || [
            &e.attribution.team,
            &e.attribution.project,
            &e.attribution.user_id,
            &e.attribution.api_key_id,
            &e.feature,
            &e.environment,
            &e.response_model,
            &e.routed_from_model,
            &e.service_tier,
            &e.response_id,
            &e.trace_id,
        ]
        .into_iter()
        .any(|s| s.as_deref().is_some_and(long))
}

/// The `decision_id` an event echoes from `POST /v1/decide`, if any (a string; anything else
/// is refused by [`parse_event`]).
pub fn decision_id_of(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Echo {
        #[serde(default)]
        decision_id: Option<String>,
    }
    if !raw.get().contains("\"decision_id\"") {
        return None;
    }
    serde_json::from_str::<Echo>(raw.get()).ok()?.decision_id
}

/// Validates one event of a batch; appends its problems to `errors`.
pub fn parse_event(
    index: usize,
    raw: &RawValue,
    door: &Door,
    now: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<UsageEvent> {
    let event = match parse_fast(raw) {
        Some(event) => event,
        None => parse_checked(index, raw, errors)?,
    };
    check_window(index, event, door, now, errors)
}

/// The fast path: the event when it is plainly valid, else none.
fn parse_fast(raw: &RawValue) -> Option<UsageEvent> {
    let strict = serde_json::from_str::<StrictEvent>(raw.get()).ok()?;
    if strict.decision_id.as_deref().is_some_and(|d| d.chars().count() > MAX_STRING_CHARS) {
        return None;
    }
    let event = UsageEvent::from(strict);
    (event.validate().is_ok() && !has_overlong_string(&event)).then_some(event)
}

/// The field-by-field path: the event, or its problems appended to `errors`.
fn parse_checked(index: usize, raw: &RawValue, errors: &mut Vec<FieldError>) -> Option<UsageEvent> {
    let value: Value = match serde_json::from_str(raw.get()) {
        Ok(v) => v,
        Err(e) => {
            errors.push(FieldError { index: Some(index), field: None, message: format!("not JSON: {e}") });
            return None;
        }
    };
    let Value::Object(mut map) = value else {
        errors.push(FieldError {
            index: Some(index),
            field: None,
            message: format!("an event must be a JSON object (got a JSON {})", json_type(&value)),
        });
        return None;
    };
    let before = errors.len();
    let unknown: Vec<String> = map.keys().filter(|k| !FIELDS.iter().any(|(f, _)| f == k)).cloned().collect();
    for k in unknown {
        errors.push(FieldError::at(index, &k, "unknown field (see /openapi.yaml for the event's fields; names are snake_case)"));
    }
    let mut present = Map::new();
    for (name, kind) in FIELDS {
        match map.remove(*name) {
            None if matches!(kind, Kind::RequiredString | Kind::Time) => {
                errors.push(FieldError::at(index, name, "is required"));
            }
            Some(v) if check_field(index, name, *kind, &v, errors) => {
                present.insert((*name).to_owned(), v);
            }
            None | Some(_) => {}
        }
    }
    if errors.len() > before {
        return None;
    }
    let event: UsageEvent = match serde_json::from_value(Value::Object(present)) {
        Ok(e) => e,
        Err(e) => {
            errors.push(FieldError { index: Some(index), field: None, message: format!("not a usage event: {e}") });
            return None;
        }
    };
    if let Err(rejection) = event.validate() {
        let field = if rejection.detail.starts_with("reasoning") { "reasoning_output_tokens" } else { "input_tokens" };
        errors.push(FieldError::at(index, field, rejection.to_string()));
        return None;
    }
    Some(event)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
