//! One lease budget's allowance in this router: the leases held, the reservations of the calls
//! admitted under them, and what to ask the enforcer next.
//!
//! Decisions lock the account briefly ([`LeaseAccount::reserve`]); the client thread builds
//! requests and returns ([`LeaseAccount::maintain`]) and applies grants
//! ([`LeaseAccount::apply_grant`]). Times are the router's monotonic clock; a lease's lifetime is
//! measured from when its grant arrived, minus a guard, so it ends here before it ends at the
//! enforcer.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use ledger_core::lease::{LeaseGrant, LeaseRequest, LeaseReturn, LeaseStatus};
use ledger_core::Money;

use super::{LeaseSettings, Part};

#[derive(Debug)]
struct HeldLease {
    id: Arc<str>,
    grant: i128,
    used: i128,
    /// Admits calls (false once superseded by a newer lease, expired, or given up).
    open: bool,
    expires: Instant,
    call_timeout: Duration,
    in_flight: u32,
    last_admit: Instant,
    /// A not-done return was sent (what it used then).
    stopped_sent: bool,
}

/// The enforcer's last answer, as it bears on the next call.
#[derive(Debug, Clone)]
enum Answer {
    None,
    Wait { until: Instant, retry: Duration },
    Exhausted { until: Instant, reason: Arc<str> },
    NotLeased { until: Instant },
}

#[derive(Debug)]
struct Pending {
    request: LeaseRequest,
    sent: Instant,
    first_sent: Instant,
}

#[derive(Debug)]
struct State {
    leases: Vec<HeldLease>,
    /// A call found no room: ask (the least useful amount).
    want: Option<i128>,
    pending: Option<Pending>,
    answer: Answer,
    /// The enforcer did not answer within the grant timeout (since then).
    unreachable_since: Option<Instant>,
    /// What was last asked for (the low watermark is a share of it).
    asked: i128,
    /// Estimates admitted since `rate_since` (for sizing the next request).
    rate_since: Instant,
    rate_usd: i128,
    returns: Vec<LeaseReturn>,
}

/// Why a call could not reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No open lease covers it; a grant is (or will be) asked for.
    Empty,
    /// The enforcer said WAIT.
    Wait(Duration),
    /// The enforcer said EXHAUSTED.
    Exhausted(Arc<str>),
    /// The enforcer does not answer.
    Unreachable,
}

/// Outcome of a reservation.
#[derive(Debug, Clone)]
pub(crate) enum Reserved {
    /// Reserved under a lease.
    Part(Part),
    /// The enforcer said this budget is not leased: the call needs no reservation.
    NotLeased,
}

/// One lease budget's allowance (see the module docs).
#[derive(Debug)]
pub(crate) struct LeaseAccount {
    pub(crate) key: Arc<str>,
    state: Mutex<State>,
}

impl LeaseAccount {
    pub(crate) fn new(key: Arc<str>, now: Instant) -> LeaseAccount {
        LeaseAccount {
            key,
            state: Mutex::new(State {
                leases: Vec::new(),
                want: None,
                pending: None,
                answer: Answer::None,
                unreachable_since: None,
                asked: 0,
                rate_since: now,
                rate_usd: 0,
                returns: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `estimate` for one call at `now`. Returns whether the client thread should be
    /// woken (a request is wanted) beside the outcome.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        estimate: i128,
        now: Instant,
        settings: &LeaseSettings,
    ) -> (Result<Reserved, Refusal>, bool) {
        let mut s = self.lock();
        for l in s.leases.iter_mut().filter(|l| l.open && now >= l.expires) {
            l.open = false;
        }
        if matches!(s.answer, Answer::NotLeased { until } if now < until) {
            return (Ok(Reserved::NotLeased), false);
        }
        let room = s.leases.iter_mut().filter(|l| l.open && l.grant - l.used >= estimate).min_by_key(|l| l.expires);
        if let Some(l) = room {
            l.used += estimate;
            l.in_flight += 1;
            l.last_admit = now;
            let part = Part { account: self.clone(), lease: l.id.clone(), estimate };
            s.rate_usd += estimate;
            let open: i128 = s.leases.iter().filter(|l| l.open).map(|l| (l.grant - l.used).max(0)).sum();
            let low = s.asked / 100 * i128::from(settings.low_watermark_percent);
            let wake = open <= low.max(estimate) && s.pending.is_none() && s.want.is_none();
            if wake {
                s.want = Some(estimate);
            }
            return (Ok(Reserved::Part(part)), wake);
        }
        let may_ask = match &s.answer {
            Answer::Wait { until, .. } | Answer::Exhausted { until, .. } | Answer::NotLeased { until } => now >= *until,
            Answer::None => true,
        };
        let wake = may_ask && s.pending.is_none() && s.want.is_none();
        if wake {
            s.want = Some(estimate);
        } else if let Some(w) = s.want.as_mut() {
            *w = (*w).max(estimate);
        }
        let refusal = match &s.answer {
            Answer::Exhausted { until, reason } if now < *until => Refusal::Exhausted(reason.clone()),
            Answer::Wait { until, retry } if now < *until => Refusal::Wait(*retry),
            _ if s.unreachable_since.is_some() => Refusal::Unreachable,
            _ => Refusal::Empty,
        };
        (Err(refusal), wake)
    }

    /// The call of `part` was made and cost `actual` (or was not made: `actual` zero).
    pub(crate) fn complete(&self, part: &Part, actual: i128) {
        let mut s = self.lock();
        if let Some(l) = s.leases.iter_mut().find(|l| l.id == part.lease) {
            l.used += actual - part.estimate;
            l.in_flight = l.in_flight.saturating_sub(1);
        }
    }

    /// Applies an answer of the enforcer; false when it answers no request of this account.
    pub(crate) fn apply_grant(&self, grant: &LeaseGrant, now: Instant) -> bool {
        let mut s = self.lock();
        if s.pending.as_ref().is_none_or(|p| p.request.request_id != grant.request_id) {
            return false;
        }
        s.pending = None;
        s.unreachable_since = None;
        let retry = Duration::from_millis(u64::try_from(grant.retry_after_ms).unwrap_or(0).max(1));
        match grant.status {
            LeaseStatus::Granted => {
                let lifetime = (grant.expires_at - grant.granted_at).to_std().unwrap_or_default();
                let guard = (lifetime / 20).max(Duration::from_millis(50));
                for l in s.leases.iter_mut() {
                    l.open = false;
                }
                s.leases.push(HeldLease {
                    id: Arc::from(grant.lease_id.as_str()),
                    grant: grant.amount_usd.picos(),
                    used: 0,
                    open: true,
                    expires: now + lifetime.saturating_sub(guard),
                    call_timeout: Duration::from_millis(u64::try_from(grant.call_timeout_ms).unwrap_or(0)),
                    in_flight: 0,
                    last_admit: now,
                    stopped_sent: false,
                });
                s.answer = Answer::None;
                s.rate_since = now;
                s.rate_usd = 0;
            }
            LeaseStatus::Wait => s.answer = Answer::Wait { until: now + retry, retry },
            LeaseStatus::Exhausted => {
                s.answer = Answer::Exhausted { until: now + retry, reason: Arc::from(grant.reason.as_str()) }
            }
            LeaseStatus::NotLeased => s.answer = Answer::NotLeased { until: now + Duration::from_secs(5) },
        }
        true
    }

    /// What to send now, if anything: returns of leases that stopped admitting calls, the
    /// request a call wanted, or a request resent after the grant timeout.
    pub(crate) fn maintain(
        &self,
        now: Instant,
        settings: &LeaseSettings,
        instance: &str,
        new_id: impl FnOnce() -> String,
    ) -> (Option<LeaseRequest>, bool) {
        let mut s = self.lock();
        let mut returns = std::mem::take(&mut s.returns);
        s.leases.retain_mut(|l| {
            if l.open && now >= l.expires {
                l.open = false;
            }
            if l.open {
                return true;
            }
            let done = l.in_flight == 0 || now >= l.last_admit + l.call_timeout;
            if done || !l.stopped_sent {
                returns.push(LeaseReturn { lease_id: l.id.to_string(), used_usd: Money::from_picos(l.used.max(0)), done });
                l.stopped_sent = true;
            }
            !done
        });
        if let Some(p) = s.pending.as_mut() {
            if now.duration_since(p.sent) >= Duration::from_millis(settings.grant_timeout_ms) {
                p.sent = now;
                p.request.returns.append(&mut returns);
                let since = p.first_sent;
                let request = p.request.clone();
                s.unreachable_since.get_or_insert(since);
                return (Some(request), true);
            }
        }
        if s.pending.is_none() {
            if let Some(least) = s.want.take() {
                let elapsed = now.duration_since(s.rate_since).max(Duration::from_millis(50));
                let per_target =
                    s.rate_usd.saturating_mul(i128::from(u32::try_from(settings.lease_target_ms).unwrap_or(u32::MAX)))
                        / i128::try_from(elapsed.as_millis()).unwrap_or(1).max(1);
                let wanted = per_target.max(least.saturating_mul(i128::from(settings.min_lease_calls)));
                let request = LeaseRequest {
                    request_id: new_id(),
                    instance_id: instance.to_owned(),
                    budget: self.key.to_string(),
                    wanted_usd: Money::from_picos(wanted),
                    least_usd: Money::from_picos(least),
                    returns,
                    sent_at: Utc::now(),
                };
                s.asked = wanted;
                s.pending = Some(Pending { request: request.clone(), sent: now, first_sent: now });
                return (Some(request), false);
            }
        }
        if returns.is_empty() {
            return (None, false);
        }
        let request = LeaseRequest {
            request_id: new_id(),
            instance_id: instance.to_owned(),
            budget: self.key.to_string(),
            wanted_usd: Money::ZERO,
            least_usd: Money::ZERO,
            returns,
            sent_at: Utc::now(),
        };
        (Some(request), false)
    }

    /// Stops every lease (shutdown): the next [`LeaseAccount::maintain`] returns them, done
    /// when no call is in flight (else the enforcer's expiry rule waits for those calls).
    pub(crate) fn close_all(&self) {
        for l in self.lock().leases.iter_mut() {
            l.open = false;
        }
    }

    /// Allowance open to new calls.
    pub(crate) fn open_allowance(&self) -> Money {
        Money::from_picos(self.lock().leases.iter().filter(|l| l.open).map(|l| (l.grant - l.used).max(0)).sum())
    }
}

#[cfg(test)]
#[path = "account_tests.rs"]
mod tests;
