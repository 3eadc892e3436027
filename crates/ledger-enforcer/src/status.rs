//! Budget status: each budget's spend, limit and state now, as `ledger budgets status` shows
//! it. Read from the topics the enforcer reads (the spend topic, replayed into a budget engine)
//! and writes (the signals topic, for the state it published).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rdkafka::Message;

use ledger_core::budget::engine::usd_text;
use ledger_core::budget::{BudgetEngine, BudgetPolicy, BudgetView, Outstanding, Percent};
use ledger_core::money::Money;
use ledger_core::signal::{BudgetSignal, Enforcement};
use ledger_kafka::reader::BoundedRead;
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_schema::SpendUpdateCodec;

use crate::config::LeaseSettings;
use crate::coverage::Prober;
use crate::error::EnforcerError;
use crate::signals::latest_signals;

/// One budget's status.
#[derive(Debug, Clone)]
pub struct BudgetStatus {
    /// The budget as its spend says now.
    pub view: BudgetView,
    /// Its USD limit.
    pub limit_usd: Option<Money>,
    /// Its token limit.
    pub limit_tokens: Option<i64>,
    /// The enforcer's last signal for it.
    pub signal: Option<BudgetSignal>,
    /// Spend at the end of the period at the period's average rate so far.
    pub forecast_usd: Option<Money>,
    /// A lease budget's outstanding leases in its period (active: held; closed: used, not yet
    /// settled against the ledger).
    pub leases: Option<Outstanding>,
}

impl BudgetStatus {
    /// A lease budget's worst case: `limit − spend − outstanding`, what is left even if every
    /// outstanding allowance is spent.
    pub fn worst_case_usd(&self) -> Option<Money> {
        let (limit, out) = (self.limit_usd?, self.leases?);
        Some(Money::from_picos(limit.picos().saturating_sub(self.view.spend_usd.picos()).saturating_sub(out.total().picos())))
    }
}

/// Where `ledger budgets status` reads the leases of lease budgets from.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSources<'a> {
    /// `[enforcer.leases]`.
    pub settings: &'a LeaseSettings,
    /// The processor's consumer group (its committed offsets settle closed leases).
    pub processor_group: &'a str,
}

/// What reading the topics found.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// One entry per budget of the policy, in its order.
    pub budgets: Vec<BudgetStatus>,
    /// Spend records that did not decode (skipped).
    pub undecodable: u64,
}

/// Reads the spend and signals topics and evaluates `policy` at `now`. Blocking; `progress`
/// hears which topic is read and how many records so far.
pub fn budget_status(
    policy: BudgetPolicy,
    now: DateTime<Utc>,
    kafka: &KafkaConfig,
    topics: &TopicNames,
    group: &str,
    leases: LeaseSources<'_>,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<StatusReport, EnforcerError> {
    let leased = policy.budgets.iter().any(|b| b.enforcement == Enforcement::Lease);
    // The processor's progress first, then the leases, then the spend: a closed lease settles
    // only when the spend read below includes everything produced before the probe.
    let (book, probe) = if leased {
        progress(&topics.lease_requests, 0);
        let probe = Prober::new(kafka, leases.processor_group, &topics.usage, &topics.spend)?.probe_once()?;
        let mut book = crate::leases::rebuild(kafka, topics, group, &policy, leases.settings, now)?.book;
        book.expire(now);
        (Some(book), Some(probe))
    } else {
        (None, None)
    };
    let mut engine = BudgetEngine::new(policy, now);
    let codec = SpendUpdateCodec::new()?;
    let mut undecodable = 0u64;
    let on_read = |n: u64| progress(&topics.spend, n);
    BoundedRead::new(kafka, &topics.spend).group(group).on_progress(&on_read).to_end(|m| {
        match m.payload().map(|p| codec.decode(p)) {
            Some(Ok(u)) => {
                engine.apply(&u, now);
            }
            Some(Err(_)) => undecodable += 1,
            None => {}
        }
    })?;
    progress(&topics.signals, 0);
    let signals: BTreeMap<String, BudgetSignal> = latest_signals(kafka, group, &topics.signals)?;
    let mut book = book;
    if let (Some(book), Some(probe)) = (book.as_mut(), probe.as_ref()) {
        if Prober::committed(probe) {
            book.settle(probe.at);
        }
    }
    let budgets = engine
        .views(now)
        .into_iter()
        .zip(&engine.policy().budgets)
        .map(|(view, b)| {
            let signal = signals.get(&view.key).cloned();
            let forecast_usd = forecast(view.spend_usd, view.window.start, view.window.end, now);
            let outstanding = book
                .as_ref()
                .filter(|_| b.enforcement == Enforcement::Lease)
                .map(|book| book.outstanding(&view.key, view.window.start));
            BudgetStatus { view, limit_usd: b.limit_usd, limit_tokens: b.limit_tokens, signal, forecast_usd, leases: outstanding }
        })
        .collect();
    Ok(StatusReport { budgets, undecodable })
}

/// Spend at the end of the period if it continues at the period's average rate so far.
pub fn forecast(spend: Money, start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> Option<Money> {
    let elapsed = (now - start).num_seconds();
    let total = (end - start).num_seconds();
    if elapsed <= 0 || total <= 0 {
        return None;
    }
    spend.picos().checked_mul(i128::from(total)).map(|v| Money::from_picos(v / i128::from(elapsed)))
}

impl BudgetStatus {
    /// The status as JSON, exact amounts as strings.
    pub fn to_json(&self) -> serde_json::Value {
        let v = &self.view;
        let s = self.signal.as_ref();
        serde_json::json!({
            "budget": v.name,
            "key": v.key,
            "period_start": v.window.start,
            "period_end": v.window.end,
            "spend_usd": v.spend_usd,
            "spent_tokens": v.spent_tokens,
            "limit_usd": self.limit_usd,
            "limit_tokens": self.limit_tokens,
            "used_percent": v.used_percent.map(|p| p.to_string()),
            "used_tokens_percent": v.used_tokens_percent.map(|p| p.to_string()),
            "state": s.map(|s| s.state.as_str()),
            "evaluated_state": v.state.as_str(),
            "signal_sequence": s.map(|s| s.sequence),
            "signal_reason": s.map(|s| s.reason.clone()),
            "burn_rate_usd_per_hour": s.map(|s| s.burn_rate_usd_per_hour),
            "projected_exhaustion": s.and_then(|s| s.projected_exhaustion),
            "forecast_usd": self.forecast_usd,
            "enforcement": if self.leases.is_some() { "lease" } else { "signal" },
            "leases_active": self.leases.map(|o| o.active),
            "leases_held_usd": self.leases.map(|o| o.held),
            "leases_unsettled": self.leases.map(|o| o.unsettled),
            "leases_used_usd": self.leases.map(|o| o.used),
            "worst_case_usd": self.worst_case_usd(),
        })
    }
}

fn pct(p: Option<Percent>) -> String {
    p.map(|p| format!("{}%", Percent::from_micros(p.micros() / 10_000 * 10_000))).unwrap_or_else(|| "-".into())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "-".into())
}

fn cents(m: Money) -> String {
    usd_text(m.round_to(2))
}

impl BudgetStatus {
    /// The columns of [`BudgetStatus::cells`].
    pub const COLUMNS: [&'static str; 12] = [
        "budget",
        "scope",
        "period",
        "spend USD",
        "limit",
        "used",
        "state",
        "burn USD/h",
        "exhausted at",
        "forecast USD",
        "leases (active / unsettled)",
        "worst case USD",
    ];
    /// Which of [`BudgetStatus::COLUMNS`] are numbers (aligned right).
    pub const NUMERIC: [bool; 12] = [false, false, false, true, true, true, false, true, false, true, true, true];

    /// The status for people: amounts rounded to cents, the state with what the spend says
    /// when the enforcer's last signal differs (it may act ahead of spend, or lag behind).
    pub fn cells(&self, now: DateTime<Utc>) -> [String; 12] {
        let v = &self.view;
        let limit = match (self.limit_usd, self.limit_tokens) {
            (Some(u), Some(t)) => format!("{} USD / {t} tok", cents(u)),
            (Some(u), None) => format!("{} USD", cents(u)),
            (None, Some(t)) => format!("{t} tok"),
            (None, None) => "-".into(),
        };
        let used = match (v.used_percent, v.used_tokens_percent) {
            (Some(u), Some(t)) => format!("{} / {} tok", pct(Some(u)), pct(Some(t))),
            (u, t) => pct(u.or(t)),
        };
        let mut state = match &self.signal {
            Some(s) if s.valid_until <= now => format!("{} (stale)", s.state),
            Some(s) => s.state.to_string(),
            None => "- (no signal)".into(),
        };
        if self.signal.as_ref().is_none_or(|s| s.state != v.state) {
            state.push_str(&format!("; spend says {}", v.state));
        }
        let burn = self.signal.as_ref().map(|s| cents(s.burn_rate_usd_per_hour)).unwrap_or_else(|| "-".into());
        let exhausted = self.signal.as_ref().and_then(|s| s.projected_exhaustion);
        [
            v.name.clone(),
            v.key.split_once(':').map_or(v.key.as_str(), |(_, s)| s).to_owned(),
            format!("{} .. {}", v.window.start.format("%Y-%m-%d %H:%M"), v.window.end.format("%Y-%m-%d %H:%M")),
            cents(v.spend_usd),
            limit,
            used,
            state,
            burn,
            when(exhausted),
            self.forecast_usd.map(cents).unwrap_or_else(|| "-".into()),
            self.leases
                .map(|o| format!("{} / {} USD, {} / {} USD", o.active, cents(o.held), o.unsettled, cents(o.used)))
                .unwrap_or_else(|| "-".into()),
            self.worst_case_usd().map(cents).unwrap_or_else(|| "-".into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forecast_extends_the_average_rate_to_the_period() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let (start, end) = (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
        let f = forecast(Money::from_usd(10), start, end, t("2026-11-11T00:00:00Z")).unwrap();
        assert_eq!(f, Money::from_usd(30), "10 days of 30");
        assert_eq!(forecast(Money::from_usd(10), start, end, start), None);
    }
}
