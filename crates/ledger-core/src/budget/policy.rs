//! The budgets file: model, parsing and validation.
//!
//! The file is TOML (see `config/budgets.example.toml`). [`BudgetPolicy::parse`] reads it and
//! reports every problem at once, each with the budget's name and the field, so one edit fixes
//! them all. Numbers that must be exact (limits, percentages, fractions) are decimal strings
//! (TOML integers are accepted too); a TOML float is refused because it is not exact.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono_tz::Tz;

use super::scope::{shape_description, BudgetScope, SCOPE_FIELDS};
use crate::aggregate::SpendScope;
use crate::decimal::Decimal;
use crate::money::Money;
use crate::signal::{BudgetPeriod, BudgetState};

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
}

impl Budget {
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

struct Problems(Vec<PolicyProblem>);

impl Problems {
    fn add(&mut self, location: &str, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyProblem { location: location.to_owned(), field: field.into(), message: message.into() });
    }

    fn unknown_keys(&mut self, location: &str, prefix: &str, table: &toml::Table, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.add(location, format!("{prefix}{key}"), format!("unknown key (allowed: {})", allowed.join(", ")));
            }
        }
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

/// An exact decimal from a string or integer; floats are refused.
fn exact_decimal(v: &toml::Value, example: &str) -> Result<Decimal, String> {
    match v {
        toml::Value::String(s) => Decimal::parse(s).map_err(|_| format!("{s:?} is not a decimal number (e.g. {example:?})")),
        toml::Value::Integer(i) => Decimal::parse(&i.to_string()).map_err(|e| e.to_string()),
        toml::Value::Float(f) => Err(format!("{f} is a TOML float, which is not exact: write it as a quoted string, e.g. {example:?}")),
        other => Err(format!("expected a decimal string like {example:?}, found a {}", type_name(other))),
    }
}

fn integer(v: &toml::Value, min: i64, max: i64) -> Result<i64, String> {
    match v {
        toml::Value::Integer(i) if (min..=max).contains(i) => Ok(*i),
        toml::Value::Integer(i) => Err(format!("{i} is out of range ({min}..={max})")),
        other => Err(format!("expected an integer, found a {}", type_name(other))),
    }
}

fn string(v: &toml::Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found a {}", type_name(v)))
}

fn timezone(v: &toml::Value) -> Result<Tz, String> {
    let s = string(v)?;
    s.parse::<Tz>().map_err(|_| format!("{s:?} is not an IANA time zone (e.g. \"UTC\", \"Europe/Berlin\", \"America/New_York\")"))
}

const TOP_KEYS: &[&str] = &["defaults", "budget"];
const DEFAULT_KEYS: &[&str] = &["timezone", "lookahead_secs", "burn_window_secs"];
const BUDGET_KEYS: &[&str] =
    &["name", "scope", "period", "timezone", "limit_usd", "limit_tokens", "threshold", "lookahead_secs", "burn_window_secs"];
const THRESHOLD_KEYS: &[&str] = &["at_percent", "action", "throttle_fraction", "throttle_rate_per_sec", "retry_after_ms", "reroute"];

struct Defaults {
    timezone: Tz,
    lookahead_secs: u32,
    burn_window_secs: u32,
}

impl BudgetPolicy {
    /// Parses and validates the text of a budgets file; on failure, lists every problem.
    pub fn parse(text: &str) -> Result<BudgetPolicy, PolicyError> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| PolicyError::Syntax(e.to_string()))?;
        let mut problems = Problems(Vec::new());
        problems.unknown_keys("top level", "", &root, TOP_KEYS);
        let defaults = parse_defaults(root.get("defaults"), &mut problems);
        let mut budgets = Vec::new();
        match root.get("budget") {
            None => {}
            Some(toml::Value::Array(items)) => {
                check_unique_names(items, &mut problems);
                for (i, item) in items.iter().enumerate() {
                    if let Some(b) = parse_budget(i, item, &defaults, &mut problems) {
                        budgets.push(b);
                    }
                }
            }
            Some(other) => problems.add(
                "top level",
                "budget",
                format!("expected [[budget]] tables, found a {}", type_name(other)),
            ),
        }
        check_unique(&budgets, &mut problems);
        if problems.0.is_empty() {
            Ok(BudgetPolicy { budgets })
        } else {
            Err(PolicyError::Invalid(problems.0))
        }
    }

    /// The budget with this signal key.
    pub fn by_key(&self, key: &str) -> Option<&Budget> {
        self.budgets.iter().find(|b| b.signal_key() == key)
    }
}

fn parse_defaults(v: Option<&toml::Value>, problems: &mut Problems) -> Defaults {
    let mut d = Defaults { timezone: Tz::UTC, lookahead_secs: DEFAULT_LOOKAHEAD_SECS, burn_window_secs: DEFAULT_BURN_WINDOW_SECS };
    let loc = "[defaults]";
    let Some(v) = v else { return d };
    let Some(t) = v.as_table() else {
        problems.add(loc, "", format!("expected a table, found a {}", type_name(v)));
        return d;
    };
    problems.unknown_keys(loc, "", t, DEFAULT_KEYS);
    if let Some(v) = t.get("timezone") {
        match timezone(v) {
            Ok(tz) => d.timezone = tz,
            Err(e) => problems.add(loc, "timezone", e),
        }
    }
    if let Some(v) = t.get("lookahead_secs") {
        match integer(v, 0, MAX_LOOKAHEAD_SECS) {
            Ok(s) => d.lookahead_secs = s as u32,
            Err(e) => problems.add(loc, "lookahead_secs", e),
        }
    }
    if let Some(v) = t.get("burn_window_secs") {
        match integer(v, 1, MAX_BURN_WINDOW_SECS) {
            Ok(s) => d.burn_window_secs = s as u32,
            Err(e) => problems.add(loc, "burn_window_secs", e),
        }
    }
    d
}

fn parse_budget(index: usize, v: &toml::Value, defaults: &Defaults, problems: &mut Problems) -> Option<Budget> {
    let before = problems.0.len();
    let Some(t) = v.as_table() else {
        problems.add(&format!("budget #{}", index + 1), "", format!("expected a table, found a {}", type_name(v)));
        return None;
    };
    let name = match t.get("name").map(string) {
        Some(Ok(n)) if !n.trim().is_empty() => Some(n.to_owned()),
        _ => None,
    };
    let loc = match &name {
        Some(n) => format!("budget {n:?}"),
        None => format!("budget #{}", index + 1),
    };
    let loc = loc.as_str();
    match t.get("name") {
        None => problems.add(loc, "name", "missing: every budget needs a unique name"),
        Some(v) if name.is_none() => match string(v) {
            Ok(_) => problems.add(loc, "name", "must not be empty"),
            Err(e) => problems.add(loc, "name", e),
        },
        Some(_) => {}
    }
    problems.unknown_keys(loc, "", t, BUDGET_KEYS);

    let scope = parse_scope(t.get("scope"), loc, problems);

    let period = match t.get("period").map(string) {
        None => {
            problems.add(loc, "period", "missing: one of \"day\", \"week\", \"month\"");
            None
        }
        Some(Ok(p)) => match BudgetPeriod::parse(p) {
            Some(p) => Some(p),
            None => {
                problems.add(loc, "period", format!("{p:?} is not a period: one of \"day\", \"week\", \"month\""));
                None
            }
        },
        Some(Err(e)) => {
            problems.add(loc, "period", e);
            None
        }
    };

    let tz = match t.get("timezone") {
        None => Some(defaults.timezone),
        Some(v) => timezone(v).map_err(|e| problems.add(loc, "timezone", e)).ok(),
    };
    let lookahead_secs = match t.get("lookahead_secs") {
        None => defaults.lookahead_secs,
        Some(v) => integer(v, 0, MAX_LOOKAHEAD_SECS).map(|s| s as u32).unwrap_or_else(|e| {
            problems.add(loc, "lookahead_secs", e);
            0
        }),
    };
    let burn_window_secs = match t.get("burn_window_secs") {
        None => defaults.burn_window_secs,
        Some(v) => integer(v, 1, MAX_BURN_WINDOW_SECS).map(|s| s as u32).unwrap_or_else(|e| {
            problems.add(loc, "burn_window_secs", e);
            1
        }),
    };

    let limit_usd = t.get("limit_usd").and_then(|v| {
        let parsed = exact_decimal(v, "1000.00").and_then(|d| match d.to_scale_exact(crate::money::SCALE) {
            Some(Ok(p)) if p > 0 => Ok(Money::from_picos(p)),
            Some(Ok(_)) => Err("must be greater than zero".to_owned()),
            Some(Err(())) => Err("is out of range".to_owned()),
            None => Err("has more than 12 fractional digits".to_owned()),
        });
        parsed.map_err(|e| problems.add(loc, "limit_usd", e)).ok()
    });
    let limit_tokens = t
        .get("limit_tokens")
        .and_then(|v| integer(v, 1, i64::MAX).map_err(|e| problems.add(loc, "limit_tokens", e)).ok());
    if !t.contains_key("limit_usd") && !t.contains_key("limit_tokens") {
        problems.add(loc, "limit_usd", "missing limit: set limit_usd (e.g. \"1000.00\") and/or limit_tokens");
    }

    let thresholds = parse_thresholds(t.get("threshold"), loc, problems);

    if problems.0.len() != before {
        return None;
    }
    Some(Budget {
        name: name?,
        scope: scope?,
        period: period?,
        timezone: tz?,
        limit_usd,
        limit_tokens,
        thresholds,
        lookahead_secs,
        burn_window_secs,
    })
}

fn allowed_shapes() -> String {
    SpendScope::ALL.iter().map(|s| shape_description(*s)).collect::<Vec<_>>().join("; ")
}

fn parse_scope(v: Option<&toml::Value>, loc: &str, problems: &mut Problems) -> Option<BudgetScope> {
    let Some(v) = v else {
        problems.add(loc, "scope", "missing: e.g. scope = { tenant_id = \"acme\", team = \"search\" }");
        return None;
    };
    let Some(t) = v.as_table() else {
        problems.add(loc, "scope", format!("expected an inline table like {{ tenant_id = \"acme\" }}, found a {}", type_name(v)));
        return None;
    };
    let mut ok = true;
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in t {
        if !SCOPE_FIELDS.contains(&k.as_str()) {
            problems.add(loc, format!("scope.{k}"), format!("unknown scope field (allowed: {})", SCOPE_FIELDS.join(", ")));
            ok = false;
            continue;
        }
        match string(v) {
            Ok(s) if !s.is_empty() => {
                values.insert(SCOPE_FIELDS.iter().find(|f| **f == k).copied().unwrap_or("tenant_id"), s.to_owned());
            }
            Ok(_) => {
                problems.add(loc, format!("scope.{k}"), "must not be empty");
                ok = false;
            }
            Err(e) => {
                problems.add(loc, format!("scope.{k}"), e);
                ok = false;
            }
        }
    }
    let Some(scope) = BudgetScope::from_fields(values.iter().map(|(k, v)| (*k, v.as_str()))) else {
        if !t.contains_key("tenant_id") {
            problems.add(loc, "scope.tenant_id", "missing: every scope names its tenant");
        }
        return None;
    };
    if !ok {
        return None;
    }
    if SpendScope::of_key(&scope).is_none() {
        let given: Vec<&str> = scope.fields().map(|(k, _)| k).collect();
        problems.add(
            loc,
            "scope",
            format!("{} is not a scope the spend aggregates are kept for; allowed: {}", given.join(" + "), allowed_shapes()),
        );
        return None;
    }
    Some(scope)
}

fn parse_thresholds(v: Option<&toml::Value>, loc: &str, problems: &mut Problems) -> Vec<Threshold> {
    let Some(v) = v else {
        problems.add(loc, "threshold", "missing: add at least one [[budget.threshold]] (e.g. at_percent = \"100\", action = \"block\")");
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        problems.add(loc, "threshold", format!("expected [[budget.threshold]] tables, found a {}", type_name(v)));
        return Vec::new();
    };
    if items.is_empty() {
        problems.add(loc, "threshold", "empty: add at least one [[budget.threshold]]");
    }
    let mut out: Vec<Threshold> = Vec::new();
    let mut previous: Option<(usize, Percent, BudgetState)> = None;
    for (i, item) in items.iter().enumerate() {
        let f = |name: &str| format!("threshold[{}].{name}", i + 1);
        let Some(t) = item.as_table() else {
            problems.add(loc, format!("threshold[{}]", i + 1), format!("expected a table, found a {}", type_name(item)));
            continue;
        };
        problems.unknown_keys(loc, &format!("threshold[{}].", i + 1), t, THRESHOLD_KEYS);
        let at = match t.get("at_percent") {
            None => {
                problems.add(loc, f("at_percent"), "missing: e.g. at_percent = \"80\"");
                None
            }
            Some(v) => match exact_decimal(v, "80").and_then(|d| match d.to_scale_exact(PERCENT_SCALE) {
                Some(Ok(p)) if p > 0 && p <= 1000 * PERCENT_ONE => Ok(Percent(p)),
                Some(Ok(_)) | Some(Err(())) => Err("must be greater than 0 and at most 1000".to_owned()),
                None => Err("has more than 6 fractional digits".to_owned()),
            }) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.add(loc, f("at_percent"), e);
                    None
                }
            },
        };
        let action = parse_action(t, loc, i, problems);
        if let (Some(at), Some(action)) = (at, action) {
            let state = action.state();
            if let Some((pi, pat, pstate)) = previous {
                if at <= pat {
                    problems.add(
                        loc,
                        f("at_percent"),
                        format!("{at}% is not above threshold[{}] ({pat}%): thresholds must strictly increase", pi + 1),
                    );
                }
                if state < pstate {
                    problems.add(
                        loc,
                        f("action"),
                        format!(
                            "{} after {} at a lower threshold: actions must not relax as spend grows (notify < throttle < reroute < block)",
                            state.as_str().to_lowercase(),
                            pstate.as_str().to_lowercase()
                        ),
                    );
                }
            }
            previous = Some((i, at, state));
            out.push(Threshold { at_percent: at, action });
        }
    }
    out
}

fn retry_after(t: &toml::Table, field: &str, loc: &str, problems: &mut Problems) -> Option<u64> {
    t.get("retry_after_ms")
        .and_then(|v| integer(v, 0, 86_400_000).map(|ms| ms as u64).map_err(|e| problems.add(loc, field, e)).ok())
}

fn parse_action(t: &toml::Table, loc: &str, i: usize, problems: &mut Problems) -> Option<ThresholdAction> {
    let f = |name: &str| format!("threshold[{}].{name}", i + 1);
    let action = match t.get("action").map(string) {
        None => {
            problems.add(loc, f("action"), "missing: one of \"notify\", \"throttle\", \"reroute\", \"block\"");
            return None;
        }
        Some(Err(e)) => {
            problems.add(loc, f("action"), e);
            return None;
        }
        Some(Ok(a)) => a,
    };
    let not_for = |problems: &mut Problems, keys: &[&str]| {
        for k in keys {
            if t.contains_key(*k) {
                problems.add(loc, f(k), format!("does not apply to action {action:?}"));
            }
        }
    };
    match action {
        "notify" => {
            not_for(problems, &["throttle_fraction", "throttle_rate_per_sec", "retry_after_ms", "reroute"]);
            Some(ThresholdAction::Notify)
        }
        "block" => {
            not_for(problems, &["throttle_fraction", "throttle_rate_per_sec", "reroute"]);
            Some(ThresholdAction::Block { retry_after_ms: retry_after(t, &f("retry_after_ms"), loc, problems) })
        }
        "throttle" => {
            not_for(problems, &["reroute"]);
            let fraction_ppm = t.get("throttle_fraction").and_then(|v| {
                exact_decimal(v, "0.25")
                    .and_then(|d| match d.to_scale_exact(6) {
                        Some(Ok(p)) if p > 0 && p < 1_000_000 => Ok(p as u32),
                        Some(Ok(_)) | Some(Err(())) => Err("must be above 0 and below 1 (the share of requests allowed; use action \"block\" for 0)".to_owned()),
                        None => Err("has more than 6 fractional digits (parts per million)".to_owned()),
                    })
                    .map_err(|e| problems.add(loc, f("throttle_fraction"), e))
                    .ok()
            });
            let rate_per_sec = t.get("throttle_rate_per_sec").and_then(|v| {
                integer(v, 1, i64::from(u32::MAX)).map(|r| r as u32).map_err(|e| problems.add(loc, f("throttle_rate_per_sec"), e)).ok()
            });
            if !t.contains_key("throttle_fraction") && !t.contains_key("throttle_rate_per_sec") {
                problems.add(loc, f("throttle_fraction"), "a throttle needs throttle_fraction (e.g. \"0.25\") and/or throttle_rate_per_sec");
            }
            Some(ThresholdAction::Throttle { fraction_ppm, rate_per_sec, retry_after_ms: retry_after(t, &f("retry_after_ms"), loc, problems) })
        }
        "reroute" => {
            not_for(problems, &["throttle_fraction", "throttle_rate_per_sec", "retry_after_ms"]);
            let mut map = BTreeMap::new();
            match t.get("reroute") {
                None => problems.add(loc, f("reroute"), "missing: e.g. reroute = { \"gpt-4o\" = \"gpt-4o-mini\" }"),
                Some(toml::Value::Table(m)) => {
                    if m.is_empty() {
                        problems.add(loc, f("reroute"), "empty: map at least one expensive model to a cheaper one");
                    }
                    for (from, to) in m {
                        match string(to) {
                            Ok("") => problems.add(loc, format!("{}.{from:?}", f("reroute")), "target model must not be empty"),
                            Ok(to) if to == from => problems.add(
                                loc,
                                format!("{}.{from:?}", f("reroute")),
                                "reroutes a model to itself: map it to a cheaper model",
                            ),
                            Ok(to) => {
                                map.insert(from.clone(), to.to_owned());
                            }
                            Err(e) => problems.add(loc, format!("{}.{from:?}", f("reroute")), e),
                        }
                    }
                    for (from, to) in &map {
                        if map.contains_key(to) {
                            problems.add(
                                loc,
                                format!("{}.{from:?}", f("reroute")),
                                format!("target {to:?} is itself rerouted; routers do not follow chains: map {from:?} to the final model"),
                            );
                        }
                    }
                }
                Some(other) => problems.add(loc, f("reroute"), format!("expected a table of model = model, found a {}", type_name(other))),
            }
            Some(ThresholdAction::Reroute { map })
        }
        other => {
            problems.add(loc, f("action"), format!("{other:?} is not an action: one of \"notify\", \"throttle\", \"reroute\", \"block\""));
            None
        }
    }
}

/// Names are checked on the raw tables, so a duplicate is reported even when one of the
/// budgets has other problems.
fn check_unique_names(items: &[toml::Value], problems: &mut Problems) {
    let mut names = BTreeSet::new();
    for item in items {
        if let Some(name) = item.get("name").and_then(toml::Value::as_str).filter(|n| !n.trim().is_empty()) {
            if !names.insert(name) {
                problems.add(&format!("budget {name:?}"), "name", "duplicate name: budget names must be unique");
            }
        }
    }
}

fn check_unique(budgets: &[Budget], problems: &mut Problems) {
    let mut keys: BTreeMap<String, &str> = BTreeMap::new();
    for b in budgets {
        let loc = format!("budget {:?}", b.name);
        let key = b.signal_key();
        if let Some(first) = keys.get(&key) {
            problems.add(
                &loc,
                "scope",
                format!("same scope and period as budget {first:?} ({key}): merge them into one budget"),
            );
        } else {
            keys.insert(key, b.name.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
[defaults]
timezone = "UTC"
lookahead_secs = 2
burn_window_secs = 60

[[budget]]
name = "acme-search-monthly"
scope = { tenant_id = "acme", team = "search" }
period = "month"
limit_usd = "1000.00"
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "80"
action = "throttle"
throttle_fraction = "0.25"
retry_after_ms = 1000
[[budget.threshold]]
at_percent = "90"
action = "reroute"
reroute = { "claude-opus-4-1" = "claude-haiku-4-5", "gpt-4o" = "gpt-4o-mini" }
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;

    #[test]
    fn parses_the_example() {
        let p = BudgetPolicy::parse(EXAMPLE).unwrap();
        assert_eq!(p.budgets.len(), 1);
        let b = &p.budgets[0];
        assert_eq!(b.signal_key(), "month:tenant_id=acme,team=search");
        assert_eq!(b.limit_usd, Some(Money::from_usd(1000)));
        assert_eq!(b.thresholds.len(), 4);
        assert_eq!(b.thresholds[1].action, ThresholdAction::Throttle { fraction_ppm: Some(250_000), rate_per_sec: None, retry_after_ms: Some(1000) });
        assert_eq!(b.thresholds[3].at_percent, Percent::whole(100));
        assert_eq!((b.lookahead_secs, b.burn_window_secs), (2, 60));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = r#"
colour = "blue"
[defaults]
timezone = "Mars/Olympus"
[[budget]]
name = "a"
scope = { tenant_id = "acme", user_id = "u", model = "m" }
period = "fortnight"
limit_usd = 10.5
[[budget.threshold]]
at_percent = "80"
action = "throttle"
throttle_fraction = "1.5"
[[budget.threshold]]
at_percent = "80"
action = "reroute"
reroute = { "gpt-4o" = "gpt-4o" }
[[budget]]
name = "b"
scope = { tenant_id = "acme", colour = "x" }
period = "day"
[[budget.threshold]]
at_percent = "90"
action = "block"
[[budget.threshold]]
at_percent = "95"
action = "notify"
[[budget]]
name = "c"
scope = { tenant_id = "t" }
period = "day"
limit_tokens = 5
[[budget.threshold]]
at_percent = "100"
action = "block"
[[budget]]
name = "c"
scope = { tenant_id = "t" }
period = "day"
limit_tokens = 5
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;
        let err = BudgetPolicy::parse(text).unwrap_err();
        let msg = err.to_string();
        for needle in [
            "top level, field `colour`: unknown key",
            "[defaults], field `timezone`: \"Mars/Olympus\" is not an IANA time zone",
            "budget \"a\", field `scope`: tenant_id + user_id + model is not a scope",
            "allowed: tenant_id; tenant_id + team;",
            "budget \"a\", field `period`: \"fortnight\" is not a period",
            "budget \"a\", field `limit_usd`: 10.5 is a TOML float",
            "budget \"a\", field `threshold[1].throttle_fraction`: must be above 0 and below 1",
            "budget \"a\", field `threshold[2].at_percent`: 80% is not above threshold[1] (80%)",
            "budget \"a\", field `threshold[2].reroute.\"gpt-4o\"`: reroutes a model to itself",
            "budget \"b\", field `scope.colour`: unknown scope field",
            "budget \"b\", field `limit_usd`: missing limit",
            "budget \"b\", field `threshold[2].action`: notify after block",
            "budget \"c\", field `name`: duplicate name",
            "budget \"c\", field `scope`: same scope and period as budget \"c\" (day:tenant_id=t)",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = BudgetPolicy::parse("[[budget]\nname = 1").unwrap_err();
        assert!(matches!(err, PolicyError::Syntax(ref s) if s.contains("line 1")), "{err}");
    }

    #[test]
    fn percent_math_is_exact() {
        let p = Percent::whole(80);
        assert!(p.reached_by(80, 100));
        assert!(!p.reached_by(79, 100));
        assert!(!Percent::from_micros(33_333_334).reached_by(1, 3));
        assert!(Percent::from_micros(33_333_333).reached_by(1, 3));
        assert_eq!(Percent::of(1, 3), Some(Percent::from_micros(33_333_333)));
        assert_eq!(Percent::from_micros(99_500_000).to_string(), "99.5");
        assert!(Percent::whole(100).reached_by(i128::MAX / 2, 1));
    }
}
