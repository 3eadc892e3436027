//! Scope matching: one scope's latest signal, prepared for deciding (which calls it covers,
//! the throttle in force, the reroute map, the reasons a refused call is given).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ledger_core::signal::{BudgetSignal, BudgetState, Enforcement};

use super::{CallContext, RouterPolicy};
use crate::gate::{FractionGate, RateGate};
use crate::lease::account::LeaseAccount;
use crate::lease::LeaseRegistry;

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
pub(super) struct ScopeEntry {
    pub(super) signal: BudgetSignal,
    pub(super) key: Arc<str>,
    pub(super) tenant: Option<Arc<str>>,
    /// Conditions besides the tenant, all of which must hold.
    conditions: Box<[(Field, Box<str>)]>,
    pub(super) valid_until_us: i64,
    retry_after: Duration,
    fraction: Option<FractionGate>,
    rate: Option<RateGate>,
    /// requested model -> cheaper model.
    reroute: Box<[(Arc<str>, Arc<str>)]>,
    pub(super) block_reason: Arc<str>,
    pub(super) stale_reason: Arc<str>,
    /// The budget's allowance in this router, when it is enforced by quota leases.
    pub(super) lease: Option<Arc<LeaseAccount>>,
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
    pub(super) fn new(signal: BudgetSignal, policy: &RouterPolicy, leases: &LeaseRegistry) -> Result<ScopeEntry, Unusable> {
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
        let lease = (signal.enforcement == Enforcement::Lease).then(|| leases.account(&key));
        Ok(ScopeEntry {
            lease,
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

    pub(super) fn state(&self) -> BudgetState {
        self.signal.state
    }

    /// True when the scope restricts calls: THROTTLE, REROUTE, BLOCK, or any state of a lease
    /// budget (every call needs an allowance).
    pub(super) fn is_restrictive(&self) -> bool {
        self.state() >= BudgetState::Throttle || self.lease.is_some()
    }

    /// Whether the scope covers the call (the tenant was matched by the index).
    #[inline]
    pub(super) fn applies(&self, ctx: &CallContext<'_>, model: &str) -> bool {
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
    pub(super) fn is_stale(&self, now_us: i64) -> bool {
        now_us >= self.valid_until_us
    }

    /// True when a throttle is in force: a THROTTLE scope, or a REROUTE scope whose signal
    /// carries the throttle of the threshold below it.
    #[inline]
    pub(super) fn is_throttled(&self) -> bool {
        self.fraction.is_some() || self.rate.is_some()
    }

    /// `Err(retry_after)` when the throttle refuses the call.
    pub(super) fn admit(&self, now_us: i64) -> Result<(), Duration> {
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

    pub(super) fn reroute_of(&self, model: &str) -> Option<&(Arc<str>, Arc<str>)> {
        self.reroute.iter().find(|(from, _)| **from == *model)
    }

    /// Decision order within a tenant: most severe first, then most specific, then by key.
    pub(super) fn order(&self) -> (std::cmp::Reverse<BudgetState>, std::cmp::Reverse<usize>, &str) {
        (std::cmp::Reverse(self.state()), std::cmp::Reverse(self.conditions.len()), &self.key)
    }
}
