//! The usage event (one per LLM call) and its validation.
//!
//! [`UsageEvent`] mirrors `schemas/avro/usage_event.avsc` field for field. Token fields are
//! signed on the wire so that a negative count is a clear validation error rather than a
//! decoding failure; [`UsageEvent::validate`] turns them into [`TokenCounts`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// Tenant (customer or business unit) the call is billed to; the Kafka key.
    pub tenant_id: String,
    /// Team within the tenant.
    #[serde(default)]
    pub team: Option<String>,
    /// Project within the team.
    #[serde(default)]
    pub project: Option<String>,
    /// End user, when known.
    #[serde(default)]
    pub user_id: Option<String>,
    /// API key the call was made with.
    #[serde(default)]
    pub api_key_id: Option<String>,
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
        for (name, value) in [
            ("event_id", &self.event_id),
            ("tenant_id", &self.tenant_id),
            ("provider", &self.provider),
            ("request_model", &self.request_model),
        ] {
            if value.trim().is_empty() {
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
        e.tenant_id = " ".into();
        assert_eq!(e.validate().unwrap_err().reason, RejectReason::MissingField);
    }

    #[test]
    fn reasons_round_trip() {
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::parse(r.as_str()), Some(r));
        }
    }
}
