//! Budget signals, as the budget enforcer publishes them on `llm.budget-signals.v1`.
//!
//! [`BudgetSignal`] mirrors `schemas/avro/budget_signal.avsc` field for field. The topic is
//! compacted with the scope as key ([`BudgetSignal::key`]), and one signal is published per change
//! of a scope's state, so a router that starts late reads the current state of every scope.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Enforcement state of a budget scope, in increasing severity (`Ok < Notify < Throttle <
/// Reroute < Block`), so the most severe of several matching scopes is their `max`.
///
/// Serialized as the Avro enum symbols `OK`, `NOTIFY`, `THROTTLE`, `REROUTE`, `BLOCK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BudgetState {
    /// Within budget: allow.
    Ok,
    /// Past a notification threshold: allow, and tell someone.
    Notify,
    /// Allow only a fraction of requests (`throttle_fraction_ppm`).
    Throttle,
    /// Send requests for the models in `reroute` to cheaper models.
    Reroute,
    /// Refuse requests until the period ends or the budget is raised.
    Block,
}

impl BudgetState {
    /// Every state, in increasing severity.
    pub const ALL: [BudgetState; 5] =
        [BudgetState::Ok, BudgetState::Notify, BudgetState::Throttle, BudgetState::Reroute, BudgetState::Block];

    /// The Avro enum symbol (`OK`, `NOTIFY`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "OK",
            BudgetState::Notify => "NOTIFY",
            BudgetState::Throttle => "THROTTLE",
            BudgetState::Reroute => "REROUTE",
            BudgetState::Block => "BLOCK",
        }
    }

    /// Parses the Avro enum symbol.
    pub fn parse(s: &str) -> Option<BudgetState> {
        BudgetState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for BudgetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Budget period, a calendar period in the budget's time zone (UTC unless the budgets file
/// says otherwise): serialized as `day`, `week` or `month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// A calendar day.
    Day,
    /// An ISO week (Monday to Monday).
    Week,
    /// A calendar month.
    Month,
}

impl BudgetPeriod {
    /// Every period.
    pub const ALL: [BudgetPeriod; 3] = [BudgetPeriod::Day, BudgetPeriod::Week, BudgetPeriod::Month];

    /// The wire form: `day`, `week` or `month`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<BudgetPeriod> {
        BudgetPeriod::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a budget is enforced (docs/budgets.md): by signals that follow the ledger spend, or by
/// quota leases granted to routers (a hard cap). Serialized as `signal` or `lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Signals only: throttle, reroute and block follow the ledger spend (the default).
    #[default]
    Signal,
    /// Quota leases: routers spend allowances granted by the enforcer, so the sum of what may
    /// be spent never exceeds what remains of the limit.
    Lease,
}

impl Enforcement {
    /// The wire form: `signal` or `lease`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Enforcement::Signal => "signal",
            Enforcement::Lease => "lease",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Enforcement> {
        [Enforcement::Signal, Enforcement::Lease].into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one budget scope in one period, and what routers must do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSignal {
    /// Signal key `<period>:<canonical scope>`, e.g. `month:tenant_id=acme,team=search`; the
    /// Kafka message key (see `ledger_core::budget::scope`). Match scopes by `scope_fields`.
    pub scope: String,
    /// The attribution fields of the scope and their values.
    #[serde(default)]
    pub scope_fields: BTreeMap<String, String>,
    /// Budget period.
    pub period: BudgetPeriod,
    /// Start of the current period (inclusive).
    pub period_start: DateTime<Utc>,
    /// End of the current period (exclusive).
    pub period_end: DateTime<Utc>,
    /// Enforcement state.
    pub state: BudgetState,
    /// Human-readable detail of the action.
    pub action: String,
    /// Spend of the scope in the period so far.
    pub spend_usd: Money,
    /// Spend limit, when the budget has one.
    #[serde(default)]
    pub limit_usd: Option<Money>,
    /// `limit_usd - spend_usd` (negative when overspent), when the budget has a spend limit.
    #[serde(default)]
    pub remaining_usd: Option<Money>,
    /// Tokens (input plus output) used in the period so far.
    #[serde(default)]
    pub spent_tokens: i64,
    /// Token limit, when the budget has one.
    #[serde(default)]
    pub limit_tokens: Option<i64>,
    /// Recent spend rate in US dollars per hour.
    pub burn_rate_usd_per_hour: Money,
    /// When the spend limit will be reached at the current burn rate.
    #[serde(default)]
    pub projected_exhaustion: Option<DateTime<Utc>>,
    /// When throttling: the fraction of requests allowed, in parts per million (`0..=1_000_000`).
    #[serde(default)]
    pub throttle_fraction_ppm: Option<u32>,
    /// When throttling: the requests allowed per second (with or instead of a fraction).
    #[serde(default)]
    pub throttle_rate_per_sec: Option<u32>,
    /// When throttling or blocking: how long a rejected caller should wait, in milliseconds.
    #[serde(default)]
    pub retry_after_ms: Option<i64>,
    /// When rerouting: requested model -> model to use instead.
    #[serde(default)]
    pub reroute: BTreeMap<String, String>,
    /// The signal is stale after this instant.
    pub valid_until: DateTime<Utc>,
    /// Why the scope is in this state.
    pub reason: String,
    /// Per-scope sequence number, strictly increasing.
    pub sequence: i64,
    /// When the enforcer emitted the signal.
    pub emitted_at: DateTime<Utc>,
    /// How the budget is enforced: with `lease`, routers also need an allowance for each call.
    #[serde(default)]
    pub enforcement: Enforcement,
}

impl BudgetSignal {
    /// Parts per million: `throttle_fraction_ppm` of this value means "allow every request".
    pub const PPM: u32 = 1_000_000;

    /// The Kafka message key on the compacted topic `llm.budget-signals.v1`: the scope.
    pub fn key(&self) -> &str {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_by_severity() {
        assert!(BudgetState::Ok < BudgetState::Notify);
        assert!(BudgetState::Notify < BudgetState::Throttle);
        assert!(BudgetState::Throttle < BudgetState::Reroute);
        assert!(BudgetState::Reroute < BudgetState::Block);
        assert_eq!(BudgetState::ALL.into_iter().max(), Some(BudgetState::Block));
    }

    #[test]
    fn names_round_trip() {
        for s in BudgetState::ALL {
            assert_eq!(BudgetState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for e in [Enforcement::Signal, Enforcement::Lease] {
            assert_eq!(Enforcement::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        for p in BudgetPeriod::ALL {
            assert_eq!(BudgetPeriod::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
    }
}
