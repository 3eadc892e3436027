//! The alert for one budget state transition, and its two bodies: a Slack incoming-webhook
//! message and a generic JSON object.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use ledger_core::budget::engine::usd_text;
use ledger_core::signal::{BudgetPeriod, BudgetSignal, BudgetState};
use ledger_core::Money;
use serde_json::{json, Value};

use crate::config::WebhookFormat;

/// One budget state transition, as people are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The idempotency key: the signal key and sequence, the same on every attempt and after a
    /// restart (sent as `Idempotency-Key` and Standard Webhooks' `webhook-id`).
    pub id: String,
    /// The budget's name (its signal key when the budgets file no longer has it).
    pub budget: String,
    /// The signal key, `<period>:<scope>`.
    pub key: String,
    /// The attribution the budget limits.
    pub scope: BTreeMap<String, String>,
    /// The budget period.
    pub period: BudgetPeriod,
    /// Start (inclusive) and end (exclusive) of the current period.
    pub window: (DateTime<Utc>, DateTime<Utc>),
    /// The state before the transition.
    pub previous: BudgetState,
    /// The state now.
    pub state: BudgetState,
    /// Spend in the period.
    pub spend: Money,
    /// Spend limit.
    pub limit: Option<Money>,
    /// Tokens used in the period.
    pub spent_tokens: i64,
    /// Token limit.
    pub limit_tokens: Option<i64>,
    /// Recent spend per hour.
    pub burn_rate: Money,
    /// When the limit will be reached at the current rate (none: not forecast).
    pub exhaustion: Option<DateTime<Utc>>,
    /// What the router now does with the scope's calls.
    pub router: String,
    /// The enforcer's reason.
    pub reason: String,
    /// The signal's sequence.
    pub sequence: i64,
    /// When the enforcer emitted the signal.
    pub emitted_at: DateTime<Utc>,
}

/// Percent-encodes everything but letters, digits and `-._:=,` so the key is a valid header value.
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._:=,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The idempotency key of a signal: `<header-safe signal key>@<sequence>`.
pub fn alert_id(key: &str, sequence: i64) -> String {
    format!("{}@{sequence}", header_safe(key))
}

/// What the router does with a scope's calls in the state the signal carries.
pub fn router_action(s: &BudgetSignal) -> String {
    let until = format!("until {} or the budget is raised", s.period_end.format("%Y-%m-%d %H:%M UTC"));
    let throttle = || {
        let mut parts = Vec::new();
        if let Some(ppm) = s.throttle_fraction_ppm {
            let pct = ledger_core::budget::Percent::of(i128::from(ppm), i128::from(BudgetSignal::PPM));
            parts.push(format!("allows {}% of calls", pct.map_or("?".into(), |p| p.to_string())));
        }
        if let Some(r) = s.throttle_rate_per_sec {
            parts.push(format!("at most {r} calls/s"));
        }
        if let Some(ms) = s.retry_after_ms {
            parts.push(format!("refused callers retry after {ms} ms"));
        }
        parts.join(", ")
    };
    match s.state {
        BudgetState::Ok => "allows every call".into(),
        BudgetState::Notify => "allows every call (this is a notification only)".into(),
        BudgetState::Throttle => format!("throttles: {} {until}", throttle()),
        BudgetState::Reroute => {
            let pairs: Vec<String> = s.reroute.iter().map(|(from, to)| format!("{from} -> {to}")).collect();
            let also = if s.throttle_fraction_ppm.is_some() || s.throttle_rate_per_sec.is_some() {
                format!("; still throttles: {}", throttle())
            } else {
                String::new()
            };
            format!("reroutes calls to cheaper models ({}){also} {until}", pairs.join(", "))
        }
        BudgetState::Block => {
            let retry = s.retry_after_ms.map(|ms| format!(" (retry after {ms} ms)")).unwrap_or_default();
            format!("refuses every call{retry} {until}")
        }
    }
}

impl Alert {
    /// The alert for `signal`, a transition from `previous`, of the budget named `budget`.
    pub fn new(signal: &BudgetSignal, previous: BudgetState, budget: Option<&str>) -> Alert {
        Alert {
            id: alert_id(&signal.scope, signal.sequence),
            budget: budget.unwrap_or(&signal.scope).to_owned(),
            key: signal.scope.clone(),
            scope: signal.scope_fields.clone(),
            period: signal.period,
            window: (signal.period_start, signal.period_end),
            previous,
            state: signal.state,
            spend: signal.spend_usd,
            limit: signal.limit_usd,
            spent_tokens: signal.spent_tokens,
            limit_tokens: signal.limit_tokens,
            burn_rate: signal.burn_rate_usd_per_hour,
            exhaustion: signal.projected_exhaustion,
            router: router_action(signal),
            reason: signal.reason.clone(),
            sequence: signal.sequence,
            emitted_at: signal.emitted_at,
        }
    }

    fn scope_text(&self) -> String {
        self.scope.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }

    fn spend_text(&self) -> String {
        let mut parts = Vec::new();
        match self.limit {
            Some(l) => parts.push(format!("{} of {} USD", usd_text(self.spend), usd_text(l))),
            None => parts.push(format!("{} USD", usd_text(self.spend))),
        }
        if let Some(l) = self.limit_tokens {
            parts.push(format!("{} of {l} tokens", self.spent_tokens));
        }
        parts.join(", ")
    }

    fn exhaustion_text(&self) -> String {
        match (self.exhaustion, self.state) {
            (Some(t), _) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            (None, BudgetState::Block) => "limit reached".into(),
            (None, _) => "not forecast (no recent spend)".into(),
        }
    }

    /// One line: `Budget "acme-day" (tenant_id=acme): THROTTLE (was NOTIFY), 85.00 of 100.00 USD`.
    pub fn headline(&self) -> String {
        format!("Budget {:?} ({}): {} (was {}), {}", self.budget, self.scope_text(), self.state, self.previous, self.spend_text())
    }

    /// A Slack incoming-webhook message: `text` (the notification) and `blocks`.
    pub fn slack(&self) -> Value {
        let field = |title: &str, value: String| json!({ "type": "mrkdwn", "text": format!("*{title}:*\n{value}") });
        json!({
            "text": self.headline(),
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": format!("Budget {}: {}", self.budget, self.state) } },
                { "type": "section", "fields": [
                    field("Scope", self.scope_text()),
                    field("State", format!("{} (was {})", self.state, self.previous)),
                    field("Spend", self.spend_text()),
                    field("Period", format!("{} from {}", self.period, self.window.0.format("%Y-%m-%d %H:%M UTC"))),
                    field("Forecast exhaustion", self.exhaustion_text()),
                    field("Burn rate", format!("{} USD/h", usd_text(self.burn_rate))),
                ]},
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*The router now {}.*", self.router) } },
                { "type": "context", "elements": [
                    { "type": "mrkdwn", "text": format!("{} | signal {} | id {}", self.reason, self.key, self.id) }
                ]},
            ]
        })
    }

    /// The alert as a JSON object: every field, exact amounts as strings.
    pub fn json(&self) -> Value {
        json!({
            "type": "budget.state_changed",
            "id": self.id,
            "budget": self.budget,
            "signal_key": self.key,
            "scope": self.scope,
            "period": self.period.as_str(),
            "period_start": self.window.0.to_rfc3339_opts(SecondsFormat::Secs, true),
            "period_end": self.window.1.to_rfc3339_opts(SecondsFormat::Secs, true),
            "previous_state": self.previous.as_str(),
            "state": self.state.as_str(),
            "spend_usd": self.spend.to_string(),
            "limit_usd": self.limit.map(|m| m.to_string()),
            "spent_tokens": self.spent_tokens,
            "limit_tokens": self.limit_tokens,
            "burn_rate_usd_per_hour": self.burn_rate.to_string(),
            "forecast_exhaustion": self.exhaustion.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            "router_action": self.router,
            "reason": self.reason,
            "sequence": self.sequence,
            "emitted_at": self.emitted_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "text": self.headline(),
        })
    }

    /// The body for a webhook of `format`.
    pub fn body(&self, format: WebhookFormat) -> Vec<u8> {
        let v = match format {
            WebhookFormat::Slack => self.slack(),
            WebhookFormat::Json => self.json(),
        };
        v.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(state: BudgetState) -> BudgetSignal {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        BudgetSignal {
            scope: "day:tenant_id=acmé".into(),
            scope_fields: [("tenant_id".to_owned(), "acmé".to_owned())].into(),
            period: BudgetPeriod::Day,
            period_start: t("2026-12-07T00:00:00Z"),
            period_end: t("2026-12-08T00:00:00Z"),
            state,
            action: String::new(),
            spend_usd: "85".parse().unwrap(),
            limit_usd: Some(Money::from_usd(100)),
            remaining_usd: Some(Money::from_usd(15)),
            spent_tokens: 1100,
            limit_tokens: None,
            burn_rate_usd_per_hour: Money::from_usd(10),
            projected_exhaustion: Some(t("2026-12-07T14:30:00Z")),
            throttle_fraction_ppm: Some(250_000),
            throttle_rate_per_sec: None,
            retry_after_ms: Some(1000),
            reroute: [("gpt-4o".to_owned(), "gpt-4o-mini".to_owned())].into(),
            valid_until: t("2026-12-08T00:00:00Z"),
            reason: "budget \"acme-day\": 85.00 of 100.00 USD spent today".into(),
            sequence: 3,
            emitted_at: t("2026-12-07T12:00:00Z"),
            enforcement: Default::default(),
        }
    }

    #[test]
    fn the_message_says_budget_scope_spend_limit_state_forecast_and_router_action() {
        let a = Alert::new(&signal(BudgetState::Throttle), BudgetState::Notify, Some("acme-day"));
        assert_eq!(a.id, "day:tenant_id=acm%C3%A9@3", "a header-safe idempotency key");
        let slack = a.slack().to_string();
        for needle in [
            "acme-day",
            "tenant_id=acmé",
            "85.00 of 100.00 USD",
            "THROTTLE (was NOTIFY)",
            "2026-12-07T14:30:00Z",
            "allows 25% of calls",
            "retry after 1000 ms",
        ] {
            assert!(slack.contains(needle), "{needle} in {slack}");
        }
        let j = a.json();
        assert_eq!((j["state"].as_str(), j["previous_state"].as_str()), (Some("THROTTLE"), Some("NOTIFY")));
        assert_eq!(j["spend_usd"], "85.000000000000");
        assert_eq!(j["forecast_exhaustion"], "2026-12-07T14:30:00Z");
        let reroute = Alert::new(&signal(BudgetState::Reroute), BudgetState::Throttle, None);
        assert!(
            reroute.router.contains("gpt-4o -> gpt-4o-mini") && reroute.router.contains("still throttles"),
            "{}",
            reroute.router
        );
        assert_eq!(reroute.budget, "day:tenant_id=acmé", "an unknown budget is named by its key");
        let mut block = signal(BudgetState::Block);
        block.projected_exhaustion = None;
        let block = Alert::new(&block, BudgetState::Reroute, Some("acme-day"));
        assert!(
            block.router.starts_with("refuses every call (retry after 1000 ms) until 2026-12-08 00:00 UTC"),
            "{}",
            block.router
        );
        assert!(block.slack().to_string().contains("limit reached"));
    }
}
