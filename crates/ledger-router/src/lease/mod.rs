//! Quota leases on the router's side (docs/budgets.md, "Leases").
//!
//! For each budget whose signal says `enforcement = lease`, the router keeps a
//! `LeaseAccount`: the leases the enforcer granted this instance and
//! what each has used. A decision under such a budget reserves a pre-call estimate from an open
//! lease ([`CallSize`], [`estimate`]); reporting the call's usage turns the reservation into
//! the actual cost ([`crate::Router::complete`]). A background client (`client`) asks for the
//! next lease before the allowance runs out, returns leases, and applies grants.

pub(crate) mod account;
pub(crate) mod client;
pub mod estimate;
mod registry;
mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;

use ledger_core::Money;
use serde::{Deserialize, Serialize};

pub(crate) use registry::LeaseRegistry;
pub use stats::{EstimateErrorHistogram, LeaseStats, ESTIMATE_ERROR_BUCKETS_USD};

use crate::view::StalePolicy;

/// What a call gets when no open lease can cover it while the next grant is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyPolicy {
    /// THROTTLE with a short `retry_after` (the default): the caller tries again shortly.
    #[default]
    Throttle,
    /// BLOCK.
    Block,
}

/// `[router.leases]`: the router's side of quota leases (docs/budgets.md, "Settings").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// This router's id in the protocol; unique per running router (default: a fresh
    /// `router-<uuid>` per start).
    pub instance_id: Option<String>,
    /// The lease requests topic.
    pub requests_topic: String,
    /// The lease grants topic.
    pub grants_topic: String,
    /// The decision while no allowance covers a call.
    pub when_empty: EmptyPolicy,
    /// No grant within `grant_timeout_ms`: refuse (`fail_closed`, the `when_empty` decision) or
    /// allow without a lease (`fail_open`).
    pub unreachable: StalePolicy,
    /// How long a request may go unanswered before the enforcer counts as unreachable.
    pub grant_timeout_ms: u64,
    /// `retry_after` of a call refused while a grant is on its way.
    pub empty_retry_ms: u64,
    /// A lease should last about this long at the current rate.
    pub lease_target_ms: u64,
    /// A lease should cover at least this many calls.
    pub min_lease_calls: u32,
    /// Ask for the next lease when the open allowance falls below this share of the last one
    /// asked for.
    pub low_watermark_percent: u32,
    /// Output tokens of a call without `max_tokens`, for models not in `output_tokens`.
    pub default_output_tokens: u64,
    /// Output tokens of a call without `max_tokens`, per model (the model to call).
    pub output_tokens: BTreeMap<String, u64>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        let topics = ledger_kafka::TopicNames::default();
        LeaseSettings {
            instance_id: None,
            requests_topic: topics.lease_requests,
            grants_topic: topics.lease_grants,
            when_empty: EmptyPolicy::Throttle,
            unreachable: StalePolicy::FailClosed,
            grant_timeout_ms: 2_000,
            empty_retry_ms: 50,
            lease_target_ms: 2_000,
            min_lease_calls: 4,
            low_watermark_percent: 50,
            default_output_tokens: 1_000,
            output_tokens: BTreeMap::new(),
        }
    }
}

impl LeaseSettings {
    /// Problems that make the settings unusable, each naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut range = |name: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                out.push(format!("router.leases.{name} must be within {lo}..={hi} (got {v})"));
            }
        };
        range("grant_timeout_ms", self.grant_timeout_ms, 10, 600_000);
        range("empty_retry_ms", self.empty_retry_ms, 1, 60_000);
        range("lease_target_ms", self.lease_target_ms, 10, 3_600_000);
        range("min_lease_calls", u64::from(self.min_lease_calls), 1, 1_000_000);
        range("low_watermark_percent", u64::from(self.low_watermark_percent), 0, 100);
        if self.instance_id.as_deref().is_some_and(|i| i.trim().is_empty()) {
            out.push("router.leases.instance_id must not be empty (leave it unset for a fresh one per start)".into());
        }
        out
    }
}

/// The expected size of a call, for its pre-call estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallSize<'a> {
    /// Prompt tokens (all of them, cached or not).
    pub input_tokens: u64,
    /// The call's `max_tokens`; without it, the model's output estimate applies.
    pub max_tokens: Option<u64>,
    /// The provider, for the catalog's name rules (`provider/model`); may be empty.
    pub provider: &'a str,
}

/// One budget's share of a [`Reservation`].
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) account: Arc<account::LeaseAccount>,
    pub(crate) lease: Arc<str>,
    pub(crate) estimate: i128,
}

/// What a call under lease budgets reserved: report the call's usage with
/// [`crate::Router::complete`] (or [`crate::Router::cancel`] when the call was not made), so the
/// lease is corrected to the actual cost. Dropping it keeps the estimate as what was used.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub(crate) parts: Vec<Part>,
    pub(crate) estimate: Money,
}

impl Reservation {
    /// The pre-call estimate reserved from each lease budget of the call.
    pub fn estimate(&self) -> Money {
        self.estimate
    }

    /// The budgets (signal keys) whose leases the call draws on.
    pub fn budgets(&self) -> impl Iterator<Item = &str> + '_ {
        self.parts.iter().map(|p| &*p.account.key)
    }
}

/// A decision and, when lease budgets apply and the call may be made, what it reserved.
#[derive(Debug, Clone)]
pub struct CallDecision {
    /// The decision.
    pub decision: crate::Decision,
    /// The reservation to complete after the call (`None` when no lease budget applies).
    pub reservation: Option<Reservation>,
}
