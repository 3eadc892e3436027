//! Parsing a budgets file: the TOML tables into [`BudgetPolicy`], every problem collected with
//! its budget and field.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;

use super::thresholds::parse_thresholds;
use super::{
    Budget, BudgetPolicy, PolicyError, PolicyProblem, DEFAULT_BURN_WINDOW_SECS, DEFAULT_LOOKAHEAD_SECS, MAX_BURN_WINDOW_SECS,
    MAX_LOOKAHEAD_SECS,
};
use crate::aggregate::SpendScope;
use crate::budget::scope::{shape_description, BudgetScope, SCOPE_FIELDS};
use crate::decimal::Decimal;
use crate::money::Money;
use crate::signal::{BudgetPeriod, BudgetState, Enforcement};

pub(super) struct Problems(Vec<PolicyProblem>);

impl Problems {
    pub(super) fn add(&mut self, location: &str, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyProblem { location: location.to_owned(), field: field.into(), message: message.into() });
    }

    pub(super) fn unknown_keys(&mut self, location: &str, prefix: &str, table: &toml::Table, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.add(location, format!("{prefix}{key}"), format!("unknown key (allowed: {})", allowed.join(", ")));
            }
        }
    }
}

pub(super) fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

/// An exact decimal from a string or integer; floats are refused.
pub(super) fn exact_decimal(v: &toml::Value, example: &str) -> Result<Decimal, String> {
    match v {
        toml::Value::String(s) => Decimal::parse(s).map_err(|_| format!("{s:?} is not a decimal number (e.g. {example:?})")),
        toml::Value::Integer(i) => Decimal::parse(&i.to_string()).map_err(|e| e.to_string()),
        toml::Value::Float(f) => {
            Err(format!("{f} is a TOML float, which is not exact: write it as a quoted string, e.g. {example:?}"))
        }
        other => Err(format!("expected a decimal string like {example:?}, found a {}", type_name(other))),
    }
}

pub(super) fn integer(v: &toml::Value, min: i64, max: i64) -> Result<i64, String> {
    match v {
        toml::Value::Integer(i) if (min..=max).contains(i) => Ok(*i),
        toml::Value::Integer(i) => Err(format!("{i} is out of range ({min}..={max})")),
        other => Err(format!("expected an integer, found a {}", type_name(other))),
    }
}

pub(super) fn string(v: &toml::Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found a {}", type_name(v)))
}

fn timezone(v: &toml::Value) -> Result<Tz, String> {
    let s = string(v)?;
    s.parse::<Tz>().map_err(|_| format!("{s:?} is not an IANA time zone (e.g. \"UTC\", \"Europe/Berlin\", \"America/New_York\")"))
}

const TOP_KEYS: &[&str] = &["defaults", "budget"];
const DEFAULT_KEYS: &[&str] = &["timezone", "lookahead_secs", "burn_window_secs"];
const BUDGET_KEYS: &[&str] = &[
    "name",
    "scope",
    "period",
    "timezone",
    "limit_usd",
    "limit_tokens",
    "threshold",
    "lookahead_secs",
    "burn_window_secs",
    "alert",
    "enforcement",
];
pub(super) const THRESHOLD_KEYS: &[&str] =
    &["at_percent", "action", "throttle_fraction", "throttle_rate_per_sec", "retry_after_ms", "reroute"];

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
            Some(other) => {
                problems.add("top level", "budget", format!("expected [[budget]] tables, found a {}", type_name(other)))
            }
        }
        check_unique(&budgets, &mut problems);
        if problems.0.is_empty() {
            Ok(BudgetPolicy { budgets })
        } else {
            Err(PolicyError::Invalid(problems.0))
        }
    }
}

fn parse_defaults(v: Option<&toml::Value>, problems: &mut Problems) -> Defaults {
    let mut d =
        Defaults { timezone: Tz::UTC, lookahead_secs: DEFAULT_LOOKAHEAD_SECS, burn_window_secs: DEFAULT_BURN_WINDOW_SECS };
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
    let limit_tokens =
        t.get("limit_tokens").and_then(|v| integer(v, 1, i64::MAX).map_err(|e| problems.add(loc, "limit_tokens", e)).ok());
    if !t.contains_key("limit_usd") && !t.contains_key("limit_tokens") {
        problems.add(loc, "limit_usd", "missing limit: set limit_usd (e.g. \"1000.00\") and/or limit_tokens");
    }

    let thresholds = parse_thresholds(t.get("threshold"), loc, problems);
    let alert = parse_alert(t.get("alert"), loc, problems);
    let enforcement = match t.get("enforcement").map(string) {
        None => Enforcement::Signal,
        Some(Ok(e)) => Enforcement::parse(e).unwrap_or_else(|| {
            problems.add(loc, "enforcement", format!("{e:?} is not an enforcement: \"signal\" (the default) or \"lease\""));
            Enforcement::Signal
        }),
        Some(Err(e)) => {
            problems.add(loc, "enforcement", e);
            Enforcement::Signal
        }
    };
    if enforcement == Enforcement::Lease && !t.contains_key("limit_usd") {
        problems.add(loc, "enforcement", "quota leases cap a USD limit: set limit_usd (e.g. \"1000.00\")");
    }

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
        alert,
        enforcement,
    })
}

/// `alert = ["throttle", "block"]`: the states whose transitions are sent to people.
fn parse_alert(v: Option<&toml::Value>, loc: &str, problems: &mut Problems) -> BTreeSet<BudgetState> {
    let Some(v) = v else { return BudgetState::ALL.into_iter().collect() };
    let names = "\"ok\", \"notify\", \"throttle\", \"reroute\", \"block\"";
    let Some(items) = v.as_array() else {
        problems.add(loc, "alert", format!("expected a list of states ({names}), found a {}", type_name(v)));
        return BTreeSet::new();
    };
    let mut states = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        match string(item).map(|s| (s, BudgetState::parse(&s.to_ascii_uppercase()))) {
            Ok((_, Some(state))) => {
                states.insert(state);
            }
            Ok((s, None)) => problems.add(loc, format!("alert[{}]", i + 1), format!("{s:?} is not a state: one of {names}")),
            Err(e) => problems.add(loc, format!("alert[{}]", i + 1), e),
        }
    }
    states
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
            problems.add(&loc, "scope", format!("same scope and period as budget {first:?} ({key}): merge them into one budget"));
        } else {
            keys.insert(key, b.name.as_str());
        }
    }
}
