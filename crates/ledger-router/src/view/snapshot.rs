//! The published [`Snapshot`]: the scopes indexed by tenant, and the routing decision.

use std::sync::Arc;

use hashbrown::HashMap;
use ledger_core::signal::{BudgetSignal, BudgetState};

use super::scope::ScopeEntry;
use super::{CallContext, Decision, RouterPolicy, StalePolicy};
use crate::lease::{CallDecision, CallSize, LeaseRegistry};

/// The scopes of one tenant (or of no tenant), ready for deciding.
#[derive(Debug)]
pub(super) struct ScopeList {
    /// Every scope, for inspection and the stale check.
    pub(super) all: Box<[Arc<ScopeEntry>]>,
    /// The scopes that restrict calls (THROTTLE, REROUTE, BLOCK), in decision order.
    pub(super) restrictive: Box<[Arc<ScopeEntry>]>,
    /// The earliest `valid_until` of `all`: before it no scope of the list is stale.
    pub(super) earliest_valid_until_us: i64,
    /// Some scope of the list is a lease budget.
    pub(super) leased: bool,
}

impl Default for ScopeList {
    fn default() -> Self {
        ScopeList { all: Box::default(), restrictive: Box::default(), earliest_valid_until_us: i64::MAX, leased: false }
    }
}

/// An immutable view of every scope's latest signal; answers routing decisions.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(super) policy: RouterPolicy,
    pub(super) by_tenant: HashMap<Arc<str>, Arc<ScopeList>>,
    pub(super) any_tenant: Arc<ScopeList>,
    pub(super) scopes: usize,
    pub(super) leases: Arc<LeaseRegistry>,
}

impl Snapshot {
    /// The decision for a call of `ctx` asking for `requested_model` at `now` (microseconds
    /// since the Unix epoch, compared with the signals' `valid_until`).
    ///
    /// Side effect: a THROTTLE scope that applies counts the call in its admission gate.
    pub fn decide_at(&self, ctx: &CallContext<'_>, requested_model: &str, now_us: i64) -> Decision {
        self.decide_with_clock(ctx, requested_model, || now_us)
    }

    /// The decision for a call of `ctx` asking for `requested_model` of `size`, at `now_us`:
    /// under lease budgets it also reserves the call's estimate (see [`crate::Router::complete`]).
    pub fn decide_call_at(&self, ctx: &CallContext<'_>, requested_model: &str, size: &CallSize<'_>, now_us: i64) -> CallDecision {
        self.decide_call_with_clock(ctx, requested_model, size, || now_us)
    }

    /// [`Snapshot::decide_at`] that reads the clock only when some scope applies to the tenant.
    #[inline]
    pub(crate) fn decide_with_clock(&self, ctx: &CallContext<'_>, model: &str, clock: impl FnOnce() -> i64) -> Decision {
        self.decide_call_with_clock(ctx, model, &CallSize::default(), clock).decision
    }

    /// [`Snapshot::decide_call_at`] that reads the clock only when some scope applies.
    #[inline]
    pub(crate) fn decide_call_with_clock(
        &self,
        ctx: &CallContext<'_>,
        model: &str,
        size: &CallSize<'_>,
        clock: impl FnOnce() -> i64,
    ) -> CallDecision {
        let plain = |decision| CallDecision { decision, reservation: None };
        let tenant = self.by_tenant.get(ctx.tenant_id).map(|l| &**l);
        let global = &*self.any_tenant;
        let fail_closed = self.policy.stale == StalePolicy::FailClosed;
        let restrictive = tenant.map_or(&[][..], |l| &l.restrictive);
        // Under fail-open, OK and NOTIFY scopes cannot change a decision: no clock needed.
        if restrictive.is_empty()
            && global.restrictive.is_empty()
            && (!fail_closed || (tenant.is_none() && global.all.is_empty()))
        {
            return plain(Decision::Allow);
        }
        let now_us = clock();
        if fail_closed
            && (tenant.is_some_and(|l| now_us >= l.earliest_valid_until_us) || now_us >= global.earliest_valid_until_us)
        {
            let all = tenant.map_or(&[][..], |l| &l.all);
            if let Some(e) = all.iter().chain(global.all.iter()).find(|e| e.is_stale(now_us) && e.applies(ctx, model)) {
                return plain(Decision::Block { reason: e.stale_reason.clone(), scope: e.key.clone() });
            }
        }
        let applicable =
            || restrictive.iter().chain(global.restrictive.iter()).filter(|e| !e.is_stale(now_us) && e.applies(ctx, model));
        for e in applicable() {
            if e.state() == BudgetState::Block {
                return plain(Decision::Block { reason: e.block_reason.clone(), scope: e.key.clone() });
            }
        }
        for e in applicable() {
            if e.is_throttled() {
                if let Err(retry_after) = e.admit(now_us) {
                    return plain(Decision::Throttle { retry_after, scope: e.key.clone() });
                }
            }
        }
        let mut decision = Decision::Allow;
        for e in applicable() {
            if e.state() == BudgetState::Reroute {
                if let Some((from, to)) = e.reroute_of(model) {
                    decision = Decision::Reroute { to: to.clone(), from: from.clone(), scope: e.key.clone() };
                    break;
                }
            }
        }
        if !(tenant.is_some_and(|l| l.leased) || global.leased) {
            return plain(decision);
        }
        let to_call = decision.model_to_call(model).unwrap_or(model);
        let leased = applicable().filter_map(|e| e.lease.as_ref().map(|a| (a, &e.key)));
        match self.leases.reserve(leased, to_call, size, now_us) {
            Ok(reservation) => CallDecision { decision, reservation },
            Err(refused) => plain(refused),
        }
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
        self.by_tenant.values().chain(std::iter::once(&self.any_tenant)).flat_map(|list| list.all.iter().map(|e| &e.signal))
    }

    /// The policy the snapshot decides with.
    pub fn policy(&self) -> RouterPolicy {
        self.policy
    }
}
