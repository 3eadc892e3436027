//! The router's view of the budget signals and the routing decision, without any I/O.
//!
//! [`SignalTable`] is the single writer's state: it applies signals in the order they are read
//! (the higher `sequence` per scope wins) and publishes immutable [`Snapshot`]s. A snapshot
//! answers [`Snapshot::decide_at`] for any number of concurrent readers; its index is keyed by
//! tenant so that a call only looks at the scopes of its own tenant (and at the few scopes
//! without a tenant).
//!
//! # Which scope wins
//! A scope applies to a call when every field of its `scope_fields` equals the call's value
//! (`model` is compared with the requested model). Of the applicable scopes:
//! 1. **Block** wins: a scope in state BLOCK, or (when [`StalePolicy::FailClosed`]) a scope whose
//!    signal is past `valid_until`;
//! 2. then **Throttle**, when the call is not admitted by the throttle in force of a THROTTLE
//!    scope, or of a REROUTE scope whose signal carries the throttle of the threshold below it
//!    (the enforcer keeps that throttle in force while rerouting; it applies to every model of
//!    the scope). Gates are asked in decision order (REROUTE scopes first, then more specific
//!    first); a gate counts only the calls that reached it, so a refused call does not use up
//!    another scope's share;
//! 3. then **Reroute**, by the most specific REROUTE scope whose map has the requested model (a
//!    REROUTE scope leaves other models alone);
//! 4. else **Allow** (OK and NOTIFY allow).
//!
//! A stale signal under [`StalePolicy::FailOpen`] is ignored as if it were absent.
//!
//! # Throttling
//! A throttle admits `throttle_fraction_ppm` of the calls that reach it deterministically
//! (call `n` is admitted when `floor((n+1)·ppm/1e6) > floor(n·ppm/1e6)`, so exactly
//! `floor(N·ppm/1e6)` of `N` calls, evenly spread), and/or `throttle_rate_per_sec` calls per
//! second (GCRA, bursts of up to one second's worth); with both, a call must pass both. A
//! refused call gets the signal's `retry_after_ms` (else [`RouterPolicy::default_retry_after_ms`]),
//! or for the rate the time until the next admission. A THROTTLE signal with neither field
//! admits nothing. The gates are lock-free atomics, counted per scope and reset by each new
//! signal of the scope.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::{HashMap, HashSet};
use ledger_core::signal::{BudgetSignal, BudgetState};
use ledger_core::attribution::Attribution;
use ledger_core::UsageEvent;
use serde::{Deserialize, Serialize};

use crate::gate::{FractionGate, RateGate};

/// What the router does with a scope whose signal is past its `valid_until` (the enforcer
/// stopped publishing, or the period ended without a reset reaching the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Ignore the stale signal: calls go through as if the scope had no signal (availability
    /// first; the default).
    #[default]
    FailOpen,
    /// Treat the stale signal as BLOCK (budget safety first).
    FailClosed,
}

/// How the router applies signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterPolicy {
    /// What to do with stale signals.
    pub stale: StalePolicy,
    /// `retry_after` of a throttled call when its signal carries no `retry_after_ms`.
    pub default_retry_after_ms: u64,
}

impl Default for RouterPolicy {
    fn default() -> Self {
        RouterPolicy { stale: StalePolicy::FailOpen, default_retry_after_ms: 1_000 }
    }
}

/// The attribution of one LLM call, as the router matches it against budget scopes: the
/// ledger's one [`Attribution`] type, borrowed, so building one per call costs nothing
/// (`CallContext::tenant("acme").team("search")`, or `event.attribution.as_ref()`). The requested
/// model is passed to [`Snapshot::decide_at`] (and `Router::decide`) separately.
pub type CallContext<'a> = Attribution<&'a str>;

/// The router's answer for one call.
///
/// Cloning is cheap (the strings are shared); [`Decision::Allow`] carries nothing, so the
/// common case allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make the call as requested.
    Allow,
    /// Make the call with model `to` instead of the requested `from`; report the usage with
    /// [`Decision::stamp_usage_event`] so the ledger records the savings.
    Reroute {
        /// The model to call.
        to: Arc<str>,
        /// The requested model.
        from: Arc<str>,
        /// The budget scope that asked for the reroute.
        scope: Arc<str>,
    },
    /// Do not make the call now; try again after `retry_after`.
    Throttle {
        /// How long to wait before trying again.
        retry_after: Duration,
        /// The budget scope that throttled the call.
        scope: Arc<str>,
    },
    /// Do not make the call.
    Block {
        /// Why (the enforcer's reason, or that the signal is stale and the router fails closed).
        reason: Arc<str>,
        /// The budget scope that blocked the call.
        scope: Arc<str>,
    },
}

impl Decision {
    /// True for [`Decision::Allow`] and [`Decision::Reroute`]: the call may be made.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow | Decision::Reroute { .. })
    }

    /// The model to call when the call may be made: `requested`, or the reroute target.
    pub fn model_to_call<'s>(&'s self, requested: &'s str) -> Option<&'s str> {
        match self {
            Decision::Allow => Some(requested),
            Decision::Reroute { to, .. } => Some(to),
            Decision::Throttle { .. } | Decision::Block { .. } => None,
        }
    }

    /// Stamps the usage event of a call made under this decision, so the ledger can show what
    /// the reroute saved (PRICING.md, "Routing savings"): after a reroute, `request_model` is
    /// the model actually called and `routed_from_model` the model the application asked for.
    ///
    /// Build the event as usual (with the model you called, or the requested one) and call this
    /// before emitting it. Other decisions leave the event unchanged.
    pub fn stamp_usage_event(&self, event: &mut UsageEvent) {
        if let Decision::Reroute { to, from, .. } = self {
            if event.request_model.is_empty() || event.request_model == **from {
                event.request_model = to.to_string();
            }
            event.routed_from_model = Some(from.to_string());
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allow"),
            Decision::Reroute { to, from, scope } => write!(f, "reroute {from} -> {to} ({scope})"),
            Decision::Throttle { retry_after, scope } => {
                write!(f, "throttle, retry after {} ms ({scope})", retry_after.as_millis())
            }
            Decision::Block { reason, scope } => write!(f, "block ({scope}): {reason}"),
        }
    }
}

/// A call attribute a scope can be restricted to (`scope_fields` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Team,
    Project,
    UserId,
    ApiKeyId,
    Model,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "team" => Field::Team,
            "project" => Field::Project,
            "user_id" => Field::UserId,
            "api_key_id" => Field::ApiKeyId,
            "model" => Field::Model,
            _ => return None,
        })
    }
}

/// One scope's latest signal, prepared for matching and deciding.
struct ScopeEntry {
    signal: BudgetSignal,
    key: Arc<str>,
    tenant: Option<Arc<str>>,
    /// Conditions besides the tenant, all of which must hold.
    conditions: Box<[(Field, Box<str>)]>,
    valid_until_us: i64,
    retry_after: Duration,
    fraction: Option<FractionGate>,
    rate: Option<RateGate>,
    /// requested model -> cheaper model.
    reroute: Box<[(Arc<str>, Arc<str>)]>,
    block_reason: Arc<str>,
    stale_reason: Arc<str>,
}

impl fmt::Debug for ScopeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeEntry")
            .field("key", &self.key)
            .field("state", &self.signal.state)
            .field("sequence", &self.signal.sequence)
            .finish_non_exhaustive()
    }
}

/// Why a signal cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// `scope_fields` names a field the router cannot match on.
    UnknownField(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::UnknownField(name) => write!(
                f,
                "scope field {name:?} is not one the router matches (tenant_id, team, project, user_id, api_key_id, model); the scope is ignored"
            ),
        }
    }
}

impl ScopeEntry {
    fn new(signal: BudgetSignal, policy: &RouterPolicy) -> Result<ScopeEntry, Unusable> {
        let mut tenant = None;
        let mut conditions = Vec::with_capacity(signal.scope_fields.len());
        for (name, value) in &signal.scope_fields {
            if name == "tenant_id" {
                tenant = Some(Arc::<str>::from(value.as_str()));
            } else {
                let field = Field::parse(name).ok_or_else(|| Unusable::UnknownField(name.clone()))?;
                conditions.push((field, value.clone().into_boxed_str()));
            }
        }
        conditions.sort();
        let retry_after = signal
            .retry_after_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(policy.default_retry_after_ms));
        let (fraction, rate) = match signal.state {
            BudgetState::Throttle | BudgetState::Reroute => {
                let rate = signal.throttle_rate_per_sec.and_then(RateGate::new);
                let fraction = match (signal.throttle_fraction_ppm, &rate) {
                    (Some(ppm), _) => Some(FractionGate::new(ppm)),
                    // A THROTTLE that says neither how much nor how fast admits nothing: the
                    // safe reading of a signal the router does not understand. A REROUTE
                    // without throttle fields simply has no throttle in force.
                    (None, None) if signal.state == BudgetState::Throttle => Some(FractionGate::new(0)),
                    (None, _) => None,
                };
                (fraction, rate)
            }
            _ => (None, None),
        };
        let reroute = if signal.state == BudgetState::Reroute {
            signal.reroute.iter().map(|(from, to)| (Arc::from(from.as_str()), Arc::from(to.as_str()))).collect()
        } else {
            Box::default()
        };
        let key: Arc<str> = Arc::from(signal.scope.as_str());
        let block_reason: Arc<str> = Arc::from(if signal.reason.is_empty() {
            format!("budget {} is exhausted", signal.scope)
        } else {
            signal.reason.clone()
        });
        let stale_reason: Arc<str> = Arc::from(format!(
            "the budget signal of {} expired at {} and no newer one arrived; the router fails closed",
            signal.scope,
            signal.valid_until.to_rfc3339()
        ));
        Ok(ScopeEntry {
            valid_until_us: signal.valid_until.timestamp_micros(),
            key,
            tenant,
            conditions: conditions.into_boxed_slice(),
            retry_after,
            fraction,
            rate,
            reroute,
            block_reason,
            stale_reason,
            signal,
        })
    }

    fn state(&self) -> BudgetState {
        self.signal.state
    }

    /// Whether the scope covers the call (the tenant was matched by the index).
    #[inline]
    fn applies(&self, ctx: &CallContext<'_>, model: &str) -> bool {
        self.conditions.iter().all(|(field, want)| {
            let have = match field {
                Field::Team => ctx.team,
                Field::Project => ctx.project,
                Field::UserId => ctx.user_id,
                Field::ApiKeyId => ctx.api_key_id,
                Field::Model => Some(model),
            };
            have == Some(&**want)
        })
    }

    #[inline]
    fn is_stale(&self, now_us: i64) -> bool {
        now_us >= self.valid_until_us
    }

    /// True when a throttle is in force: a THROTTLE scope, or a REROUTE scope whose signal
    /// carries the throttle of the threshold below it.
    #[inline]
    fn is_throttled(&self) -> bool {
        self.fraction.is_some() || self.rate.is_some()
    }

    /// `Err(retry_after)` when the throttle refuses the call.
    fn admit(&self, now_us: i64) -> Result<(), Duration> {
        if let Some(fraction) = &self.fraction {
            if !fraction.admit() {
                return Err(self.retry_after);
            }
        }
        if let Some(rate) = &self.rate {
            rate.admit(now_us)?;
        }
        Ok(())
    }

    fn reroute_of(&self, model: &str) -> Option<&(Arc<str>, Arc<str>)> {
        self.reroute.iter().find(|(from, _)| **from == *model)
    }

    /// Decision order within a tenant: most severe first, then most specific, then by key.
    fn order(&self) -> (std::cmp::Reverse<BudgetState>, std::cmp::Reverse<usize>, &str) {
        (std::cmp::Reverse(self.state()), std::cmp::Reverse(self.conditions.len()), &self.key)
    }
}

/// The scopes of one tenant (or of no tenant), ready for deciding.
#[derive(Debug)]
struct ScopeList {
    /// Every scope, for inspection and the stale check.
    all: Box<[Arc<ScopeEntry>]>,
    /// The scopes that restrict calls (THROTTLE, REROUTE, BLOCK), in decision order.
    restrictive: Box<[Arc<ScopeEntry>]>,
    /// The earliest `valid_until` of `all`: before it no scope of the list is stale.
    earliest_valid_until_us: i64,
}

impl Default for ScopeList {
    fn default() -> Self {
        ScopeList { all: Box::default(), restrictive: Box::default(), earliest_valid_until_us: i64::MAX }
    }
}

/// An immutable view of every scope's latest signal; answers routing decisions.
#[derive(Debug, Default)]
pub struct Snapshot {
    policy: RouterPolicy,
    by_tenant: HashMap<Arc<str>, Arc<ScopeList>>,
    any_tenant: Arc<ScopeList>,
    scopes: usize,
}

impl Snapshot {
    /// The decision for a call of `ctx` asking for `requested_model` at `now` (microseconds
    /// since the Unix epoch, compared with the signals' `valid_until`).
    ///
    /// Side effect: a THROTTLE scope that applies counts the call in its admission gate.
    pub fn decide_at(&self, ctx: &CallContext<'_>, requested_model: &str, now_us: i64) -> Decision {
        self.decide_with_clock(ctx, requested_model, || now_us)
    }

    /// [`Snapshot::decide_at`] that reads the clock only when some scope applies to the tenant.
    #[inline]
    pub(crate) fn decide_with_clock(
        &self,
        ctx: &CallContext<'_>,
        model: &str,
        clock: impl FnOnce() -> i64,
    ) -> Decision {
        let tenant = self.by_tenant.get(ctx.tenant_id).map(|l| &**l);
        let global = &*self.any_tenant;
        let fail_closed = self.policy.stale == StalePolicy::FailClosed;
        let restrictive = tenant.map_or(&[][..], |l| &l.restrictive);
        // Under fail-open, OK and NOTIFY scopes cannot change a decision: no clock needed.
        if restrictive.is_empty() && global.restrictive.is_empty() && (!fail_closed || (tenant.is_none() && global.all.is_empty())) {
            return Decision::Allow;
        }
        let now_us = clock();
        if fail_closed
            && (tenant.is_some_and(|l| now_us >= l.earliest_valid_until_us) || now_us >= global.earliest_valid_until_us)
        {
            let all = tenant.map_or(&[][..], |l| &l.all);
            if let Some(e) = all.iter().chain(global.all.iter()).find(|e| e.is_stale(now_us) && e.applies(ctx, model)) {
                return Decision::Block { reason: e.stale_reason.clone(), scope: e.key.clone() };
            }
        }
        let applicable = || {
            restrictive.iter().chain(global.restrictive.iter()).filter(|e| !e.is_stale(now_us) && e.applies(ctx, model))
        };
        for e in applicable() {
            if e.state() == BudgetState::Block {
                return Decision::Block { reason: e.block_reason.clone(), scope: e.key.clone() };
            }
        }
        for e in applicable() {
            if e.is_throttled() {
                if let Err(retry_after) = e.admit(now_us) {
                    return Decision::Throttle { retry_after, scope: e.key.clone() };
                }
            }
        }
        for e in applicable() {
            if e.state() == BudgetState::Reroute {
                if let Some((from, to)) = e.reroute_of(model) {
                    return Decision::Reroute { to: to.clone(), from: from.clone(), scope: e.key.clone() };
                }
            }
        }
        Decision::Allow
    }

    /// Number of scopes with a signal.
    pub fn len(&self) -> usize {
        self.scopes
    }

    /// True when no scope has a signal.
    pub fn is_empty(&self) -> bool {
        self.scopes == 0
    }

    /// The latest signal of the scope with key `scope` (e.g. `month:tenant_id=acme`).
    pub fn signal(&self, scope: &str) -> Option<&BudgetSignal> {
        self.signals().find(|s| s.scope == scope)
    }

    /// The latest signal of every scope (no particular order).
    pub fn signals(&self) -> impl Iterator<Item = &BudgetSignal> + '_ {
        self.by_tenant
            .values()
            .chain(std::iter::once(&self.any_tenant))
            .flat_map(|list| list.all.iter().map(|e| &e.signal))
    }

    /// The policy the snapshot decides with.
    pub fn policy(&self) -> RouterPolicy {
        self.policy
    }
}

/// What [`SignalTable::apply`] did with a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The signal is the scope's new state.
    Updated,
    /// The scope already has a signal with this or a higher sequence (a replayed or
    /// out-of-order record); nothing changed.
    NotNewer {
        /// Sequence the router has.
        have: i64,
        /// Sequence of the ignored signal.
        got: i64,
    },
    /// The signal cannot be applied; the scope keeps its previous state.
    Unusable(Unusable),
}

type ScopesByKey = BTreeMap<Arc<str>, Arc<ScopeEntry>>;

/// The single writer's state: the latest signal of every scope; publishes [`Snapshot`]s.
///
/// Applying is O(1); [`SignalTable::snapshot`] rebuilds only the tenants that changed since the
/// previous snapshot (plus one pointer copy per tenant), so apply a batch of records and then
/// take one snapshot.
#[derive(Debug)]
pub struct SignalTable {
    policy: RouterPolicy,
    /// Tenant (None: scopes without a tenant) -> scope key -> entry.
    tenants: HashMap<Option<Arc<str>>, ScopesByKey>,
    /// Scope key -> its tenant.
    tenant_of: HashMap<Arc<str>, Option<Arc<str>>>,
    dirty: HashSet<Option<Arc<str>>>,
    published: Arc<Snapshot>,
}

impl SignalTable {
    /// An empty table deciding with `policy`.
    pub fn new(policy: RouterPolicy) -> Self {
        SignalTable {
            policy,
            tenants: HashMap::new(),
            tenant_of: HashMap::new(),
            dirty: HashSet::new(),
            published: Arc::new(Snapshot { policy, ..Snapshot::default() }),
        }
    }

    /// Applies the next record of the signals topic: it replaces the scope's signal when its
    /// `sequence` is higher than the one the table has.
    pub fn apply(&mut self, signal: BudgetSignal) -> Applied {
        if let Some(tenant) = self.tenant_of.get(signal.scope.as_str()) {
            let have = self.tenants.get(tenant).and_then(|m| m.get(signal.scope.as_str())).map(|e| e.signal.sequence);
            if let Some(have) = have {
                if signal.sequence <= have {
                    return Applied::NotNewer { have, got: signal.sequence };
                }
            }
        }
        let entry = match ScopeEntry::new(signal, &self.policy) {
            Ok(entry) => entry,
            Err(unusable) => return Applied::Unusable(unusable),
        };
        self.remove(&entry.key);
        let tenant = entry.tenant.clone();
        self.tenant_of.insert(entry.key.clone(), tenant.clone());
        self.tenants.entry(tenant.clone()).or_default().insert(entry.key.clone(), Arc::new(entry));
        self.dirty.insert(tenant);
        Applied::Updated
    }

    /// Forgets a scope (a tombstone on the compacted topic). True when it was known.
    pub fn remove(&mut self, scope: &str) -> bool {
        let Some(tenant) = self.tenant_of.remove(scope) else { return false };
        if let Some(scopes) = self.tenants.get_mut(&tenant) {
            scopes.remove(scope);
            if scopes.is_empty() {
                self.tenants.remove(&tenant);
            }
        }
        self.dirty.insert(tenant);
        true
    }

    /// Number of scopes with a signal.
    pub fn len(&self) -> usize {
        self.tenant_of.len()
    }

    /// True when no scope has a signal.
    pub fn is_empty(&self) -> bool {
        self.tenant_of.is_empty()
    }

    /// True when signals were applied or removed since the last snapshot.
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The current view (the previous snapshot when nothing changed).
    pub fn snapshot(&mut self) -> Arc<Snapshot> {
        if self.dirty.is_empty() {
            return self.published.clone();
        }
        let mut by_tenant = self.published.by_tenant.clone();
        let mut any_tenant = self.published.any_tenant.clone();
        for tenant in self.dirty.drain() {
            let list = self.tenants.get(&tenant).map(|scopes| Arc::new(scope_list(scopes)));
            match (tenant, list) {
                (None, list) => any_tenant = list.unwrap_or_default(),
                (Some(t), Some(list)) => {
                    by_tenant.insert(t, list);
                }
                (Some(t), None) => {
                    by_tenant.remove(&t);
                }
            }
        }
        self.published =
            Arc::new(Snapshot { policy: self.policy, by_tenant, any_tenant, scopes: self.tenant_of.len() });
        self.published.clone()
    }
}

fn scope_list(scopes: &ScopesByKey) -> ScopeList {
    let all: Box<[Arc<ScopeEntry>]> = scopes.values().cloned().collect();
    let mut restrictive: Vec<Arc<ScopeEntry>> = all.iter().filter(|e| e.state() >= BudgetState::Throttle).cloned().collect();
    restrictive.sort_by(|a, b| a.order().cmp(&b.order()));
    let earliest_valid_until_us = all.iter().map(|e| e.valid_until_us).min().unwrap_or(i64::MAX);
    ScopeList { all, restrictive: restrictive.into_boxed_slice(), earliest_valid_until_us }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use ledger_core::signal::BudgetPeriod;
    use ledger_core::Money;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).single().unwrap()
    }

    const NOW: i64 = 1_800_000_000;
    const NOW_US: i64 = NOW * 1_000_000;

    pub(super) fn signal(fields: &[(&str, &str)], state: BudgetState, sequence: i64) -> BudgetSignal {
        let scope_fields: BTreeMap<String, String> =
            fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let canonical: Vec<String> = scope_fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        BudgetSignal {
            scope: format!("day:{}", canonical.join(",")),
            scope_fields,
            period: BudgetPeriod::Day,
            period_start: t(NOW - 3600),
            period_end: t(NOW + 3600),
            state,
            action: state.as_str().to_lowercase(),
            spend_usd: Money::ZERO,
            limit_usd: None,
            remaining_usd: None,
            spent_tokens: 0,
            limit_tokens: None,
            burn_rate_usd_per_hour: Money::ZERO,
            projected_exhaustion: None,
            throttle_fraction_ppm: (state == BudgetState::Throttle).then_some(500_000),
            throttle_rate_per_sec: None,
            retry_after_ms: Some(250),
            reroute: if state == BudgetState::Reroute {
                [("gpt-4o".to_owned(), "gpt-4o-mini".to_owned())].into_iter().collect()
            } else {
                BTreeMap::new()
            },
            valid_until: t(NOW + 3600),
            reason: format!("{} reason", state.as_str()),
            sequence,
            emitted_at: t(NOW - 60),
        }
    }

    fn table(policy: RouterPolicy, signals: Vec<BudgetSignal>) -> (SignalTable, Arc<Snapshot>) {
        let mut table = SignalTable::new(policy);
        for s in signals {
            assert_eq!(table.apply(s), Applied::Updated);
        }
        let snap = table.snapshot();
        (table, snap)
    }

    fn acme() -> CallContext<'static> {
        CallContext::tenant("acme").team("search")
    }

    #[test]
    fn no_signals_allows() {
        let (_, snap) = table(RouterPolicy::default(), vec![]);
        assert_eq!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Allow);
        assert!(snap.is_empty());
    }

    #[test]
    fn ok_and_notify_allow() {
        let (_, snap) = table(
            RouterPolicy::default(),
            vec![signal(&[("tenant_id", "acme")], BudgetState::Ok, 1), signal(&[("tenant_id", "acme"), ("team", "search")], BudgetState::Notify, 1)],
        );
        assert_eq!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Allow);
        assert_eq!(snap.len(), 2);
    }

    #[test]
    fn block_wins_over_everything() {
        let (_, snap) = table(
            RouterPolicy::default(),
            vec![
                signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1),
                signal(&[("tenant_id", "acme"), ("team", "search")], BudgetState::Throttle, 1),
                signal(&[("tenant_id", "acme"), ("team", "search"), ("model", "gpt-4o")], BudgetState::Block, 1),
            ],
        );
        match snap.decide_at(&acme(), "gpt-4o", NOW_US) {
            Decision::Block { reason, scope } => {
                assert_eq!(&*reason, "BLOCK reason");
                assert_eq!(&*scope, "day:model=gpt-4o,team=search,tenant_id=acme");
            }
            other => panic!("expected block, got {other:?}"),
        }
        // Another model is not covered by the model scope: throttle (half) then reroute does
        // not apply to it.
        let decisions: Vec<Decision> = (0..4).map(|_| snap.decide_at(&acme(), "claude-sonnet-4", NOW_US)).collect();
        assert_eq!(decisions.iter().filter(|d| **d == Decision::Allow).count(), 2);
        assert!(decisions.iter().all(|d| matches!(d, Decision::Allow | Decision::Throttle { .. })));
    }

    #[test]
    fn throttle_refusal_beats_reroute_and_admitted_calls_are_rerouted() {
        let (_, snap) = table(
            RouterPolicy::default(),
            vec![signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1), signal(&[("tenant_id", "acme"), ("team", "search")], BudgetState::Throttle, 1)],
        );
        let first = snap.decide_at(&acme(), "gpt-4o", NOW_US);
        assert_eq!(first, Decision::Throttle { retry_after: Duration::from_millis(250), scope: "day:team=search,tenant_id=acme".into() });
        let second = snap.decide_at(&acme(), "gpt-4o", NOW_US);
        assert_eq!(second, Decision::Reroute { to: "gpt-4o-mini".into(), from: "gpt-4o".into(), scope: "day:tenant_id=acme".into() });
        assert!(!first.is_allowed());
        assert_eq!(second.model_to_call("gpt-4o"), Some("gpt-4o-mini"));
    }

    #[test]
    fn a_reroute_keeps_the_throttle_below_it_in_force_for_every_model() {
        let mut s = signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1);
        s.throttle_fraction_ppm = Some(500_000);
        let (_, snap) = table(RouterPolicy::default(), vec![s]);
        let rerouted: Vec<Decision> = (0..4).map(|_| snap.decide_at(&acme(), "gpt-4o", NOW_US)).collect();
        assert_eq!(rerouted.iter().filter(|d| matches!(d, Decision::Throttle { .. })).count(), 2);
        assert_eq!(rerouted.iter().filter(|d| matches!(d, Decision::Reroute { .. })).count(), 2);
        let other: Vec<Decision> = (0..4).map(|_| snap.decide_at(&acme(), "o1", NOW_US)).collect();
        assert_eq!(other.iter().filter(|d| matches!(d, Decision::Throttle { .. })).count(), 2);
        assert_eq!(other.iter().filter(|d| **d == Decision::Allow).count(), 2);
    }

    #[test]
    fn a_rate_throttle_admits_its_rate_and_says_when_to_retry() {
        let mut s = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
        s.throttle_fraction_ppm = None;
        s.throttle_rate_per_sec = Some(2);
        let (_, snap) = table(RouterPolicy::default(), vec![s]);
        assert_eq!(snap.decide_at(&acme(), "m", NOW_US), Decision::Allow);
        assert_eq!(snap.decide_at(&acme(), "m", NOW_US), Decision::Allow);
        assert_eq!(
            snap.decide_at(&acme(), "m", NOW_US),
            Decision::Throttle { retry_after: Duration::from_millis(500), scope: "day:tenant_id=acme".into() }
        );
        assert_eq!(snap.decide_at(&acme(), "m", NOW_US + 500_000), Decision::Allow);
        // With a fraction as well, a call must pass both.
        let mut both = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
        both.throttle_rate_per_sec = Some(1_000);
        let (_, snap) = table(RouterPolicy::default(), vec![both]);
        let kinds: Vec<bool> = (0..4).map(|_| snap.decide_at(&acme(), "m", NOW_US).is_allowed()).collect();
        assert_eq!(kinds, [false, true, false, true]);
    }

    #[test]
    fn concurrent_callers_share_one_exact_throttle() {
        let mut s = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
        s.throttle_fraction_ppm = Some(250_000);
        let (_, snap) = table(RouterPolicy::default(), vec![s]);
        let admitted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..10_000).filter(|_| snap.decide_at(&acme(), "m", NOW_US).is_allowed()).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(admitted, 10_000, "a quarter of 40,000 calls, exactly, whatever the interleaving");
    }

    #[test]
    fn reroute_only_touches_models_in_its_map() {
        let (_, snap) = table(RouterPolicy::default(), vec![signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1)]);
        assert_eq!(snap.decide_at(&acme(), "gpt-4o-mini", NOW_US), Decision::Allow);
        assert!(matches!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Reroute { .. }));
    }

    #[test]
    fn scopes_of_other_tenants_and_other_attributes_do_not_apply() {
        let (_, snap) = table(
            RouterPolicy::default(),
            vec![
                signal(&[("tenant_id", "globex")], BudgetState::Block, 1),
                signal(&[("tenant_id", "acme"), ("team", "ads")], BudgetState::Block, 1),
                signal(&[("tenant_id", "acme"), ("user_id", "u1")], BudgetState::Block, 1),
                signal(&[("tenant_id", "acme"), ("api_key_id", "k1")], BudgetState::Block, 1),
                signal(&[("tenant_id", "acme"), ("team", "search"), ("project", "p9")], BudgetState::Block, 1),
            ],
        );
        assert_eq!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Allow);
        assert!(matches!(snap.decide_at(&acme().user("u1"), "gpt-4o", NOW_US), Decision::Block { .. }));
        assert!(matches!(snap.decide_at(&acme().api_key("k1"), "gpt-4o", NOW_US), Decision::Block { .. }));
        assert!(matches!(snap.decide_at(&acme().project("p9"), "gpt-4o", NOW_US), Decision::Block { .. }));
        assert!(matches!(snap.decide_at(&CallContext::tenant("globex"), "x", NOW_US), Decision::Block { .. }));
    }

    #[test]
    fn scopes_without_tenant_apply_to_every_tenant() {
        let (_, snap) = table(RouterPolicy::default(), vec![signal(&[("model", "o1")], BudgetState::Block, 1)]);
        assert!(matches!(snap.decide_at(&CallContext::tenant("anyone"), "o1", NOW_US), Decision::Block { .. }));
        assert_eq!(snap.decide_at(&CallContext::tenant("anyone"), "o3", NOW_US), Decision::Allow);
    }

    #[test]
    fn older_or_equal_sequence_is_ignored() {
        let mut table = SignalTable::new(RouterPolicy::default());
        assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Block, 5)), Applied::Updated);
        assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Ok, 4)), Applied::NotNewer { have: 5, got: 4 });
        assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Ok, 5)), Applied::NotNewer { have: 5, got: 5 });
        assert!(matches!(table.snapshot().decide_at(&acme(), "m", NOW_US), Decision::Block { .. }));
        assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Ok, 6)), Applied::Updated);
        assert_eq!(table.snapshot().decide_at(&acme(), "m", NOW_US), Decision::Allow);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn tombstone_forgets_the_scope() {
        let (mut table, _) = table(RouterPolicy::default(), vec![signal(&[("tenant_id", "acme")], BudgetState::Block, 1)]);
        assert!(table.remove("day:tenant_id=acme"));
        assert!(!table.remove("day:tenant_id=acme"));
        let snap = table.snapshot();
        assert_eq!(snap.decide_at(&acme(), "m", NOW_US), Decision::Allow);
        assert!(snap.is_empty());
    }

    #[test]
    fn stale_signals_fail_open_or_closed() {
        let mut ok = signal(&[("tenant_id", "acme")], BudgetState::Ok, 1);
        ok.valid_until = t(NOW - 1);
        let mut block = signal(&[("tenant_id", "globex")], BudgetState::Block, 1);
        block.valid_until = t(NOW - 1);
        let (_, open) = table(RouterPolicy::default(), vec![ok.clone(), block.clone()]);
        assert_eq!(open.decide_at(&acme(), "m", NOW_US), Decision::Allow);
        assert_eq!(open.decide_at(&CallContext::tenant("globex"), "m", NOW_US), Decision::Allow);
        // Still valid one microsecond earlier.
        assert!(matches!(open.decide_at(&CallContext::tenant("globex"), "m", NOW_US - 1_000_001), Decision::Block { .. }));

        let closed_policy = RouterPolicy { stale: StalePolicy::FailClosed, ..RouterPolicy::default() };
        let (_, closed) = table(closed_policy, vec![ok, block]);
        for tenant in ["acme", "globex"] {
            match closed.decide_at(&CallContext::tenant(tenant), "m", NOW_US) {
                Decision::Block { reason, .. } => assert!(reason.contains("fails closed"), "{reason}"),
                other => panic!("expected a stale block, got {other:?}"),
            }
        }
        assert_eq!(closed.decide_at(&CallContext::tenant("initech"), "m", NOW_US), Decision::Allow);
    }

    #[test]
    fn unknown_scope_field_is_unusable_and_keeps_the_previous_state() {
        let mut table = SignalTable::new(RouterPolicy::default());
        assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Block, 1)), Applied::Updated);
        let mut odd = signal(&[("tenant_id", "acme")], BudgetState::Ok, 2);
        odd.scope_fields.insert("feature".into(), "chat".into());
        assert!(matches!(table.apply(odd), Applied::Unusable(Unusable::UnknownField(f)) if f == "feature"));
        assert!(matches!(table.snapshot().decide_at(&acme(), "m", NOW_US), Decision::Block { .. }));
    }

    #[test]
    fn throttle_without_parameters_admits_nothing_and_default_retry_applies() {
        let mut s = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
        s.throttle_fraction_ppm = None;
        s.retry_after_ms = None;
        let (_, snap) = table(RouterPolicy::default(), vec![s]);
        for _ in 0..3 {
            assert_eq!(
                snap.decide_at(&acme(), "m", NOW_US),
                Decision::Throttle { retry_after: Duration::from_millis(1000), scope: "day:tenant_id=acme".into() }
            );
        }
    }

    #[test]
    fn snapshot_keeps_unchanged_tenants_and_throttle_counters() {
        let mut table = SignalTable::new(RouterPolicy::default());
        table.apply(signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1));
        let first = table.snapshot();
        assert!(!first.decide_at(&acme(), "m", NOW_US).is_allowed());
        table.apply(signal(&[("tenant_id", "globex")], BudgetState::Block, 1));
        let second = table.snapshot();
        // acme's gate carried over: the second call of the half throttle is admitted.
        assert!(second.decide_at(&acme(), "m", NOW_US).is_allowed());
        assert!(Arc::ptr_eq(first.by_tenant.get("acme").unwrap(), second.by_tenant.get("acme").unwrap()));
        assert!(Arc::ptr_eq(&table.snapshot(), &second), "no change, same snapshot");
        assert_eq!(second.signal("day:tenant_id=globex").map(|s| s.state), Some(BudgetState::Block));
        assert_eq!(second.signals().count(), 2);
    }

    #[test]
    fn stamp_marks_rerouted_events() {
        let d = Decision::Reroute { to: "gpt-4o-mini".into(), from: "gpt-4o".into(), scope: "s".into() };
        let mut event: UsageEvent = serde_json::from_str(
            r#"{"event_id":"e","event_time":"2026-11-01T00:00:00Z","tenant_id":"acme","provider":"openai","request_model":"gpt-4o"}"#,
        )
        .unwrap();
        Decision::Allow.stamp_usage_event(&mut event);
        assert_eq!(event.routed_from_model, None);
        d.stamp_usage_event(&mut event);
        assert_eq!(event.request_model, "gpt-4o-mini");
        assert_eq!(event.routed_from_model.as_deref(), Some("gpt-4o"));
        // An event already built with the model called keeps it.
        let mut called = event.clone();
        called.request_model = "gpt-4o-mini-2024-07-18".into();
        d.stamp_usage_event(&mut called);
        assert_eq!(called.request_model, "gpt-4o-mini-2024-07-18");
    }

    fn state_strategy() -> impl Strategy<Value = BudgetState> {
        prop::sample::select(BudgetState::ALL.to_vec())
    }

    /// The scope shapes of ledger_core::aggregate::SpendScope, plus one without a tenant.
    const SHAPES: [&[&str]; 9] = [
        &["tenant_id"],
        &["tenant_id", "team"],
        &["tenant_id", "team", "project"],
        &["tenant_id", "user_id"],
        &["tenant_id", "api_key_id"],
        &["tenant_id", "model"],
        &["tenant_id", "team", "model"],
        &["tenant_id", "team", "project", "model"],
        &["model"],
    ];

    fn value_of(field: &str, pick: u8) -> &'static str {
        match (field, pick % 2) {
            ("tenant_id", 0) => "acme",
            ("tenant_id", _) => "globex",
            ("team", 0) => "search",
            ("team", _) => "ads",
            ("project", 0) => "p1",
            ("project", _) => "p2",
            ("user_id", 0) => "u1",
            ("user_id", _) => "u2",
            ("api_key_id", 0) => "k1",
            ("api_key_id", _) => "k2",
            ("model", 0) => "gpt-4o",
            _ => "o1",
        }
    }

    proptest! {
        /// The decision equals a brute-force reading of the precedence rules over every scope
        /// (throttles at fraction 0 or 1 so that the expected answer does not depend on counters).
        #[test]
        fn decision_follows_the_precedence(
            scopes in prop::collection::vec((0usize..SHAPES.len(), any::<[u8; 5]>(), state_strategy(), any::<bool>(), any::<bool>()), 0..12),
            call in any::<[u8; 6]>(),
            closed in any::<bool>(),
        ) {
            let policy = RouterPolicy { stale: if closed { StalePolicy::FailClosed } else { StalePolicy::FailOpen }, ..RouterPolicy::default() };
            let mut signals = BTreeMap::new();
            for (i, (shape, picks, state, stale, admit_all)) in scopes.into_iter().enumerate() {
                let fields: Vec<(&str, &str)> = SHAPES[shape].iter().enumerate().map(|(j, f)| (*f, value_of(f, picks[j % 5]))).collect();
                let mut s = signal(&fields, state, i as i64 + 1);
                if stale { s.valid_until = t(NOW - 10); }
                if state == BudgetState::Throttle { s.throttle_fraction_ppm = Some(if admit_all { 1_000_000 } else { 0 }); }
                signals.insert(s.scope.clone(), s); // same key: the later (higher sequence) wins
            }
            let ctx = CallContext::tenant(value_of("tenant_id", call[0]))
                .team(value_of("team", call[1]))
                .project(value_of("project", call[2]))
                .user(value_of("user_id", call[3]))
                .api_key(value_of("api_key_id", call[4]));
            let model = value_of("model", call[5]);
            let mut table = SignalTable::new(policy);
            for s in signals.values() { table.apply(s.clone()); }
            let got = table.snapshot().decide_at(&ctx, model, NOW_US);

            let applies = |s: &BudgetSignal| s.scope_fields.iter().all(|(k, v)| match k.as_str() {
                "tenant_id" => v == ctx.tenant_id,
                "team" => ctx.team == Some(v.as_str()),
                "project" => ctx.project == Some(v.as_str()),
                "user_id" => ctx.user_id == Some(v.as_str()),
                "api_key_id" => ctx.api_key_id == Some(v.as_str()),
                "model" => v == model,
                _ => false,
            });
            let live: Vec<&BudgetSignal> = signals.values().filter(|s| applies(s)).collect();
            let stale = |s: &BudgetSignal| s.valid_until <= t(NOW);
            let expected_kind = if live.iter().any(|s| (closed && stale(s)) || (!stale(s) && s.state == BudgetState::Block)) {
                "block"
            } else if live.iter().any(|s| !stale(s) && s.state == BudgetState::Throttle && s.throttle_fraction_ppm == Some(0)) {
                "throttle"
            } else if live.iter().any(|s| !stale(s) && s.state == BudgetState::Reroute && s.reroute.contains_key(model)) {
                "reroute"
            } else {
                "allow"
            };
            let got_kind = match got { Decision::Allow => "allow", Decision::Reroute { .. } => "reroute", Decision::Throttle { .. } => "throttle", Decision::Block { .. } => "block" };
            prop_assert_eq!(got_kind, expected_kind);
        }

        /// Applying records in any order leaves each scope at its highest sequence.
        #[test]
        fn highest_sequence_wins_in_any_order(order in Just((1..=20i64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut table = SignalTable::new(RouterPolicy::default());
            for seq in &order {
                let state = BudgetState::ALL[(*seq as usize) % 5];
                table.apply(signal(&[("tenant_id", "acme")], state, *seq));
            }
            let snap = table.snapshot();
            let s = snap.signal("day:tenant_id=acme").unwrap();
            prop_assert_eq!(s.sequence, 20);
            prop_assert_eq!(s.state, BudgetState::ALL[20 % 5]);
        }
    }
}
