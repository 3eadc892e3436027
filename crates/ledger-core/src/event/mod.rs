//! The usage event (one per LLM call) and its validation.
//!
//! [`UsageEvent`] mirrors `schemas/avro/usage_event.avsc` field for field. Token fields are
//! signed on the wire so that a negative count is a clear validation error rather than a
//! decoding failure; [`UsageEvent::validate`] turns them into [`TokenCounts`].

#[cfg(test)]
pub(crate) mod tests;
mod validate;
mod view;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::money::Money;

pub use validate::{RejectReason, Rejection, TokenCounts};
pub use view::{TagsRef, UsageEventRef};

/// One token-usage event: one LLM call, as a service reports it.
///
/// Token totals are inclusive (OpenAI / OpenTelemetry GenAI convention, see docs/pricing.md):
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

impl UsageEvent {
    /// A call of `tenant_id` to `request_model` of `provider`, with every other field as the
    /// wire format defaults it: operation `chat`, status `ok`, no attribution, tags or tokens.
    pub fn new(event_id: String, event_time: DateTime<Utc>, tenant_id: String, provider: String, request_model: String) -> Self {
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
        DateTime::from_timestamp_micros(self.0).unwrap_or(if self.0 < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
    }
}

impl fmt::Display for EventTime {
    /// RFC 3339 with the fraction it needs, `Z` for UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}
