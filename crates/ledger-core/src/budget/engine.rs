//! The enforcement engine: per-scope spend accumulation, burn rate, predictive threshold
//! evaluation and the state machine that decides which signals to publish.
//!
//! Pure and clock-free: every method that needs the time takes `now`. The enforcer runtime feeds
//! it spend updates and the last published signals, asks for the signals to publish, and
//! confirms each one once Kafka acknowledged it.
//!
//! Rules:
//! - A budget counts the spend updates of exactly its scope (same [`SpendScope`] shape and values)
//!   whose hour bucket starts in its current period; each spend key holds the latest cumulative
//!   value (the one with the highest `last_offset`), so order and duplicates do not matter.
//! - Level = the highest threshold reached by the *projected* usage, `used + burn_rate *
//!   lookahead`, in USD or tokens. Within a period the level never goes down (a falling burn rate
//!   does not lift a throttle); a new period or a changed budget starts afresh.
//! - A signal is published when its decision (state, threshold, period, limits, throttle,
//!   reroute) differs from the last published one for the key: once per transition, once per
//!   period rollover (the reset), once after a policy change that alters it, never otherwise.
//! - What a signal carries: THROTTLE its throttle; REROUTE its reroute map plus the throttle of
//!   the highest throttle threshold below it, if any (both stay in force); BLOCK only its
//!   `retry_after_ms` (no reroute, no throttle: everything is refused); NOTIFY and OK nothing.
//!
//! [`SpendScope`]: crate::aggregate::SpendScope

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Utc};

use super::period::{period_of, PeriodWindow};
use super::policy::{Budget, BudgetPolicy, Percent, ThresholdAction};
use super::scope::BudgetScope;
use crate::money::Money;
use crate::signal::{BudgetSignal, BudgetState, Enforcement};
use crate::spend::SpendUpdate;

/// One spend key's latest cumulative values.
#[derive(Debug, Clone, Copy)]
struct SpendEntry {
    bucket_start: DateTime<Utc>,
    cost: Money,
    tokens: i64,
    last_offset: i64,
}

/// Spend seen for one budget scope.
#[derive(Debug, Default)]
struct ScopeSpend {
    entries: HashMap<String, SpendEntry>,
    /// Monotone counters of every increase seen (any bucket), for the burn rate.
    seen_cost: i128,
    seen_tokens: i128,
    /// `(unix second, seen_cost, seen_tokens)`, one per second with arrivals, oldest first.
    samples: VecDeque<(i64, i128, i128)>,
    /// Indexes into the policy's budgets.
    budgets: Vec<usize>,
}

impl ScopeSpend {
    fn sample(&mut self, now: i64, keep_secs: i64) {
        match self.samples.back_mut() {
            Some(last) if last.0 == now => {
                last.1 = self.seen_cost;
                last.2 = self.seen_tokens;
            }
            _ => self.samples.push_back((now, self.seen_cost, self.seen_tokens)),
        }
        // Keep one sample at or before the start of the longest window as the baseline.
        while self.samples.len() >= 2 && self.samples[1].0 <= now - keep_secs {
            self.samples.pop_front();
        }
    }

    /// `(USD picos per hour, tokens per hour)` over the trailing `window` seconds.
    fn rates(&self, now: i64, window: u32) -> (i128, i128) {
        let window = i64::from(window.max(1));
        let Some(baseline) = self.samples.iter().rev().find(|s| s.0 <= now - window).or_else(|| self.samples.front()) else {
            return (0, 0);
        };
        let per_hour = |delta: i128| delta.max(0).saturating_mul(3600) / i128::from(window);
        (per_hour(self.seen_cost - baseline.1), per_hour(self.seen_tokens - baseline.2))
    }
}

/// Per-budget state in its current period.
#[derive(Debug, Clone)]
struct BudgetRuntime {
    window: PeriodWindow,
    cost: Money,
    tokens: i64,
    /// Highest threshold index reached in this period.
    latched: Option<usize>,
}

/// A budget's figures at one instant, for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetView {
    /// Budget name.
    pub name: String,
    /// Signal key.
    pub key: String,
    /// Current period.
    pub window: PeriodWindow,
    /// Spend in the period.
    pub spend_usd: Money,
    /// Tokens in the period.
    pub spent_tokens: i64,
    /// Share of the USD limit used (`None` without a USD limit).
    pub used_percent: Option<Percent>,
    /// Share of the token limit used.
    pub used_tokens_percent: Option<Percent>,
    /// State the engine would publish now.
    pub state: BudgetState,
    /// Burn rate over the budget's window, USD per hour.
    pub burn_rate_usd_per_hour: Money,
    /// When the limit is reached at the burn rate.
    pub projected_exhaustion: Option<DateTime<Utc>>,
}

/// The enforcement engine (see the module docs for its rules).
#[derive(Debug)]
pub struct BudgetEngine {
    policy: BudgetPolicy,
    runtimes: Vec<BudgetRuntime>,
    scopes: HashMap<BudgetScope, ScopeSpend>,
    published: BTreeMap<String, BudgetSignal>,
    dirty: BTreeSet<usize>,
    live: bool,
    /// Earliest end of a current period.
    next_end: Option<DateTime<Utc>>,
}

impl BudgetEngine {
    /// An engine for `policy` at `now`, with no spend and nothing published yet. It starts in
    /// catch-up mode: updates count toward spend but not toward the burn rate until
    /// [`BudgetEngine::go_live`] (a replay of the compacted topic is not a burst of spend).
    pub fn new(policy: BudgetPolicy, now: DateTime<Utc>) -> BudgetEngine {
        let mut scopes: HashMap<BudgetScope, ScopeSpend> = HashMap::new();
        let runtimes: Vec<BudgetRuntime> = policy
            .budgets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                scopes.entry(b.scope.clone()).or_default().budgets.push(i);
                BudgetRuntime { window: period_of(b.period, b.timezone, now), cost: Money::ZERO, tokens: 0, latched: None }
            })
            .collect();
        let next_end = earliest_end(&runtimes);
        BudgetEngine { policy, runtimes, scopes, published: BTreeMap::new(), dirty: BTreeSet::new(), live: false, next_end }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BudgetPolicy {
        &self.policy
    }

    /// Ends catch-up: from now on, spend increases feed the burn rate.
    pub fn go_live(&mut self, now: DateTime<Utc>) {
        self.live = true;
        let keep = self.max_window_secs();
        for s in self.scopes.values_mut() {
            s.sample(now.timestamp(), keep);
        }
    }

    fn max_window_secs(&self) -> i64 {
        i64::from(self.policy.budgets.iter().map(|b| b.burn_window_secs).max().unwrap_or(1))
    }

    /// Records the last signal published for a key (read back from the signals topic on start).
    /// When it belongs to the current period of its budget and names one of its thresholds, the
    /// engine continues from that level, so a restart neither repeats nor undoes a transition.
    pub fn restore_published(&mut self, signal: BudgetSignal) {
        if let Some(i) = self.policy.budgets.iter().position(|b| b.signal_key() == signal.scope) {
            let b = &self.policy.budgets[i];
            let rt = &mut self.runtimes[i];
            let same_limits = signal.limit_usd == b.limit_usd && signal.limit_tokens == b.limit_tokens;
            if same_limits && signal.period_start == rt.window.start && signal.period_end == rt.window.end {
                rt.latched = (0..b.thresholds.len()).find(|&t| action_text(b, Some(t)) == signal.action);
            }
            self.dirty.insert(i);
        }
        self.published.insert(signal.scope.clone(), signal);
    }

    /// The last published signal of every key.
    pub fn published(&self) -> &BTreeMap<String, BudgetSignal> {
        &self.published
    }

    /// Applies one cumulative spend update; returns true when a budget counts it.
    pub fn apply(&mut self, update: &SpendUpdate, now: DateTime<Utc>) -> bool {
        let keep = self.max_window_secs();
        let Some(spend) = self.scopes.get_mut(&update.scope) else { return false };
        // Buckets older than every period in force of this scope are of no use.
        let oldest = spend.budgets.iter().map(|&i| self.runtimes[i].window.start).min();
        if oldest.is_some_and(|o| update.period_start < o) {
            return false;
        }
        let key = update.key();
        let new = SpendEntry {
            bucket_start: update.period_start,
            cost: update.cost_usd,
            tokens: update.total_tokens,
            last_offset: update.last_offset,
        };
        let old = spend.entries.get(&key).copied();
        if let Some(old) = old {
            if old.last_offset > new.last_offset {
                return true; // a stale update: the cumulative value we hold is newer
            }
        }
        let (old_cost, old_tokens) = old.map_or((Money::ZERO, 0), |o| (o.cost, o.tokens));
        let d_cost = new.cost.picos() - old_cost.picos();
        let d_tokens = i128::from(new.tokens) - i128::from(old_tokens);
        spend.entries.insert(key, new);
        spend.seen_cost = spend.seen_cost.saturating_add(d_cost.max(0));
        spend.seen_tokens = spend.seen_tokens.saturating_add(d_tokens.max(0));
        if self.live {
            spend.sample(now.timestamp(), keep);
        }
        for &i in &spend.budgets {
            let rt = &mut self.runtimes[i];
            if rt.window.contains(new.bucket_start) {
                rt.cost = Money::from_picos(rt.cost.picos().saturating_add(d_cost));
                rt.tokens = rt.tokens.saturating_add(i64::try_from(d_tokens).unwrap_or(i64::MAX));
                self.dirty.insert(i);
            }
        }
        true
    }

    /// Moves every budget whose period ended into its current period (recomputing its spend and
    /// dropping buckets no period in force needs). Returns true when one rolled over.
    fn roll(&mut self, now: DateTime<Utc>) -> bool {
        let mut rolled_scopes = BTreeSet::new();
        for (i, b) in self.policy.budgets.iter().enumerate() {
            let rt = &mut self.runtimes[i];
            if rt.window.contains(now) {
                continue;
            }
            rt.window = period_of(b.period, b.timezone, now);
            rt.latched = None;
            self.dirty.insert(i);
            rolled_scopes.insert(b.scope.clone());
        }
        for scope in &rolled_scopes {
            let Some(spend) = self.scopes.get_mut(scope) else { continue };
            let oldest = spend.budgets.iter().map(|&i| self.runtimes[i].window.start).min();
            if let Some(oldest) = oldest {
                spend.entries.retain(|_, e| e.bucket_start >= oldest);
            }
            for &i in &spend.budgets {
                let rt = &mut self.runtimes[i];
                let (mut cost, mut tokens) = (0i128, 0i64);
                for e in spend.entries.values().filter(|e| rt.window.contains(e.bucket_start)) {
                    cost = cost.saturating_add(e.cost.picos());
                    tokens = tokens.saturating_add(e.tokens);
                }
                rt.cost = Money::from_picos(cost);
                rt.tokens = tokens;
            }
        }
        self.next_end = earliest_end(&self.runtimes);
        !rolled_scopes.is_empty()
    }

    /// The next instant at which a period ends (when the runtime must call `evaluate` at the latest).
    pub fn next_rollover(&self) -> Option<DateTime<Utc>> {
        self.next_end
    }

    /// Signals to publish for the budgets touched since the last call (and every budget whose
    /// period rolled over). Nothing is recorded as published until [`BudgetEngine::confirm`].
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Vec<BudgetSignal> {
        if self.next_rollover().is_some_and(|end| now >= end) {
            self.roll(now);
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut out = Vec::new();
        for i in dirty {
            if let Some(s) = self.evaluate_budget(i, now) {
                out.push(s);
            }
        }
        out
    }

    /// Like [`BudgetEngine::evaluate`], for every budget, plus an OK signal for each key whose
    /// budget was removed while not OK (after start-up or a policy change, and periodically,
    /// since a burn rate changes with time alone).
    pub fn evaluate_all(&mut self, now: DateTime<Utc>) -> Vec<BudgetSignal> {
        self.dirty.extend(0..self.policy.budgets.len());
        let mut out = self.evaluate(now);
        out.extend(self.removed_signals(now));
        out
    }

    /// Records a signal as published (after Kafka acknowledged it).
    pub fn confirm(&mut self, signal: BudgetSignal) {
        self.published.insert(signal.scope.clone(), signal);
    }

    /// Marks a budget for re-evaluation (e.g. after a failed publish).
    pub fn retry(&mut self, key: &str) {
        if let Some(i) = self.policy.budgets.iter().position(|b| b.signal_key() == key) {
            self.dirty.insert(i);
        }
    }

    fn removed_signals(&self, now: DateTime<Utc>) -> Vec<BudgetSignal> {
        self.published
            .values()
            .filter(|s| {
                (s.state != BudgetState::Ok || s.enforcement == Enforcement::Lease) && self.policy.by_key(&s.scope).is_none()
            })
            .map(|s| BudgetSignal {
                state: BudgetState::Ok,
                enforcement: Enforcement::Signal,
                action: "allow".into(),
                throttle_fraction_ppm: None,
                throttle_rate_per_sec: None,
                retry_after_ms: None,
                reroute: BTreeMap::new(),
                reason: "the budget was removed from the policy".into(),
                sequence: s.sequence.saturating_add(1),
                emitted_at: now,
                ..s.clone()
            })
            .collect()
    }

    fn level(&self, i: usize, now: DateTime<Utc>) -> (Option<usize>, bool, (i128, i128)) {
        let b = &self.policy.budgets[i];
        let rt = &self.runtimes[i];
        let rates = self.scopes.get(&b.scope).map_or((0, 0), |s| s.rates(now.timestamp(), b.burn_window_secs));
        let ahead =
            |used: i128, per_hour: i128| used.saturating_add(per_hour.saturating_mul(i128::from(b.lookahead_secs)) / 3600);
        let (cost, tokens) = (rt.cost.picos(), i128::from(rt.tokens));
        let reached = |t: usize, cost: i128, tokens: i128| {
            let pct = b.thresholds[t].at_percent;
            b.limit_usd.is_some_and(|l| pct.reached_by(cost, l.picos()))
                || b.limit_tokens.is_some_and(|l| pct.reached_by(tokens, i128::from(l)))
        };
        let actual = (0..b.thresholds.len()).rev().find(|&t| reached(t, cost, tokens));
        // Leases hold a lease budget's limit; a projected BLOCK would stop a burst long before it.
        let predictable = |t: usize| b.enforcement != Enforcement::Lease || b.thresholds[t].action.state() != BudgetState::Block;
        let projected =
            (0..b.thresholds.len()).rev().find(|&t| predictable(t) && reached(t, ahead(cost, rates.0), ahead(tokens, rates.1)));
        let level = projected.max(actual).max(rt.latched);
        (level, level > actual, rates)
    }

    fn evaluate_budget(&mut self, i: usize, now: DateTime<Utc>) -> Option<BudgetSignal> {
        let (level, predicted, rates) = self.level(i, now);
        self.runtimes[i].latched = level;
        let b = &self.policy.budgets[i];
        let rt = &self.runtimes[i];
        let key = b.signal_key();
        let previous = self.published.get(&key);
        let signal = build_signal(b, rt, level, predicted, rates, now, previous.map_or(1, |p| p.sequence.saturating_add(1)));
        match previous {
            Some(p) if same_decision(p, &signal) => None,
            _ => Some(signal),
        }
    }

    /// The current period and ledger spend of the budget with signal key `key`, when its
    /// period holds `now` (else `None` until the next evaluation rolls it over).
    pub fn spend_of(&self, key: &str, now: DateTime<Utc>) -> Option<(&Budget, PeriodWindow, Money)> {
        let i = self.policy.budgets.iter().position(|b| b.signal_key() == key)?;
        let rt = &self.runtimes[i];
        rt.window.contains(now).then(|| (&self.policy.budgets[i], rt.window, rt.cost))
    }

    /// Every budget's current figures.
    pub fn views(&self, now: DateTime<Utc>) -> Vec<BudgetView> {
        (0..self.policy.budgets.len())
            .map(|i| {
                let b = &self.policy.budgets[i];
                let rt = &self.runtimes[i];
                let (level, _, rates) = self.level(i, now);
                BudgetView {
                    name: b.name.clone(),
                    key: b.signal_key(),
                    window: rt.window,
                    spend_usd: rt.cost,
                    spent_tokens: rt.tokens,
                    used_percent: b.limit_usd.and_then(|l| Percent::of(rt.cost.picos(), l.picos())),
                    used_tokens_percent: b.limit_tokens.and_then(|l| Percent::of(i128::from(rt.tokens), i128::from(l))),
                    state: level.map_or(BudgetState::Ok, |t| b.thresholds[t].action.state()),
                    burn_rate_usd_per_hour: Money::from_picos(rates.0),
                    projected_exhaustion: exhaustion(b, rt, rates, now),
                }
            })
            .collect()
    }
}

fn earliest_end(runtimes: &[BudgetRuntime]) -> Option<DateTime<Utc>> {
    runtimes.iter().map(|r| r.window.end).min()
}

/// True when two signals tell routers the same thing (everything but figures, reason, sequence
/// and emission time).
pub fn same_decision(a: &BudgetSignal, b: &BudgetSignal) -> bool {
    a.scope == b.scope
        && a.period == b.period
        && a.period_start == b.period_start
        && a.period_end == b.period_end
        && a.state == b.state
        && a.action == b.action
        && a.limit_usd == b.limit_usd
        && a.limit_tokens == b.limit_tokens
        && a.throttle_fraction_ppm == b.throttle_fraction_ppm
        && a.throttle_rate_per_sec == b.throttle_rate_per_sec
        && a.retry_after_ms == b.retry_after_ms
        && a.reroute == b.reroute
        && a.valid_until == b.valid_until
        && a.enforcement == b.enforcement
}

fn exhaustion(b: &Budget, rt: &BudgetRuntime, rates: (i128, i128), now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let secs_to = |used: i128, limit: i128, per_hour: i128| -> Option<i64> {
        if per_hour <= 0 || used >= limit {
            return None;
        }
        let secs = (limit - used).saturating_mul(3600).div_euclid(per_hour) + 1;
        i64::try_from(secs).ok().filter(|s| *s < 100 * 366 * 86_400)
    };
    let usd = b.limit_usd.and_then(|l| secs_to(rt.cost.picos(), l.picos(), rates.0));
    let tokens = b.limit_tokens.and_then(|l| secs_to(i128::from(rt.tokens), i128::from(l), rates.1));
    let secs = match (usd, tokens) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }?;
    now.checked_add_signed(chrono::Duration::seconds(secs))
}

/// Dollars with at least 2 and at most 12 fractional digits: `812.5` -> `812.50`.
pub fn usd_text(m: Money) -> String {
    let full = m.to_string();
    let (whole, frac) = full.split_once('.').unwrap_or((&full, ""));
    let frac = frac.trim_end_matches('0');
    format!("{whole}.{frac:0<2}")
}

/// The `action` text of a budget at a level: names the threshold, so equal texts mean the same
/// threshold of the same budget (used to resume after a restart).
fn action_text(b: &Budget, level: Option<usize>) -> String {
    let Some(t) = level else { return "allow".into() };
    let th = &b.thresholds[t];
    let at = th.at_percent;
    match &th.action {
        ThresholdAction::Notify => format!("notify at {at}%"),
        ThresholdAction::Throttle { fraction_ppm, rate_per_sec, retry_after_ms } => {
            let mut parts = Vec::new();
            if let Some(ppm) = fraction_ppm {
                parts.push(format!(
                    "allow {}% of requests",
                    Percent::of(i128::from(*ppm), 1_000_000).unwrap_or(Percent::whole(0))
                ));
            }
            if let Some(r) = rate_per_sec {
                parts.push(format!("at most {r} requests/s"));
            }
            if let Some(ms) = retry_after_ms {
                parts.push(format!("retry after {ms} ms"));
            }
            format!("throttle at {at}%: {}", parts.join(", "))
        }
        ThresholdAction::Reroute { map } => {
            let pairs: Vec<String> = map.iter().map(|(f, t)| format!("{f} -> {t}")).collect();
            format!("reroute at {at}%: {}", pairs.join(", "))
        }
        ThresholdAction::Block { .. } => format!("block at {at}%"),
    }
}

fn build_signal(
    b: &Budget,
    rt: &BudgetRuntime,
    level: Option<usize>,
    predicted: bool,
    rates: (i128, i128),
    now: DateTime<Utc>,
    sequence: i64,
) -> BudgetSignal {
    let state = level.map_or(BudgetState::Ok, |t| b.thresholds[t].action.state());
    let (mut fraction, mut rate, mut retry, mut reroute) = (None, None, None, BTreeMap::new());
    if let Some(t) = level {
        match &b.thresholds[t].action {
            ThresholdAction::Notify => {}
            ThresholdAction::Block { retry_after_ms } => retry = retry_after_ms.map(|ms| ms as i64),
            ThresholdAction::Throttle { .. } | ThresholdAction::Reroute { .. } => {
                if let ThresholdAction::Reroute { map } = &b.thresholds[t].action {
                    reroute = map.clone();
                }
                // The throttle in force: this threshold's, else the highest one below it.
                if let Some(ThresholdAction::Throttle { fraction_ppm, rate_per_sec, retry_after_ms }) =
                    b.thresholds[..=t].iter().rev().map(|th| &th.action).find(|a| matches!(a, ThresholdAction::Throttle { .. }))
                {
                    fraction = *fraction_ppm;
                    rate = *rate_per_sec;
                    retry = retry_after_ms.map(|ms| ms as i64);
                }
            }
        }
    }
    let period_word = match b.period {
        crate::signal::BudgetPeriod::Day => "today",
        crate::signal::BudgetPeriod::Week => "this week",
        crate::signal::BudgetPeriod::Month => "this month",
    };
    let mut used = Vec::new();
    if let Some(l) = b.limit_usd {
        let pct = Percent::of(rt.cost.picos(), l.picos()).unwrap_or(Percent::whole(0));
        used.push(format!("{} of {} USD ({pct}%)", usd_text(rt.cost), usd_text(l)));
    }
    if let Some(l) = b.limit_tokens {
        let pct = Percent::of(i128::from(rt.tokens), i128::from(l)).unwrap_or(Percent::whole(0));
        used.push(format!("{} of {l} tokens ({pct}%)", rt.tokens));
    }
    let mut reason = format!("budget {:?}: {} spent {period_word}", b.name, used.join(" and "));
    if let Some(t) = level {
        let th = &b.thresholds[t];
        if predicted {
            reason.push_str(&format!(
                "; threshold {}% ({}) expected within {} s at {} USD/h",
                th.at_percent,
                th.action.state().as_str().to_lowercase(),
                b.lookahead_secs,
                usd_text(Money::from_picos(rates.0))
            ));
        } else {
            reason.push_str(&format!("; threshold {}% ({}) reached", th.at_percent, th.action.state().as_str().to_lowercase()));
        }
    }
    BudgetSignal {
        scope: b.signal_key(),
        scope_fields: b.scope.field_map(),
        period: b.period,
        period_start: rt.window.start,
        period_end: rt.window.end,
        state,
        action: action_text(b, level),
        spend_usd: rt.cost,
        limit_usd: b.limit_usd,
        remaining_usd: b.limit_usd.map(|l| Money::from_picos(l.picos().saturating_sub(rt.cost.picos()))),
        spent_tokens: rt.tokens,
        limit_tokens: b.limit_tokens,
        burn_rate_usd_per_hour: Money::from_picos(rates.0),
        projected_exhaustion: exhaustion(b, rt, rates, now),
        throttle_fraction_ppm: fraction,
        throttle_rate_per_sec: rate,
        retry_after_ms: retry,
        reroute,
        valid_until: rt.window.end,
        reason,
        sequence,
        emitted_at: now,
        enforcement: b.enforcement,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
