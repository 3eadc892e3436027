//! The quota-lease protocol between routers and the enforcer (docs/budgets.md, "Leases").
//!
//! [`LeaseRequest`] mirrors `schemas/avro/lease_request.avsc` (topic `llm.lease-requests.v1`, key
//! = the budget key) and [`LeaseGrant`] `schemas/avro/lease_grant.avsc` (topic
//! `llm.lease-grants.v1`, key = the router's instance id), field for field.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// A lease a router gives back, with what it used of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReturn {
    /// The lease.
    pub lease_id: String,
    /// What the router spent under it: the actual cost of the calls whose usage was reported,
    /// plus the estimates of the others.
    pub used_usd: Money,
    /// True once every call admitted under the lease is accounted for (reported, or older than
    /// the call timeout); false when the lease only stopped admitting calls.
    pub done: bool,
}

/// A router's request for an allowance of one budget, and the leases it returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Unique per request; the id of the lease it results in. A retry sends the same id.
    pub request_id: String,
    /// The router instance (the grant is keyed by it).
    pub instance_id: String,
    /// The budget's signal key, e.g. `day:tenant_id=acme`.
    pub budget: String,
    /// The allowance wanted; zero when the request only returns leases.
    pub wanted_usd: Money,
    /// The least allowance of any use (the estimate of the call waiting for it).
    pub least_usd: Money,
    /// Leases given back.
    #[serde(default)]
    pub returns: Vec<LeaseReturn>,
    /// When the router sent it (its clock; informational).
    pub sent_at: DateTime<Utc>,
}

impl LeaseRequest {
    /// The Kafka message key: the budget.
    pub fn key(&self) -> &str {
        &self.budget
    }
}

/// The enforcer's answer to a [`LeaseRequest`], in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LeaseStatus {
    /// An allowance of `amount_usd` until `expires_at`.
    Granted,
    /// Nothing now, but leases that may come back hold part of the limit: ask again after
    /// `retry_after_ms`.
    Wait,
    /// The enforcer's policy has no lease budget with this key: apply its signals only.
    NotLeased,
    /// The ledger spend leaves less than the least useful amount: spent for this period.
    Exhausted,
}

impl LeaseStatus {
    /// Every status, in increasing severity.
    pub const ALL: [LeaseStatus; 4] = [LeaseStatus::Granted, LeaseStatus::Wait, LeaseStatus::NotLeased, LeaseStatus::Exhausted];

    /// The Avro enum symbol.
    pub const fn as_str(self) -> &'static str {
        match self {
            LeaseStatus::Granted => "GRANTED",
            LeaseStatus::Wait => "WAIT",
            LeaseStatus::NotLeased => "NOT_LEASED",
            LeaseStatus::Exhausted => "EXHAUSTED",
        }
    }
}

impl fmt::Display for LeaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The enforcer's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// The request answered.
    pub request_id: String,
    /// The router instance that asked (the Kafka key).
    pub instance_id: String,
    /// The budget's signal key.
    pub budget: String,
    /// The answer.
    pub status: LeaseStatus,
    /// The lease (the request id) when granted, else empty.
    pub lease_id: String,
    /// The allowance; zero unless granted.
    pub amount_usd: Money,
    /// When the enforcer answered.
    pub granted_at: DateTime<Utc>,
    /// The lease ends here (never after its budget period's end).
    pub expires_at: DateTime<Utc>,
    /// The longest call the enforcer waits for after a lease stops admitting calls, in
    /// milliseconds: a router returns the lease as done at the latest this long after its
    /// last admission.
    pub call_timeout_ms: i64,
    /// With `WAIT` and `EXHAUSTED`: when to ask again, in milliseconds.
    pub retry_after_ms: i64,
    /// Why, for people.
    pub reason: String,
}

impl LeaseGrant {
    /// The Kafka message key: the router instance.
    pub fn key(&self) -> &str {
        &self.instance_id
    }
}
