//! The enforcer's lease book (docs/budgets.md, "Leases"): every lease granted, what it holds or
//! used, and the grant rule that keeps, for each lease budget and period,
//!
//! ```text
//! granted + ledger spend + Σ active held + Σ closed-unsettled used  ≤  limit
//! ```
//!
//! Pure and clock-free: every method that needs the time takes `now` (the enforcer's clock).
//! The runtime feeds it requests, asks it to expire leases, and settles closed leases once the
//! ledger is known to include everything up to an instant. The book is rebuilt after a restart
//! from the grants and requests topics ([`LeaseBook::restore_grant`],
//! [`LeaseBook::restore_request`], [`LeaseBook::finish_restore`]).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::period::PeriodWindow;
use crate::lease::{LeaseGrant, LeaseRequest, LeaseStatus};
use crate::money::Money;

/// The lease settings the book applies (from `[enforcer.leases]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRules {
    /// A lease's lifetime.
    pub ttl: Duration,
    /// The longest call: an expired lease settles this long after its expiry (plus the margin).
    pub call_timeout: Duration,
    /// Added to a final return before it may settle.
    pub settle_margin: Duration,
    /// Most of the limit one grant may take, in percent (1..=100).
    pub max_grant_percent: u32,
    /// `retry_after_ms` of a `WAIT` answer.
    pub wait_retry: Duration,
}

impl Default for LeaseRules {
    fn default() -> Self {
        LeaseRules {
            ttl: Duration::seconds(10),
            call_timeout: Duration::seconds(30),
            settle_margin: Duration::seconds(1),
            max_grant_percent: 10,
            wait_retry: Duration::milliseconds(200),
        }
    }
}

/// What the enforcer knows of a lease budget when it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetFacts {
    /// The USD limit.
    pub limit: Money,
    /// Ledger spend in the current period.
    pub spend: Money,
    /// The current period.
    pub period: PeriodWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Counts `held` until it expires or is returned as done.
    Active { expires_at: DateTime<Utc> },
    /// Counts `held` (what it used) until the ledger includes everything up to `settle_at`.
    Closed { settle_at: DateTime<Utc> },
}

#[derive(Debug, Clone)]
struct Lease {
    instance: String,
    budget: String,
    period_start: DateTime<Utc>,
    /// Active: the grant, or what a not-done return said it used. Closed: what it used.
    held: i128,
    state: State,
}

/// Outstanding allowance of one budget in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outstanding {
    /// Active leases.
    pub active: u32,
    /// What they hold.
    pub held: Money,
    /// Closed leases not yet settled.
    pub unsettled: u32,
    /// What they used.
    pub used: Money,
}

impl Outstanding {
    /// Held plus used: what the ledger spend may still grow by (before estimation error).
    pub fn total(&self) -> Money {
        Money::from_picos(self.held.picos().saturating_add(self.used.picos()))
    }
}

/// Every lease of every lease budget (see the module docs).
#[derive(Debug)]
pub struct LeaseBook {
    rules: LeaseRules,
    leases: HashMap<String, Lease>,
    /// Granted answers by request id, sent again when a request is retried.
    answered: HashMap<String, LeaseGrant>,
    /// Budget -> instance -> when it last asked.
    askers: HashMap<String, HashMap<String, DateTime<Utc>>>,
}

impl LeaseBook {
    /// An empty book.
    pub fn new(rules: LeaseRules) -> LeaseBook {
        LeaseBook { rules, leases: HashMap::new(), answered: HashMap::new(), askers: HashMap::new() }
    }

    /// The rules in force.
    pub fn rules(&self) -> LeaseRules {
        self.rules
    }

    /// Applies a request read at `now`: its returns, then, when it asks for an allowance, the
    /// answer to publish. `facts` is `None` when the policy has no lease budget of that key.
    pub fn handle(&mut self, request: &LeaseRequest, facts: Option<BudgetFacts>, now: DateTime<Utc>) -> Option<LeaseGrant> {
        self.apply_returns(request, now + self.rules.settle_margin);
        (request.wanted_usd.picos() > 0 || request.least_usd.picos() > 0).then(|| self.answer(request, facts, now))
    }

    fn apply_returns(&mut self, request: &LeaseRequest, settle_at: DateTime<Utc>) {
        for r in &request.returns {
            let Some(lease) = self.leases.get_mut(&r.lease_id) else { continue };
            if lease.instance != request.instance_id {
                continue;
            }
            match (lease.state, r.done) {
                (State::Active { .. }, true) => {
                    lease.held = r.used_usd.picos();
                    lease.state = State::Closed { settle_at };
                }
                (State::Active { .. }, false) => lease.held = r.used_usd.picos(),
                // An expired lease returned late: what the router says it used, settled no
                // earlier than the expiry rule said.
                (State::Closed { settle_at: was }, true) => {
                    lease.held = r.used_usd.picos();
                    lease.state = State::Closed { settle_at: was.max(settle_at) };
                }
                (State::Closed { .. }, false) => {}
            }
        }
    }

    /// A `WAIT` answer to `request` (e.g. while a period rollover is not evaluated yet).
    pub fn wait(&self, request: &LeaseRequest, now: DateTime<Utc>, reason: String) -> LeaseGrant {
        LeaseGrant { status: LeaseStatus::Wait, reason, ..self.base_answer(request, now) }
    }

    fn base_answer(&self, request: &LeaseRequest, now: DateTime<Utc>) -> LeaseGrant {
        LeaseGrant {
            request_id: request.request_id.clone(),
            instance_id: request.instance_id.clone(),
            budget: request.budget.clone(),
            status: LeaseStatus::NotLeased,
            lease_id: String::new(),
            amount_usd: Money::ZERO,
            granted_at: now,
            expires_at: now,
            call_timeout_ms: self.rules.call_timeout.num_milliseconds(),
            retry_after_ms: self.rules.wait_retry.num_milliseconds(),
            reason: String::new(),
        }
    }

    fn answer(&mut self, request: &LeaseRequest, facts: Option<BudgetFacts>, now: DateTime<Utc>) -> LeaseGrant {
        let mut grant = self.base_answer(request, now);
        let Some(facts) = facts else {
            grant.reason = format!("{} is not a lease budget of the enforcer's policy: its signals apply", request.budget);
            return grant;
        };
        if let Some(previous) = self.answered.get(&request.request_id) {
            return previous.clone();
        }
        let askers = self.askers.entry(request.budget.clone()).or_default();
        askers.insert(request.instance_id.clone(), now);
        let since = now - self.rules.ttl;
        askers.retain(|_, at| *at >= since);
        let n = askers.len().max(1) as i128;

        let out = self.outstanding(&request.budget, facts.period.start);
        let (limit, spend) = (facts.limit.picos(), facts.spend.picos());
        let grantable = limit.saturating_sub(spend).saturating_sub(out.total().picos());
        let least = request.least_usd.picos().max(1);
        let wanted = request.wanted_usd.picos().max(least);
        let cap = limit / 100 * i128::from(self.rules.max_grant_percent.clamp(1, 100));
        let mut amount = wanted.min(grantable / n).min(cap);
        if amount < least && grantable >= least {
            amount = least;
        }
        if amount >= least {
            let expires_at = (now + self.rules.ttl).min(facts.period.end);
            grant.status = LeaseStatus::Granted;
            grant.lease_id = request.request_id.clone();
            grant.amount_usd = Money::from_picos(amount);
            grant.expires_at = expires_at;
            grant.retry_after_ms = 0;
            grant.reason = format!("granted of {} USD grantable", Money::from_picos(grantable));
            self.leases.insert(
                request.request_id.clone(),
                Lease {
                    instance: request.instance_id.clone(),
                    budget: request.budget.clone(),
                    period_start: facts.period.start,
                    held: amount,
                    state: State::Active { expires_at },
                },
            );
            self.answered.insert(request.request_id.clone(), grant.clone());
        } else if limit.saturating_sub(spend) < least {
            grant.status = LeaseStatus::Exhausted;
            grant.retry_after_ms = self.rules.ttl.num_milliseconds();
            grant.reason = format!(
                "budget {} is spent: {} of {} USD in the ledger, and the next call needs {} USD",
                request.budget, facts.spend, facts.limit, request.least_usd
            );
        } else {
            grant.status = LeaseStatus::Wait;
            grant.reason = format!(
                "budget {}: {} USD held by {} active and {} unsettled leases, {} USD in the ledger, of {} USD",
                request.budget,
                out.total(),
                out.active,
                out.unsettled,
                facts.spend,
                facts.limit
            );
        }
        grant
    }

    /// Closes every active lease past its expiry: it counts what it holds until it settles
    /// `call_timeout + settle_margin` after the expiry. Returns how many expired.
    pub fn expire(&mut self, now: DateTime<Utc>) -> usize {
        let after = self.rules.call_timeout + self.rules.settle_margin;
        let mut n = 0;
        for lease in self.leases.values_mut() {
            if let State::Active { expires_at } = lease.state {
                if expires_at <= now {
                    lease.state = State::Closed { settle_at: expires_at + after };
                    n += 1;
                }
            }
        }
        n
    }

    /// Forgets every closed lease whose settle point is at or before `covered` (the ledger
    /// spend includes everything up to it). Returns how many settled.
    pub fn settle(&mut self, covered: DateTime<Utc>) -> usize {
        let before = self.leases.len();
        self.leases.retain(|_, l| !matches!(l.state, State::Closed { settle_at } if settle_at <= covered));
        let leases = &self.leases;
        self.answered.retain(|id, _| leases.contains_key(id));
        before - self.leases.len()
    }

    /// The earliest settle point of a closed lease: settlement is pending until the ledger is
    /// known to cover it.
    pub fn earliest_settle_point(&self) -> Option<DateTime<Utc>> {
        self.leases
            .values()
            .filter_map(|l| match l.state {
                State::Closed { settle_at } => Some(settle_at),
                State::Active { .. } => None,
            })
            .min()
    }

    /// What the leases of `budget` in the period starting at `period_start` hold and used.
    pub fn outstanding(&self, budget: &str, period_start: DateTime<Utc>) -> Outstanding {
        let mut out = Outstanding::default();
        let (mut held, mut used) = (0i128, 0i128);
        for l in self.leases.values().filter(|l| l.budget == budget && l.period_start == period_start) {
            match l.state {
                State::Active { .. } => {
                    out.active += 1;
                    held = held.saturating_add(l.held.max(0));
                }
                State::Closed { .. } => {
                    out.unsettled += 1;
                    used = used.saturating_add(l.held.max(0));
                }
            }
        }
        out.held = Money::from_picos(held);
        out.used = Money::from_picos(used);
        out
    }

    /// Every budget with a lease in the book.
    pub fn budgets(&self) -> Vec<String> {
        let mut b: Vec<String> = self.leases.values().map(|l| l.budget.clone()).collect();
        b.sort_unstable();
        b.dedup();
        b
    }

    /// Leases in the book (active and closed-unsettled).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True when the book holds no lease.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Rebuild: a grant read back from the grants topic (any order with the requests).
    pub fn restore_grant(&mut self, grant: &LeaseGrant, period_start: DateTime<Utc>) {
        if grant.status != LeaseStatus::Granted || grant.lease_id.is_empty() {
            return;
        }
        self.leases.entry(grant.lease_id.clone()).or_insert_with(|| Lease {
            instance: grant.instance_id.clone(),
            budget: grant.budget.clone(),
            period_start,
            held: grant.amount_usd.picos(),
            state: State::Active { expires_at: grant.expires_at },
        });
        self.answered.insert(grant.request_id.clone(), grant.clone());
    }

    /// Rebuild: a request read back from the requests topic (appended at `appended`), after
    /// every grant was restored. Its returns apply as when it was read live; a restarted
    /// enforcer raises the settle points with [`LeaseBook::finish_restore`].
    pub fn restore_request(&mut self, request: &LeaseRequest, appended: DateTime<Utc>) {
        self.apply_returns(request, appended + self.rules.settle_margin);
    }

    /// Ends a rebuild at `now`: expired leases close, and no closed lease settles before the
    /// ledger covers `now + settle_margin` (the processor's progress before the restart is not
    /// known, so every closed lease waits for what the usage topic holds now).
    pub fn finish_restore(&mut self, now: DateTime<Utc>) {
        self.expire(now);
        let floor = now + self.rules.settle_margin;
        for lease in self.leases.values_mut() {
            if let State::Closed { settle_at } = &mut lease.state {
                *settle_at = (*settle_at).max(floor);
            }
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
