//! Validation of an event: required fields and token arithmetic, into [`TokenCounts`] or a
//! [`Rejection`] with its [`RejectReason`].

use std::fmt;

use super::{UsageEvent, UsageEventRef};

impl<'a> UsageEventRef<'a> {
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
            u64::try_from(v)
                .map_err(|_| Rejection::new(RejectReason::NegativeTokens, format!("field `{name}` is negative ({v})")))
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
pub(super) fn is_blank(s: &str) -> bool {
    // Ids and names start with a printable ASCII byte: decided without the Unicode trim.
    match s.as_bytes().first() {
        Some(&b) if b.is_ascii() && !char::from(b).is_whitespace() => false,
        _ => s.trim().is_empty(),
    }
}

/// Validated, non-negative token counts of an event (inclusive totals, see docs/pricing.md).
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
    /// A token count is beyond what the model (or any model) can take: an absolute cap, or
    /// beyond the catalog's limits for the model, or above its last price tier.
    ImplausibleTokens,
    /// An attribution string is longer than the acceptance rules allow.
    FieldTooLong,
}

impl RejectReason {
    /// Every reason, for metrics and reports.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::DecodeError,
        RejectReason::MissingField,
        RejectReason::NegativeTokens,
        RejectReason::InconsistentTokens,
        RejectReason::UnknownModel,
        RejectReason::Overflow,
        RejectReason::TooOld,
        RejectReason::InFuture,
        RejectReason::ImplausibleTokens,
        RejectReason::FieldTooLong,
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
            RejectReason::ImplausibleTokens => "implausible_tokens",
            RejectReason::FieldTooLong => "field_too_long",
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
