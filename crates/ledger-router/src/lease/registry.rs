//! The router's lease accounts by budget, the estimator, and what a refused reservation means
//! for the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ledger_core::Money;

use super::account::{LeaseAccount, Refusal, Reserved};
use super::estimate::Estimator;
use super::stats::Counters;
use super::{CallSize, EmptyPolicy, LeaseSettings, Reservation};
use crate::view::StalePolicy;
use crate::Decision;

/// Shared by the signal table (which gives lease scopes their account), decisions and the
/// lease client.
#[derive(Debug)]
pub(crate) struct LeaseRegistry {
    pub(crate) settings: LeaseSettings,
    pub(crate) instance: Arc<str>,
    pub(crate) estimator: Estimator,
    pub(crate) counters: Counters,
    accounts: Mutex<HashMap<Arc<str>, Arc<LeaseAccount>>>,
    /// The lease client's sender thread, woken when a request is wanted.
    waker: OnceLock<std::thread::Thread>,
}

impl Default for LeaseRegistry {
    fn default() -> Self {
        LeaseRegistry::new(LeaseSettings::default(), Estimator::new(None, 0, Default::default()))
    }
}

impl LeaseRegistry {
    pub(crate) fn new(settings: LeaseSettings, estimator: Estimator) -> LeaseRegistry {
        let instance: Arc<str> = match &settings.instance_id {
            Some(id) => Arc::from(id.as_str()),
            None => Arc::from(format!("router-{}", uuid::Uuid::now_v7()).as_str()),
        };
        LeaseRegistry {
            settings,
            instance,
            estimator,
            counters: Counters::default(),
            accounts: Mutex::new(HashMap::new()),
            waker: OnceLock::new(),
        }
    }

    /// The account of budget `key`, created on first use.
    pub(crate) fn account(&self, key: &str) -> Arc<LeaseAccount> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = accounts.get(key) {
            return a.clone();
        }
        let key: Arc<str> = Arc::from(key);
        let account = Arc::new(LeaseAccount::new(key.clone(), Instant::now()));
        accounts.insert(key, account.clone());
        account
    }

    /// The account of budget `key`, if it has one.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<LeaseAccount>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Every account.
    pub(crate) fn accounts(&self) -> Vec<Arc<LeaseAccount>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub(crate) fn set_waker(&self, thread: std::thread::Thread) {
        let _ = self.waker.set(thread);
    }

    fn wake(&self) {
        if let Some(t) = self.waker.get() {
            t.unpark();
        }
    }

    /// Reserves the estimate of a call of `model` on every account of `leased` (the call's
    /// lease scopes, with their keys): the reservation, `None` when nothing needs one, or the
    /// decision that refuses the call.
    pub(crate) fn reserve<'e>(
        &self,
        leased: impl Iterator<Item = (&'e Arc<LeaseAccount>, &'e Arc<str>)>,
        model: &str,
        size: &CallSize<'_>,
        now_us: i64,
    ) -> Result<Option<Reservation>, Decision> {
        let mut leased = leased.peekable();
        let Some(&(_, first_scope)) = leased.peek() else { return Ok(None) };
        let estimate = match self.estimator.estimate(model, size, now_us) {
            Ok(e) => e,
            Err(e) => return self.unleased_or(first_scope, || Arc::from(format!("budget {first_scope}: {e}"))).map(|()| None),
        };
        let now = Instant::now();
        let mut parts = Vec::new();
        for (account, scope) in leased {
            let (reserved, wake) = account.reserve(estimate.picos(), now, &self.settings);
            if wake {
                self.wake();
            }
            let refused = match reserved {
                Ok(Reserved::Part(p)) => {
                    parts.push(p);
                    continue;
                }
                Ok(Reserved::NotLeased) => {
                    Counters::inc(&self.counters.unleased);
                    Ok(())
                }
                Err(Refusal::Unreachable) => self.unleased_or(scope, || {
                    Arc::from(format!(
                        "budget {scope}: the enforcer has not answered a lease request within {} ms; the router fails closed",
                        self.settings.grant_timeout_ms
                    ))
                }),
                Err(refusal) => Err(self.refusal(refusal, scope)),
            };
            if let Err(decision) = refused {
                for p in &parts {
                    p.account.complete(p, 0);
                }
                return Err(decision);
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Counters::inc(&self.counters.reserved);
        Ok(Some(Reservation { parts, estimate }))
    }

    /// Fail open (count the call as unleased) or closed (the `when_empty` decision).
    fn unleased_or(&self, scope: &Arc<str>, reason: impl FnOnce() -> Arc<str>) -> Result<(), Decision> {
        if self.settings.unreachable == StalePolicy::FailOpen {
            Counters::inc(&self.counters.unleased);
            return Ok(());
        }
        Counters::inc(&self.counters.refused_other);
        Err(self.empty(scope, reason()))
    }

    fn empty(&self, scope: &Arc<str>, reason: Arc<str>) -> Decision {
        match self.settings.when_empty {
            EmptyPolicy::Throttle => {
                Decision::Throttle { retry_after: Duration::from_millis(self.settings.empty_retry_ms), scope: scope.clone() }
            }
            EmptyPolicy::Block => Decision::Block { reason, scope: scope.clone() },
        }
    }

    fn refusal(&self, refusal: Refusal, scope: &Arc<str>) -> Decision {
        match refusal {
            Refusal::Exhausted(reason) => {
                Counters::inc(&self.counters.refused_exhausted);
                Decision::Block { reason, scope: scope.clone() }
            }
            Refusal::Wait(retry_after) => {
                Counters::inc(&self.counters.refused_empty);
                Decision::Throttle { retry_after, scope: scope.clone() }
            }
            Refusal::Empty | Refusal::Unreachable => {
                Counters::inc(&self.counters.refused_empty);
                self.empty(scope, Arc::from(format!("budget {scope}: no allowance yet; waiting for the enforcer's grant")))
            }
        }
    }

    /// The call of `reservation` cost `actual` (`None`: it was not made).
    pub(crate) fn complete(&self, reservation: &Reservation, actual: Option<Money>) {
        let cost = actual.map_or(0, Money::picos);
        for p in &reservation.parts {
            p.account.complete(p, cost);
        }
        if let Some(actual) = actual {
            self.counters.estimate_error(Money::from_picos(reservation.estimate.picos() - actual.picos()));
        }
    }
}
