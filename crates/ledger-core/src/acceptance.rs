//! The acceptance rules: what an event must satisfy to be priced, decided in one place for the
//! processor (which dead-letters a failing event) and HTTP ingest (which refuses it at the door
//! with the same reason, so the client hears about it).
//!
//! 1. The fields: required strings are set, token counts are non-negative and their parts fit
//!    in their totals ([`UsageEventRef::validate`]).
//! 2. Plausibility: no token count above `max_tokens_per_event` (`implausible_tokens`; the
//!    catalog adds each model's own limits when the event is priced), and no attribution string
//!    longer than `max_attribution_chars` characters (`field_too_long`).
//! 3. The time window: `event_time` is at most `max_age_days` old and at most
//!    `max_future_secs` ahead of the clock (`too_old`, `in_future`).

use serde::{Deserialize, Serialize};

use crate::event::{EventTime, RejectReason, Rejection, TokenCounts, UsageEventRef};

/// The acceptance window of event times (config section `processor.acceptance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcceptanceRules {
    /// Events older than this many days are rejected (`too_old`).
    pub max_age_days: u32,
    /// Events more than this many seconds in the future are rejected (`in_future`).
    pub max_future_secs: u32,
    /// No token count of an event may exceed this (`implausible_tokens`). The default, 10
    /// million, is five times the largest context window on sale in 2026 (2 million tokens):
    /// far above any real call, far below the 10^18 that one bad client sent.
    pub max_tokens_per_event: u64,
    /// No attribution string (tenant, team, project, user, API key, feature, environment) may
    /// be longer than this many characters (`field_too_long`).
    pub max_attribution_chars: usize,
}

impl Default for AcceptanceRules {
    fn default() -> Self {
        AcceptanceRules { max_age_days: 35, max_future_secs: 300, max_tokens_per_event: 10_000_000, max_attribution_chars: 256 }
    }
}

impl AcceptanceRules {
    /// Every problem of the settings, for the config's all-at-once report.
    pub fn problems(&self, section: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_age_days == 0 {
            out.push(format!("{section}.max_age_days must be positive"));
        }
        if self.max_tokens_per_event == 0 {
            out.push(format!("{section}.max_tokens_per_event must be positive"));
        }
        if self.max_attribution_chars == 0 {
            out.push(format!("{section}.max_attribution_chars must be positive"));
        }
        out
    }

    /// Applies every rule to `event` at the clock `now_ms` (unix milliseconds): its validated
    /// token counts, or why it is rejected.
    pub fn check(&self, event: &UsageEventRef<'_>, now_ms: i64) -> Result<TokenCounts, Rejection> {
        let tokens = event.validate()?;
        self.check_plausible(event, &tokens)?;
        self.check_time(event.event_time, now_ms)?;
        Ok(tokens)
    }

    /// The token cap and the attribution lengths.
    pub fn check_plausible(&self, event: &UsageEventRef<'_>, tokens: &TokenCounts) -> Result<(), Rejection> {
        let cap = self.max_tokens_per_event;
        for (name, n) in [("input_tokens", tokens.input), ("output_tokens", tokens.output)] {
            if n > cap {
                return Err(Rejection::new(
                    RejectReason::ImplausibleTokens,
                    format!("{name} is {n}, above the {cap} tokens any event may carry (acceptance.max_tokens_per_event)"),
                ));
            }
        }
        let a = &event.attribution;
        let fields = [
            ("tenant_id", Some(a.tenant_id)),
            ("team", a.team),
            ("project", a.project),
            ("user_id", a.user_id),
            ("api_key_id", a.api_key_id),
            ("feature", event.feature),
            ("environment", event.environment),
        ];
        let max = self.max_attribution_chars;
        for (name, value) in fields {
            // The byte length bounds the character count: count only when it could be over.
            if let Some(v) = value.filter(|v| v.len() > max && v.chars().count() > max) {
                return Err(Rejection::new(
                    RejectReason::FieldTooLong,
                    format!("{name} is {} characters long, above {max} (acceptance.max_attribution_chars)", v.chars().count()),
                ));
            }
        }
        Ok(())
    }

    /// The time window alone.
    pub fn check_time(&self, event_time: EventTime, now_ms: i64) -> Result<(), Rejection> {
        let event_ms = event_time.millis();
        let max_age_ms = i64::from(self.max_age_days) * 86_400_000;
        let max_future_ms = i64::from(self.max_future_secs) * 1000;
        if event_ms < now_ms.saturating_sub(max_age_ms) {
            return Err(Rejection::new(
                RejectReason::TooOld,
                format!("event_time {event_time} is older than {} days", self.max_age_days),
            ));
        }
        if event_ms > now_ms.saturating_add(max_future_ms) {
            return Err(Rejection::new(
                RejectReason::InFuture,
                format!("event_time {event_time} is more than {} s in the future", self.max_future_secs),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> EventTime {
        EventTime::from_micros(ms * 1000).unwrap()
    }

    #[test]
    fn the_window_is_inclusive_at_both_ends() {
        let rules = AcceptanceRules { max_age_days: 1, max_future_secs: 5, ..AcceptanceRules::default() };
        let now = 10 * 86_400_000;
        assert!(rules.check_time(at(now), now).is_ok());
        assert!(rules.check_time(at(now - 86_400_000), now).is_ok());
        assert_eq!(rules.check_time(at(now - 86_400_001), now).unwrap_err().reason, RejectReason::TooOld);
        assert!(rules.check_time(at(now + 5000), now).is_ok());
        let late = rules.check_time(at(now + 5001), now).unwrap_err();
        assert_eq!(late.reason, RejectReason::InFuture);
        assert!(late.detail.contains("more than 5 s in the future"), "{}", late.detail);
    }

    #[test]
    fn fields_are_checked_before_the_clock() {
        let mut event = crate::event::tests::sample();
        event.output_tokens = -1;
        let rules = AcceptanceRules::default();
        let far_future = event.event_time.timestamp_millis() - 10 * 86_400_000;
        assert_eq!(rules.check(&event.as_view(), far_future).unwrap_err().reason, RejectReason::NegativeTokens);
        event.output_tokens = 300;
        assert_eq!(rules.check(&event.as_view(), far_future).unwrap_err().reason, RejectReason::InFuture);
        let now = event.event_time.timestamp_millis();
        assert_eq!(rules.check(&event.as_view(), now).unwrap().output, 300);
    }

    #[test]
    fn zeros_are_config_problems() {
        let zero = AcceptanceRules { max_age_days: 0, max_future_secs: 0, max_tokens_per_event: 0, max_attribution_chars: 0 };
        assert_eq!(zero.problems("processor.acceptance").len(), 3);
        assert!(AcceptanceRules::default().problems("x").is_empty());
    }

    #[test]
    fn implausible_counts_and_long_strings_are_refused() {
        let rules = AcceptanceRules::default();
        let mut event = crate::event::tests::sample();
        let now = event.event_time.timestamp_millis();
        event.input_tokens = 1_000_000_000_000_000_000;
        let r = rules.check(&event.as_view(), now).unwrap_err();
        assert_eq!(r.reason, RejectReason::ImplausibleTokens);
        assert!(r.detail.contains("input_tokens is 1000000000000000000"), "{}", r.detail);
        event.input_tokens = 10_000_000;
        assert!(rules.check(&event.as_view(), now).is_ok(), "the cap itself is allowed");
        event.attribution.team = Some("é".repeat(257));
        let r = rules.check(&event.as_view(), now).unwrap_err();
        assert_eq!(r.reason, RejectReason::FieldTooLong);
        assert!(r.detail.starts_with("team is 257 characters long"), "{}", r.detail);
        event.attribution.team = Some("é".repeat(256));
        assert!(rules.check(&event.as_view(), now).is_ok(), "256 two-byte characters are 256 characters");
    }
}
