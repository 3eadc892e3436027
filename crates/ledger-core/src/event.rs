//! The usage event (one per LLM call) and its validation.
//!
//! [`UsageEvent`] mirrors `schemas/avro/usage_event.avsc` field for field. Token fields are
//! signed on the wire so that a negative count is a clear validation error rather than a
//! decoding failure; [`UsageEvent::validate`] turns them into [`TokenCounts`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::money::Money;

/// One token-usage event: one LLM call, as a service reports it.
///
/// Token totals are inclusive (OpenAI / OpenTelemetry GenAI convention, see PRICING.md):
/// `input_tokens` includes cache reads and writes, `output_tokens` includes reasoning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Idempotency key: the same call reported twice carries the same id.
    pub event_id: String,
    /// When the call happened (UTC).
    pub event_time: DateTime<Utc>,
    /// Who the call is billed to (`tenant_id`, the Kafka key, and the optional team, project,
    /// user and API key); flat fields on the wire.
    #[serde(flatten)]
    pub attribution: Attribution,
    /// Product feature that made the call.
    #[serde(default)]
    pub feature: Option<String>,
    /// Deployment environment (`prod`, `staging`, ...).
    #[serde(default)]
    pub environment: Option<String>,
    /// Free-form attribution tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// OpenTelemetry `gen_ai.provider.name` (`openai`, `anthropic`, `gcp.gemini`, `aws.bedrock`, ...).
    pub provider: String,
    /// OpenTelemetry `gen_ai.operation.name` (`chat`, `embeddings`, ...).
    #[serde(default = "default_operation")]
    pub operation: String,
    /// The model the request asked for.
    pub request_model: String,
    /// The model that actually served the request, when the provider reports it.
    #[serde(default)]
    pub response_model: Option<String>,
    /// The model the application asked for before a router sent it to `request_model`.
    #[serde(default)]
    pub routed_from_model: Option<String>,
    /// Every prompt token, including cache reads and writes.
    #[serde(default)]
    pub input_tokens: i64,
    /// Part of `input_tokens` served from a prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: i64,
    /// Part of `input_tokens` written to a cache with the default (5 minute) lifetime.
    #[serde(default)]
    pub cache_creation_input_tokens: i64,
    /// Part of `input_tokens` written to a cache with a 1 hour lifetime.
    #[serde(default)]
    pub cache_creation_1h_input_tokens: i64,
    /// Every completion token, including reasoning.
    #[serde(default)]
    pub output_tokens: i64,
    /// Part of `output_tokens` spent on reasoning.
    #[serde(default)]
    pub reasoning_output_tokens: i64,
    /// Provider service tier (`default`, `batch`, `priority`, `flex`, ...).
    #[serde(default)]
    pub service_tier: Option<String>,
    /// What the provider billed, when known; stored beside the catalog price for reconciliation.
    #[serde(default)]
    pub provided_cost_usd: Option<Money>,
    /// Call latency in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<i64>,
    /// Outcome of the call (`ok`, `error`, ...).
    #[serde(default = "default_status")]
    pub status: String,
    /// Provider response id.
    #[serde(default)]
    pub response_id: Option<String>,
    /// Distributed trace id.
    #[serde(default)]
    pub trace_id: Option<String>,
}

fn default_operation() -> String {
    "chat".to_owned()
}

fn default_status() -> String {
    "ok".to_owned()
}

/// A borrowed view of a [`UsageEvent`]: the same fields as `&str`, so the processor's hot path
/// (decode, validate, price, aggregate) reads an event straight from the Kafka message without
/// allocating. [`UsageEvent::as_view`] borrows an owned event; [`UsageEventRef::to_owned_event`]
/// copies a view into an owned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEventRef<'a> {
    /// See [`UsageEvent::event_id`].
    pub event_id: &'a str,
    /// See [`UsageEvent::event_time`]; at the wire's precision, microseconds.
    pub event_time: EventTime,
    /// See [`UsageEvent::attribution`].
    pub attribution: Attribution<&'a str>,
    /// See [`UsageEvent::feature`].
    pub feature: Option<&'a str>,
    /// See [`UsageEvent::environment`].
    pub environment: Option<&'a str>,
    /// See [`UsageEvent::tags`].
    pub tags: TagsRef<'a>,
    /// See [`UsageEvent::provider`].
    pub provider: &'a str,
    /// See [`UsageEvent::operation`].
    pub operation: &'a str,
    /// See [`UsageEvent::request_model`].
    pub request_model: &'a str,
    /// See [`UsageEvent::response_model`].
    pub response_model: Option<&'a str>,
    /// See [`UsageEvent::routed_from_model`].
    pub routed_from_model: Option<&'a str>,
    /// See [`UsageEvent::input_tokens`].
    pub input_tokens: i64,
    /// See [`UsageEvent::cache_read_input_tokens`].
    pub cache_read_input_tokens: i64,
    /// See [`UsageEvent::cache_creation_input_tokens`].
    pub cache_creation_input_tokens: i64,
    /// See [`UsageEvent::cache_creation_1h_input_tokens`].
    pub cache_creation_1h_input_tokens: i64,
    /// See [`UsageEvent::output_tokens`].
    pub output_tokens: i64,
    /// See [`UsageEvent::reasoning_output_tokens`].
    pub reasoning_output_tokens: i64,
    /// See [`UsageEvent::service_tier`].
    pub service_tier: Option<&'a str>,
    /// See [`UsageEvent::provided_cost_usd`].
    pub provided_cost_usd: Option<Money>,
    /// See [`UsageEvent::latency_ms`].
    pub latency_ms: Option<i64>,
    /// See [`UsageEvent::status`].
    pub status: &'a str,
    /// See [`UsageEvent::response_id`].
    pub response_id: Option<&'a str>,
    /// See [`UsageEvent::trace_id`].
    pub trace_id: Option<&'a str>,
}

/// An event's instant in unix microseconds, the precision of the wire (`timestamp-micros`),
/// within the range of `DateTime<Utc>`. The processor reads seconds, milliseconds and
/// microseconds of every event from it: plain integer arithmetic, where each conversion of a
/// `DateTime` went through the calendar.
/// The default is the unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(i64);

const MICROS_PER_SEC: i64 = 1_000_000;

impl EventTime {
    /// The earliest instant `DateTime<Utc>` holds, in microseconds.
    const MIN: i64 = DateTime::<Utc>::MIN_UTC.timestamp_micros();
    /// The latest whole microsecond `DateTime<Utc>` holds.
    const MAX: i64 = DateTime::<Utc>::MAX_UTC.timestamp_micros();

    /// The instant `micros` after the unix epoch, if `DateTime<Utc>` can hold it.
    #[inline]
    pub const fn from_micros(micros: i64) -> Option<EventTime> {
        if micros >= Self::MIN && micros <= Self::MAX {
            Some(EventTime(micros))
        } else {
            None
        }
    }

    /// The instant `t`, floored to a whole microsecond.
    pub fn from_datetime(t: DateTime<Utc>) -> EventTime {
        EventTime(t.timestamp_micros())
    }

    /// Microseconds since the unix epoch.
    #[inline]
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Whole milliseconds since the unix epoch (floored).
    #[inline]
    pub const fn millis(self) -> i64 {
        self.0.div_euclid(1_000)
    }

    /// Whole seconds since the unix epoch (floored), as `DateTime::timestamp`.
    #[inline]
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SEC)
    }

    /// The microseconds past [`EventTime::secs`], below 1,000,000.
    #[inline]
    pub const fn subsec_micros(self) -> u32 {
        self.0.rem_euclid(MICROS_PER_SEC) as u32
    }

    /// The instant as a `DateTime<Utc>`.
    pub fn to_datetime(self) -> DateTime<Utc> {
        // In range by construction (`from_micros` checks, `from_datetime` starts from one).
        DateTime::from_timestamp_micros(self.0).unwrap_or(if self.0 < 0 { DateTime::<Utc>::MIN_UTC } else { DateTime::<Utc>::MAX_UTC })
    }
}

impl fmt::Display for EventTime {
    /// RFC 3339 with the fraction it needs, `Z` for UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

/// The tags of a [`UsageEventRef`]: an owned event's map, or pairs read from a message.
/// Two are equal when they hold the same map.
#[derive(Debug, Clone, Copy)]
pub enum TagsRef<'a> {
    /// The map of an owned event.
    Map(&'a BTreeMap<String, String>),
    /// Pairs in wire order (a later duplicate key wins, as in a map built from them).
    Pairs(&'a [(&'a str, &'a str)]),
}

impl PartialEq for TagsRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TagsRef::Map(a), TagsRef::Map(b)) => a == b,
            _ => self.to_map() == other.to_map(),
        }
    }
}

impl Eq for TagsRef<'_> {}

impl<'a> TagsRef<'a> {
    /// The tags as an owned map.
    pub fn to_map(self) -> BTreeMap<String, String> {
        match self {
            TagsRef::Map(m) => m.clone(),
            TagsRef::Pairs(p) => p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }
}

impl UsageEvent {
    /// A call of `tenant_id` to `request_model` of `provider`, with every other field as the
    /// wire format defaults it: operation `chat`, status `ok`, no attribution, tags or tokens.
    pub fn new(
        event_id: String,
        event_time: DateTime<Utc>,
        tenant_id: String,
        provider: String,
        request_model: String,
    ) -> Self {
        UsageEvent {
            event_id,
            event_time,
            attribution: Attribution { tenant_id, team: None, project: None, user_id: None, api_key_id: None },
            feature: None,
            environment: None,
            tags: BTreeMap::new(),
            provider,
            operation: default_operation(),
            request_model,
            response_model: None,
            routed_from_model: None,
            input_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_creation_1h_input_tokens: 0,
            output_tokens: 0,
            reasoning_output_tokens: 0,
            service_tier: None,
            provided_cost_usd: None,
            latency_ms: None,
            status: default_status(),
            response_id: None,
            trace_id: None,
        }
    }

    /// A borrowed view of this event.
    pub fn as_view(&self) -> UsageEventRef<'_> {
        UsageEventRef {
            event_id: &self.event_id,
            event_time: EventTime::from_datetime(self.event_time),
            attribution: self.attribution.as_ref(),
            feature: self.feature.as_deref(),
            environment: self.environment.as_deref(),
            tags: TagsRef::Map(&self.tags),
            provider: &self.provider,
            operation: &self.operation,
            request_model: &self.request_model,
            response_model: self.response_model.as_deref(),
            routed_from_model: self.routed_from_model.as_deref(),
            input_tokens: self.input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: self.cache_creation_1h_input_tokens,
            output_tokens: self.output_tokens,
            reasoning_output_tokens: self.reasoning_output_tokens,
            service_tier: self.service_tier.as_deref(),
            provided_cost_usd: self.provided_cost_usd,
            latency_ms: self.latency_ms,
            status: &self.status,
            response_id: self.response_id.as_deref(),
            trace_id: self.trace_id.as_deref(),
        }
    }
}

impl<'a> UsageEventRef<'a> {
    /// Copies the view into an owned event.
    pub fn to_owned_event(&self) -> UsageEvent {
        let own = |s: Option<&str>| s.map(str::to_owned);
        UsageEvent {
            event_id: self.event_id.to_owned(),
            event_time: self.event_time.to_datetime(),
            attribution: self.attribution.to_owned_attribution(),
            feature: own(self.feature),
            environment: own(self.environment),
            tags: self.tags.to_map(),
            provider: self.provider.to_owned(),
            operation: self.operation.to_owned(),
            request_model: self.request_model.to_owned(),
            response_model: own(self.response_model),
            routed_from_model: own(self.routed_from_model),
            input_tokens: self.input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: self.cache_creation_1h_input_tokens,
            output_tokens: self.output_tokens,
            reasoning_output_tokens: self.reasoning_output_tokens,
            service_tier: own(self.service_tier),
            provided_cost_usd: self.provided_cost_usd,
            latency_ms: self.latency_ms,
            status: self.status.to_owned(),
            response_id: own(self.response_id),
            trace_id: own(self.trace_id),
        }
    }

    /// Checks required fields and token arithmetic; returns the non-negative token counts.
    /// See [`UsageEvent::validate`].
    pub fn validate(&self) -> Result<TokenCounts, Rejection> {
        for (name, value) in [
            ("event_id", self.event_id),
            ("tenant_id", self.attribution.tenant_id),
            ("provider", self.provider),
            ("request_model", self.request_model),
        ] {
            if is_blank(value) {
                return Err(Rejection::new(RejectReason::MissingField, format!("field `{name}` is empty")));
            }
        }
        let field = |name: &str, v: i64| -> Result<u64, Rejection> {
            u64::try_from(v).map_err(|_| {
                Rejection::new(RejectReason::NegativeTokens, format!("field `{name}` is negative ({v})"))
            })
        };
        let t = TokenCounts {
            input: field("input_tokens", self.input_tokens)?,
            cache_read: field("cache_read_input_tokens", self.cache_read_input_tokens)?,
            cache_creation: field("cache_creation_input_tokens", self.cache_creation_input_tokens)?,
            cache_creation_1h: field("cache_creation_1h_input_tokens", self.cache_creation_1h_input_tokens)?,
            output: field("output_tokens", self.output_tokens)?,
            reasoning: field("reasoning_output_tokens", self.reasoning_output_tokens)?,
        };
        let cached = u128::from(t.cache_read) + u128::from(t.cache_creation) + u128::from(t.cache_creation_1h);
        if cached > u128::from(t.input) {
            return Err(Rejection::new(
                RejectReason::InconsistentTokens,
                format!(
                    "cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens \
                     ({cached}) exceed input_tokens ({})",
                    t.input
                ),
            ));
        }
        if t.reasoning > t.output {
            return Err(Rejection::new(
                RejectReason::InconsistentTokens,
                format!("reasoning_output_tokens ({}) exceed output_tokens ({})", t.reasoning, t.output),
            ));
        }
        Ok(t)
    }

    /// The model that prices the event first: `response_model` when set, else `request_model`.
    pub fn served_model(&self) -> &'a str {
        self.response_model.filter(|m| !m.is_empty()).unwrap_or(self.request_model)
    }
}

/// True when `s` is empty or only whitespace (as [`str::trim`] sees it).
#[inline]
fn is_blank(s: &str) -> bool {
    // Ids and names start with a printable ASCII byte: decided without the Unicode trim.
    match s.as_bytes().first() {
        Some(&b) if b.is_ascii() && !char::from(b).is_whitespace() => false,
        _ => s.trim().is_empty(),
    }
}

/// Validated, non-negative token counts of an event (inclusive totals, see PRICING.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TokenCounts {
    /// Every prompt token.
    pub input: u64,
    /// Cache reads (part of `input`).
    pub cache_read: u64,
    /// Cache writes, 5 minute lifetime (part of `input`).
    pub cache_creation: u64,
    /// Cache writes, 1 hour lifetime (part of `input`).
    pub cache_creation_1h: u64,
    /// Every completion token.
    pub output: u64,
    /// Reasoning tokens (part of `output`).
    pub reasoning: u64,
}

impl TokenCounts {
    /// Prompt tokens that were neither read from nor written to a cache.
    pub fn uncached_input(&self) -> u64 {
        self.input - self.cache_read - self.cache_creation - self.cache_creation_1h
    }

    /// Output tokens that are not reasoning tokens.
    pub fn non_reasoning_output(&self) -> u64 {
        self.output - self.reasoning
    }

    /// All tokens of the call (input plus output), for token budgets.
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Why an event was not accepted into the ledger. The `as_str` form is the dead-letter reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The bytes are not a usage event (framing, schema or JSON error).
    DecodeError,
    /// A required field is empty.
    MissingField,
    /// A token count is negative.
    NegativeTokens,
    /// Token parts exceed their total.
    InconsistentTokens,
    /// No catalog entry prices the model.
    UnknownModel,
    /// A cost left the range of `Decimal(38, 12)`.
    Overflow,
    /// The event is older than the acceptance window.
    TooOld,
    /// The event is too far in the future.
    InFuture,
}

impl RejectReason {
    /// Every reason, for metrics and reports.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::DecodeError,
        RejectReason::MissingField,
        RejectReason::NegativeTokens,
        RejectReason::InconsistentTokens,
        RejectReason::UnknownModel,
        RejectReason::Overflow,
        RejectReason::TooOld,
        RejectReason::InFuture,
    ];

    /// The stable snake_case name used in dead-letter headers, JSON output and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::DecodeError => "decode_error",
            RejectReason::MissingField => "missing_field",
            RejectReason::NegativeTokens => "negative_tokens",
            RejectReason::InconsistentTokens => "inconsistent_tokens",
            RejectReason::UnknownModel => "unknown_model",
            RejectReason::Overflow => "overflow",
            RejectReason::TooOld => "too_old",
            RejectReason::InFuture => "in_future",
        }
    }

    /// Parses the `as_str` form.
    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event failed validation: the reason and a human-readable detail naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// Machine-readable reason.
    pub reason: RejectReason,
    /// What exactly is wrong, naming the field.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into() }
    }
}

impl UsageEvent {
    /// Checks required fields and token arithmetic; returns the non-negative token counts.
    pub fn validate(&self) -> Result<TokenCounts, Rejection> {
        self.as_view().validate()
    }

    /// The model that prices the event first: `response_model` when set, else `request_model`.
    pub fn served_model(&self) -> &str {
        self.response_model.as_deref().filter(|m| !m.is_empty()).unwrap_or(&self.request_model)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid event for tests.
    pub(crate) fn sample() -> UsageEvent {
        serde_json::from_str(
            r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme",
                "provider":"openai","request_model":"gpt-4o","input_tokens":1000,
                "cache_read_input_tokens":200,"output_tokens":300,"reasoning_output_tokens":100}"#,
        )
        .unwrap()
    }

    #[test]
    fn json_defaults_apply() {
        let e = sample();
        assert_eq!(e.operation, "chat");
        assert_eq!(e.status, "ok");
        assert_eq!(e.cache_creation_input_tokens, 0);
        let t = e.validate().unwrap();
        assert_eq!(t.uncached_input(), 800);
        assert_eq!(t.non_reasoning_output(), 200);
    }

    #[test]
    fn inconsistent_cache_parts_are_rejected() {
        let mut e = sample();
        e.cache_creation_input_tokens = 801;
        assert_eq!(e.validate().unwrap_err().reason, RejectReason::InconsistentTokens);
        e.cache_creation_input_tokens = 800;
        assert!(e.validate().is_ok());
    }

    #[test]
    fn reasoning_above_output_is_rejected() {
        let mut e = sample();
        e.reasoning_output_tokens = 301;
        assert_eq!(e.validate().unwrap_err().reason, RejectReason::InconsistentTokens);
    }

    #[test]
    fn negative_and_missing_are_rejected() {
        let mut e = sample();
        e.output_tokens = -1;
        let r = e.validate().unwrap_err();
        assert_eq!(r.reason, RejectReason::NegativeTokens);
        assert!(r.detail.contains("output_tokens"));
        let mut e = sample();
        e.attribution.tenant_id = " ".into();
        assert_eq!(e.validate().unwrap_err().reason, RejectReason::MissingField);
    }

    #[test]
    fn blank_means_what_trim_says() {
        for s in ["", " ", "\t\n\u{0B}\u{0C}\r ", "\u{85}", "\u{A0}", "\u{2003}\u{3000}", " a", "a", "\u{0B}x", "é", "\u{2003}é", "\u{0}"] {
            assert_eq!(is_blank(s), s.trim().is_empty(), "{s:?}");
        }
        for b in 0u8..128 {
            let s = char::from(b).to_string();
            assert_eq!(is_blank(&s), s.trim().is_empty(), "{b:#x}");
        }
    }

    #[test]
    fn event_time_parts_agree_with_chrono() {
        let instants = [
            "2026-11-01T12:00:00Z",
            "2026-11-01T12:00:00.123456Z",
            "1969-12-31T23:59:59.999999Z",
            "1900-01-01T00:00:00.000001Z",
            "2106-02-07T06:28:15Z",
        ];
        for text in instants {
            let t: DateTime<Utc> = text.parse().unwrap();
            let e = EventTime::from_datetime(t);
            assert_eq!(e.secs(), t.timestamp(), "{text}");
            assert_eq!(e.millis(), t.timestamp_millis(), "{text}");
            assert_eq!(e.micros(), t.timestamp_micros(), "{text}");
            assert_eq!(e.subsec_micros(), t.timestamp_subsec_micros(), "{text}");
            assert_eq!(e.to_datetime(), t, "{text}");
            assert_eq!(EventTime::from_micros(e.micros()), Some(e));
            assert_eq!(e.to_string(), t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        }
        // Sub-microsecond instants floor, before and after the epoch.
        let t: DateTime<Utc> = "1969-12-31T23:59:59.9999995Z".parse().unwrap();
        assert_eq!(EventTime::from_datetime(t).micros(), -1);
        let t: DateTime<Utc> = "2026-11-01T12:00:00.0000009Z".parse().unwrap();
        assert_eq!(EventTime::from_datetime(t).subsec_micros(), 0);
        // The range is chrono's, at both ends and one past them.
        for edge in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let e = EventTime::from_datetime(edge);
            assert_eq!(DateTime::from_timestamp_micros(e.micros()).map(EventTime::from_datetime), Some(e));
        }
        assert_eq!(EventTime::from_micros(EventTime::MIN - 1), None);
        assert_eq!(EventTime::from_micros(EventTime::MAX + 1), None);
        assert_eq!(DateTime::from_timestamp_micros(EventTime::MIN - 1), None);
        assert_eq!(DateTime::from_timestamp_micros(EventTime::MAX + 1), None);
        assert_eq!(EventTime::from_micros(i64::MIN), None);
        assert_eq!(EventTime::from_micros(i64::MAX), None);
    }

    #[test]
    fn reasons_round_trip() {
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::parse(r.as_str()), Some(r));
        }
    }
}
