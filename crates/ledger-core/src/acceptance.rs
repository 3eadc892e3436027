//! The acceptance rules: what an event must satisfy to be priced, decided in one place for the
//! processor (which dead-letters a failing event) and HTTP ingest (which refuses it at the door
//! with the same reason, so the client hears about it).
//!
//! 1. The fields: required strings are set, token counts are non-negative and their parts fit
//!    in their totals ([`UsageEventRef::validate`]).
//! 2. The time window: `event_time` is at most `max_age_days` old and at most
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
}

impl Default for AcceptanceRules {
    fn default() -> Self {
        AcceptanceRules { max_age_days: 35, max_future_secs: 300 }
    }
}

impl AcceptanceRules {
    /// Every problem of the settings, for the config's all-at-once report.
    pub fn problems(&self, section: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_age_days == 0 {
            out.push(format!("{section}.max_age_days must be positive"));
        }
        out
    }

    /// Applies every rule to `event` at the clock `now_ms` (unix milliseconds): its validated
    /// token counts, or why it is rejected.
    pub fn check(&self, event: &UsageEventRef<'_>, now_ms: i64) -> Result<TokenCounts, Rejection> {
        let tokens = event.validate()?;
        self.check_time(event.event_time, now_ms)?;
        Ok(tokens)
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
        let rules = AcceptanceRules { max_age_days: 1, max_future_secs: 5 };
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
    fn a_zero_age_is_a_config_problem() {
        assert_eq!(AcceptanceRules { max_age_days: 0, max_future_secs: 0 }.problems("processor.acceptance").len(), 1);
        assert!(AcceptanceRules::default().problems("x").is_empty());
    }
}
