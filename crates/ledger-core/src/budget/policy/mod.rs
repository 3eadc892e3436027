//! The budgets file: model, parsing and validation.
//!
//! The file is TOML (see `config/budgets.example.toml`). [`BudgetPolicy::parse`] reads it and
//! reports every problem at once, each with the budget's name and the field, so one edit fixes
//! them all. Numbers that must be exact (limits, percentages, fractions) are decimal strings
//! (TOML integers are accepted too); a TOML float is refused because it is not exact.

mod parse;
#[cfg(test)]
mod tests;
mod thresholds;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono_tz::Tz;

use super::scope::BudgetScope;
use crate::money::Money;
use crate::signal::{BudgetPeriod, BudgetState, Enforcement};

/// Scale of [`Percent`]: millionths of a percent.
pub const PERCENT_SCALE: u32 = 6;
const PERCENT_ONE: i128 = 1_000_000;

/// Default look-ahead of predictive enforcement, in seconds.
pub const DEFAULT_LOOKAHEAD_SECS: u32 = 2;
/// Default burn-rate window, in seconds.
pub const DEFAULT_BURN_WINDOW_SECS: u32 = 60;
const MAX_LOOKAHEAD_SECS: i64 = 86_400;
const MAX_BURN_WINDOW_SECS: i64 = 86_400;

/// An exact percentage, in millionths of a percent (`"80"` is `80_000_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(i128);

impl Percent {
    /// A percentage from millionths of a percent.
    pub const fn from_micros(micros: i128) -> Percent {
        Percent(micros)
    }

    /// Whole percent.
    pub const fn whole(p: i64) -> Percent {
        Percent(p as i128 * PERCENT_ONE)
    }

    /// Millionths of a percent.
    pub const fn micros(self) -> i128 {
        self.0
    }

    /// `used / limit` as a percentage, rounded down to millionths; `None` when `limit <= 0`.
    pub fn of(used: i128, limit: i128) -> Option<Percent> {
        if limit <= 0 {
            return None;
        }
        let scaled = used.checked_mul(100 * PERCENT_ONE).map(|v| v.div_euclid(limit));
        Some(Percent(scaled.unwrap_or_else(|| (used / limit).saturating_mul(100 * PERCENT_ONE))))
    }

    /// True when `used` reached this percentage of `limit` (`used * 100 >= limit * pct`), exactly.
    pub fn reached_by(self, used: i128, limit: i128) -> bool {
        match (used.checked_mul(100 * PERCENT_ONE), limit.checked_mul(self.0)) {
            (Some(lhs), Some(rhs)) => lhs >= rhs,
            (None, Some(_)) => used > 0,
            (Some(_), None) => false,
            // Both enormous: compare in whole units.
            (None, None) => used / (self.0 / PERCENT_ONE).max(1) >= limit / 100,
        }
    }
}

impl fmt::Display for Percent {
    /// `80`, `99.5`, `33.333333`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / PERCENT_ONE as u128;
        let frac = abs % PERCENT_ONE as u128;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// What happens when a threshold is crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThresholdAction {
    /// Allow, and tell someone.
    Notify,
    /// Allow only part of the requests.
    Throttle {
        /// Share of requests allowed, in parts per million (`1..1_000_000`).
        fraction_ppm: Option<u32>,
        /// Requests allowed per second.
        rate_per_sec: Option<u32>,
        /// How long a refused caller should wait.
        retry_after_ms: Option<u64>,
    },
    /// Send requests for expensive models to cheaper ones.
    Reroute {
        /// Requested model -> model to use instead.
        map: BTreeMap<String, String>,
    },
    /// Refuse requests.
    Block {
        /// How long a refused caller should wait.
        retry_after_ms: Option<u64>,
    },
}

impl ThresholdAction {
    /// The enforcement state this action puts the scope in.
    pub fn state(&self) -> BudgetState {
        match self {
            ThresholdAction::Notify => BudgetState::Notify,
            ThresholdAction::Throttle { .. } => BudgetState::Throttle,
            ThresholdAction::Reroute { .. } => BudgetState::Reroute,
            ThresholdAction::Block { .. } => BudgetState::Block,
        }
    }
}

/// One threshold of a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// Share of the limit at which the action starts.
    pub at_percent: Percent,
    /// The action.
    pub action: ThresholdAction,
}

/// One validated budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Unique name.
    pub name: String,
    /// The attribution it limits.
    pub scope: BudgetScope,
    /// Calendar period.
    pub period: BudgetPeriod,
    /// Time zone of the calendar.
    pub timezone: Tz,
    /// Spend limit per period.
    pub limit_usd: Option<Money>,
    /// Token limit (input plus output) per period.
    pub limit_tokens: Option<i64>,
    /// Thresholds, strictly increasing in `at_percent` and non-decreasing in severity.
    pub thresholds: Vec<Threshold>,
    /// Predictive enforcement: act when the spend expected in this many seconds crosses a threshold.
    pub lookahead_secs: u32,
    /// Burn rate = spend increase over this trailing window.
    pub burn_window_secs: u32,
    /// The states whose transitions `ledger notify` sends to people (default: every state).
    pub alert: BTreeSet<BudgetState>,
    /// Signals only, or quota leases (a hard cap on `limit_usd`; docs/budgets.md).
    pub enforcement: Enforcement,
}

impl Budget {
    /// One line for people: name, key, limits, time zone, thresholds and look-ahead, e.g.
    /// `search [month:tenant_id=acme,team=search] 100 USD in UTC: 80% notify, 100% block; ...`.
    pub fn describe(&self) -> String {
        let limits: Vec<String> = self
            .limit_usd
            .map(|l| format!("{} USD", super::engine::usd_text(l)))
            .into_iter()
            .chain(self.limit_tokens.map(|t| format!("{t} tokens")))
            .collect();
        let thresholds: Vec<String> =
            self.thresholds.iter().map(|t| format!("{}% {}", t.at_percent, t.action.state().as_str().to_lowercase())).collect();
        let leases = if self.enforcement == Enforcement::Lease { "; quota leases" } else { "" };
        format!(
            "{} [{}] {} in {}: {}; look-ahead {} s, burn window {} s{leases}",
            self.name,
            self.signal_key(),
            limits.join(" and "),
            self.timezone,
            thresholds.join(", "),
            self.lookahead_secs,
            self.burn_window_secs
        )
    }

    /// The signal key: `<period>:<canonical scope>`.
    pub fn signal_key(&self) -> String {
        super::scope::signal_key(self.period, &self.scope)
    }
}

/// A validated budgets file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetPolicy {
    /// The budgets, in file order.
    pub budgets: Vec<Budget>,
}

impl BudgetPolicy {
    /// The budget with this signal key.
    pub fn by_key(&self, key: &str) -> Option<&Budget> {
        self.budgets.iter().find(|b| b.signal_key() == key)
    }
}

/// One problem of a budgets file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// Where: `[defaults]`, `budget "name"` or `budget #N` (1-based) when it has no usable name.
    pub location: String,
    /// The field, e.g. `threshold[2].at_percent`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}, field `{}`: {}", self.location, self.field, self.message)
        }
    }
}

/// Why a budgets file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML.
    #[error("the budgets file is not valid TOML: {0}")]
    Syntax(String),
    /// Valid TOML, but the budgets are wrong.
    #[error("the budgets file has {} problem(s):\n{}", .0.len(), list(.0))]
    Invalid(Vec<PolicyProblem>),
}

fn list(problems: &[PolicyProblem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

impl PolicyError {
    /// Every problem (one for a syntax error).
    pub fn problems(&self) -> Vec<String> {
        match self {
            PolicyError::Syntax(s) => vec![s.clone()],
            PolicyError::Invalid(p) => p.iter().map(ToString::to_string).collect(),
        }
    }
}
