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

#[cfg(test)]
mod lease_tests;
mod scope;
mod snapshot;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ledger_core::attribution::Attribution;
use ledger_core::UsageEvent;
use serde::{Deserialize, Serialize};

pub use scope::Unusable;
pub use snapshot::Snapshot;
pub use table::{Applied, SignalTable};

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
    /// the reroute saved (docs/pricing.md, "Routing savings"): after a reroute, `request_model` is
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
