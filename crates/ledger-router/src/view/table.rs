//! The single writer's [`SignalTable`]: applies signals (highest sequence per scope wins) and
//! publishes [`Snapshot`]s.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use ledger_core::signal::BudgetSignal;

use super::scope::{ScopeEntry, Unusable};
use super::snapshot::{ScopeList, Snapshot};
use super::RouterPolicy;
use crate::lease::LeaseRegistry;

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
    leases: Arc<LeaseRegistry>,
}

impl SignalTable {
    /// An empty table deciding with `policy`. Lease budgets get no allowance from it (no
    /// catalog, no enforcer): their calls fail closed, as [`crate::LeaseSettings`] say by default.
    pub fn new(policy: RouterPolicy) -> Self {
        SignalTable::with_leases(policy, Arc::default())
    }

    pub(crate) fn with_leases(policy: RouterPolicy, leases: Arc<LeaseRegistry>) -> Self {
        SignalTable {
            policy,
            tenants: HashMap::new(),
            tenant_of: HashMap::new(),
            dirty: HashSet::new(),
            published: Arc::new(Snapshot { policy, leases: leases.clone(), ..Snapshot::default() }),
            leases,
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
        let entry = match ScopeEntry::new(signal, &self.policy, &self.leases) {
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
        self.published = Arc::new(Snapshot {
            policy: self.policy,
            by_tenant,
            any_tenant,
            scopes: self.tenant_of.len(),
            leases: self.leases.clone(),
        });
        self.published.clone()
    }
}

fn scope_list(scopes: &ScopesByKey) -> ScopeList {
    let all: Box<[Arc<ScopeEntry>]> = scopes.values().cloned().collect();
    let mut restrictive: Vec<Arc<ScopeEntry>> = all.iter().filter(|e| e.is_restrictive()).cloned().collect();
    restrictive.sort_by(|a, b| a.order().cmp(&b.order()));
    let earliest_valid_until_us = all.iter().map(|e| e.valid_until_us).min().unwrap_or(i64::MAX);
    let leased = all.iter().any(|e| e.lease.is_some());
    ScopeList { all, restrictive: restrictive.into_boxed_slice(), earliest_valid_until_us, leased }
}
