//! Parsing a budget's `[[budget.threshold]]` tables and their actions.

use std::collections::BTreeMap;

use super::parse::{exact_decimal, integer, string, type_name, Problems, THRESHOLD_KEYS};
use super::{Percent, Threshold, ThresholdAction, PERCENT_ONE, PERCENT_SCALE};
use crate::signal::BudgetState;

pub(super) fn parse_thresholds(v: Option<&toml::Value>, loc: &str, problems: &mut Problems) -> Vec<Threshold> {
    let Some(v) = v else {
        problems.add(
            loc,
            "threshold",
            "missing: add at least one [[budget.threshold]] (e.g. at_percent = \"100\", action = \"block\")",
        );
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
                        Some(Ok(_)) | Some(Err(())) => {
                            Err("must be above 0 and below 1 (the share of requests allowed; use action \"block\" for 0)"
                                .to_owned())
                        }
                        None => Err("has more than 6 fractional digits (parts per million)".to_owned()),
                    })
                    .map_err(|e| problems.add(loc, f("throttle_fraction"), e))
                    .ok()
            });
            let rate_per_sec = t.get("throttle_rate_per_sec").and_then(|v| {
                integer(v, 1, i64::from(u32::MAX))
                    .map(|r| r as u32)
                    .map_err(|e| problems.add(loc, f("throttle_rate_per_sec"), e))
                    .ok()
            });
            if !t.contains_key("throttle_fraction") && !t.contains_key("throttle_rate_per_sec") {
                problems.add(
                    loc,
                    f("throttle_fraction"),
                    "a throttle needs throttle_fraction (e.g. \"0.25\") and/or throttle_rate_per_sec",
                );
            }
            Some(ThresholdAction::Throttle {
                fraction_ppm,
                rate_per_sec,
                retry_after_ms: retry_after(t, &f("retry_after_ms"), loc, problems),
            })
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
                Some(other) => {
                    problems.add(loc, f("reroute"), format!("expected a table of model = model, found a {}", type_name(other)))
                }
            }
            Some(ThresholdAction::Reroute { map })
        }
        other => {
            problems.add(
                loc,
                f("action"),
                format!("{other:?} is not an action: one of \"notify\", \"throttle\", \"reroute\", \"block\""),
            );
            None
        }
    }
}
