//! Windowed spend aggregation: cumulative totals per attribution key and hour bucket.
//!
//! The processor keeps one [`SpendAggregator`] per source partition and adds each row once it
//! is durable in the ledger; after every committed batch it publishes the cumulative totals of
//! the keys the batch touched ([`SpendAggregator::take_touched`]). Totals are cumulative, not
//! deltas, so a lost or repeated update heals itself.

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::event::{TokenCounts, UsageEvent, UsageEventRef};
use crate::money::{Money, MoneyOverflow};

/// Seconds in one bucket.
pub const BUCKET_SECS: i64 = 3600;

/// Start (unix seconds) of the hour bucket holding `unix_secs`.
pub fn hour_bucket(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(BUCKET_SECS) * BUCKET_SECS
}

/// The attribution dimensions a spend aggregate is kept for. Each accepted call adds to one
/// key per scope (skipping a scope whose field the call lacks), so the budget enforcer reads
/// per-scope totals directly and the number of keys stays small (a user scope, not a
/// user x key x model x ... product).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpendScope {
    /// Tenant.
    Tenant,
    /// Tenant and team.
    Team,
    /// Tenant, team and project.
    Project,
    /// Tenant and end user.
    User,
    /// Tenant and API key.
    ApiKey,
    /// Tenant and model.
    Model,
    /// Tenant, team and model.
    TeamModel,
    /// Tenant, team, project and model.
    ProjectModel,
}

impl SpendScope {
    /// Every scope.
    pub const ALL: [SpendScope; 8] = [
        SpendScope::Tenant,
        SpendScope::Team,
        SpendScope::Project,
        SpendScope::User,
        SpendScope::ApiKey,
        SpendScope::Model,
        SpendScope::TeamModel,
        SpendScope::ProjectModel,
    ];

    /// Which fields besides the tenant the scope keys on: (team, project, user, api key, model).
    pub const fn fields(self) -> (bool, bool, bool, bool, bool) {
        match self {
            SpendScope::Tenant => (false, false, false, false, false),
            SpendScope::Team => (true, false, false, false, false),
            SpendScope::Project => (true, true, false, false, false),
            SpendScope::User => (false, false, true, false, false),
            SpendScope::ApiKey => (false, false, false, true, false),
            SpendScope::Model => (false, false, false, false, true),
            SpendScope::TeamModel => (true, false, false, false, true),
            SpendScope::ProjectModel => (true, true, false, false, true),
        }
    }

    /// The scope whose fields are exactly the ones set in `key`, if any.
    pub fn of_key(key: &SpendKey) -> Option<SpendScope> {
        let f = (key.team.is_some(), key.project.is_some(), key.user_id.is_some(), key.api_key_id.is_some(), key.model.is_some());
        SpendScope::ALL.into_iter().find(|s| s.fields() == f)
    }
}

/// The attribution of one accepted call.
#[derive(Debug, Clone, Copy)]
pub struct Attribution<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// Team, when known.
    pub team: Option<&'a str>,
    /// Project, when known.
    pub project: Option<&'a str>,
    /// End user, when known.
    pub user_id: Option<&'a str>,
    /// API key, when known.
    pub api_key_id: Option<&'a str>,
    /// The priced model (catalog key).
    pub model: &'a str,
}

/// The key of one spend aggregate: a scope's fields (the others `None`) and an hour bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpendKey {
    /// Tenant.
    pub tenant_id: String,
    /// Team, when known.
    pub team: Option<String>,
    /// Project, when known.
    pub project: Option<String>,
    /// End user, when known.
    pub user_id: Option<String>,
    /// API key, when known.
    pub api_key_id: Option<String>,
    /// The priced model (catalog key), when the scope keys on it.
    pub model: Option<String>,
    /// Start of the hour bucket (unix seconds).
    pub bucket_start: i64,
}

impl SpendKey {
    /// The key of `scope` for a call, or `None` when the call lacks a field the scope needs.
    pub fn for_scope(scope: SpendScope, a: &Attribution<'_>, bucket_start: i64) -> Option<SpendKey> {
        SpendKeyRef::for_scope(scope, a, bucket_start).map(SpendKeyRef::to_owned_key)
    }

}

/// A borrowed [`SpendKey`], so a lookup allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpendKeyRef<'a> {
    tenant_id: &'a str,
    team: Option<&'a str>,
    project: Option<&'a str>,
    user_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    model: Option<&'a str>,
    bucket_start: i64,
}

impl<'a> SpendKeyRef<'a> {
    fn for_scope(scope: SpendScope, a: &Attribution<'a>, bucket_start: i64) -> Option<SpendKeyRef<'a>> {
        let (team, project, user, key, model) = scope.fields();
        fn pick(wanted: bool, v: Option<&str>) -> Result<Option<&str>, ()> {
            match (wanted, v) {
                (false, _) => Ok(None),
                (true, Some(v)) if !v.is_empty() => Ok(Some(v)),
                (true, _) => Err(()),
            }
        }
        Some(SpendKeyRef {
            tenant_id: a.tenant_id,
            team: pick(team, a.team).ok()?,
            project: pick(project, a.project).ok()?,
            user_id: pick(user, a.user_id).ok()?,
            api_key_id: pick(key, a.api_key_id).ok()?,
            model: pick(model, Some(a.model)).ok()?,
            bucket_start,
        })
    }

    fn to_owned_key(self) -> SpendKey {
        SpendKey {
            tenant_id: self.tenant_id.to_owned(),
            team: self.team.map(str::to_owned),
            project: self.project.map(str::to_owned),
            user_id: self.user_id.map(str::to_owned),
            api_key_id: self.api_key_id.map(str::to_owned),
            model: self.model.map(str::to_owned),
            bucket_start: self.bucket_start,
        }
    }
}

impl SpendKeyRef<'_> {
    fn matches(&self, key: &SpendKey) -> bool {
        self.bucket_start == key.bucket_start
            && self.tenant_id == key.tenant_id
            && self.team == key.team.as_deref()
            && self.project == key.project.as_deref()
            && self.user_id == key.user_id.as_deref()
            && self.api_key_id == key.api_key_id.as_deref()
            && self.model == key.model.as_deref()
    }

    fn as_ref_of(key: &SpendKey) -> SpendKeyRef<'_> {
        SpendKeyRef {
            tenant_id: &key.tenant_id,
            team: key.team.as_deref(),
            project: key.project.as_deref(),
            user_id: key.user_id.as_deref(),
            api_key_id: key.api_key_id.as_deref(),
            model: key.model.as_deref(),
            bucket_start: key.bucket_start,
        }
    }
}

/// Hashes of a call's attribution fields, computed once and combined per scope, so a call
/// costs six string hashes, not one per field per scope.
#[derive(Clone, Copy)]
struct FieldHashes {
    tenant: u64,
    team: u64,
    project: u64,
    user: u64,
    api_key: u64,
    model: u64,
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

impl FieldHashes {
    fn of(state: &DefaultHashBuilder, k: &SpendKeyRef<'_>) -> FieldHashes {
        let h = |s: Option<&str>| s.map(|s| state.hash_one(s)).unwrap_or(0);
        FieldHashes {
            tenant: state.hash_one(k.tenant_id),
            team: h(k.team),
            project: h(k.project),
            user: h(k.user_id),
            api_key: h(k.api_key_id),
            model: h(k.model),
        }
    }

    /// The hash of the key that has exactly the fields set in `k` (the others ignored).
    #[inline]
    fn combine(&self, k: &SpendKeyRef<'_>) -> u64 {
        let mut h = mix(0x51_7CC1_B727_220A, self.tenant);
        for (present, v) in [
            (k.team.is_some(), self.team),
            (k.project.is_some(), self.project),
            (k.user_id.is_some(), self.user),
            (k.api_key_id.is_some(), self.api_key),
            (k.model.is_some(), self.model),
        ] {
            h = mix(h, if present { v } else { 0x2545_F491_4F6C_DD1D });
        }
        mix(h, k.bucket_start as u64)
    }
}

#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    key: SpendKey,
    totals: SpendTotals,
    touched: bool,
}


impl<'a> Attribution<'a> {
    /// The attribution of an event priced as `model`.
    pub fn of(event: &'a UsageEvent, model: &'a str) -> Attribution<'a> {
        Attribution {
            tenant_id: &event.tenant_id,
            team: event.team.as_deref(),
            project: event.project.as_deref(),
            user_id: event.user_id.as_deref(),
            api_key_id: event.api_key_id.as_deref(),
            model,
        }
    }

    /// The attribution of a borrowed event priced as `model`.
    pub fn of_view(event: &UsageEventRef<'a>, model: &'a str) -> Attribution<'a> {
        Attribution {
            tenant_id: event.tenant_id,
            team: event.team,
            project: event.project,
            user_id: event.user_id,
            api_key_id: event.api_key_id,
            model,
        }
    }
}

/// Cumulative totals of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendTotals {
    /// Charged cost.
    pub cost: Money,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Calls.
    pub requests: u64,
    /// Highest source offset included.
    pub last_offset: i64,
    /// Latest event time included (unix microseconds).
    pub max_event_time_micros: i64,
}

impl SpendTotals {
    /// Adds one call.
    pub fn add(&mut self, cost: Money, tokens: &TokenCounts, offset: i64, event_micros: i64) -> Result<(), MoneyOverflow> {
        self.cost = self.cost.checked_add(cost)?;
        self.input_tokens = self.input_tokens.saturating_add(tokens.input);
        self.output_tokens = self.output_tokens.saturating_add(tokens.output);
        self.requests += 1;
        self.last_offset = self.last_offset.max(offset);
        self.max_event_time_micros = self.max_event_time_micros.max(event_micros);
        Ok(())
    }

    /// Merges another total of the same key.
    pub fn merge(&mut self, other: &SpendTotals) -> Result<(), MoneyOverflow> {
        self.cost = self.cost.checked_add(other.cost)?;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.requests += other.requests;
        self.last_offset = self.last_offset.max(other.last_offset);
        self.max_event_time_micros = self.max_event_time_micros.max(other.max_event_time_micros);
        Ok(())
    }
}

/// Cumulative totals per key, with the set of keys touched since the last publication.
#[derive(Default, Clone)]
pub struct SpendAggregator {
    /// Totals per key (hashed by [`FieldHashes`]), and whether touched since the last publication.
    slots: HashTable<Slot>,
    state: DefaultHashBuilder,
}

impl std::fmt::Debug for SpendAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendAggregator").field("keys", &self.slots.len()).finish_non_exhaustive()
    }
}

impl SpendAggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    fn hash_of(&self, key: &SpendKeyRef<'_>) -> u64 {
        FieldHashes::of(&self.state, key).combine(key)
    }

    fn slot_mut(&mut self, hash: u64, key: &SpendKeyRef<'_>) -> Option<&mut Slot> {
        self.slots.find_mut(hash, |s| s.hash == hash && key.matches(&s.key))
    }

    fn upsert(&mut self, hash: u64, key: &SpendKeyRef<'_>, cost: Money, tokens: &TokenCounts, offset: i64, event_micros: i64) -> Result<(), MoneyOverflow> {
        match self.slot_mut(hash, key) {
            Some(slot) => {
                slot.totals.add(cost, tokens, offset, event_micros)?;
                slot.touched = true;
            }
            None => {
                let mut totals = SpendTotals::default();
                totals.add(cost, tokens, offset, event_micros)?;
                let slot = Slot { hash, key: key.to_owned_key(), totals, touched: true };
                self.slots.insert_unique(hash, slot, |s| s.hash);
            }
        }
        Ok(())
    }

    /// Adds one priced call to one key.
    pub fn add(
        &mut self,
        key: SpendKey,
        cost: Money,
        tokens: &TokenCounts,
        offset: i64,
        event_micros: i64,
    ) -> Result<(), MoneyOverflow> {
        let r = SpendKeyRef::as_ref_of(&key);
        let hash = self.hash_of(&r);
        self.upsert(hash, &r, cost, tokens, offset, event_micros)
    }

    /// Adds one priced call to the key of every scope it has the fields for.
    pub fn add_call(
        &mut self,
        attribution: &Attribution<'_>,
        bucket_start: i64,
        cost: Money,
        tokens: &TokenCounts,
        offset: i64,
        event_micros: i64,
    ) -> Result<(), MoneyOverflow> {
        let Some(finest) = SpendKeyRef::for_scope(SpendScope::Tenant, attribution, bucket_start) else {
            return Ok(());
        };
        let full = SpendKeyRef {
            team: attribution.team.filter(|s| !s.is_empty()),
            project: attribution.project.filter(|s| !s.is_empty()),
            user_id: attribution.user_id.filter(|s| !s.is_empty()),
            api_key_id: attribution.api_key_id.filter(|s| !s.is_empty()),
            model: Some(attribution.model).filter(|s| !s.is_empty()),
            ..finest
        };
        let hashes = FieldHashes::of(&self.state, &full);
        for scope in SpendScope::ALL {
            let Some(key) = SpendKeyRef::for_scope(scope, attribution, bucket_start) else { continue };
            let hash = hashes.combine(&key);
            self.upsert(hash, &key, cost, tokens, offset, event_micros)?;
        }
        Ok(())
    }

    /// Sets a key's totals (restored from the durable ledger) and marks it touched.
    pub fn restore(&mut self, key: SpendKey, totals: SpendTotals) {
        let hash = self.hash_of(&SpendKeyRef::as_ref_of(&key));
        let r = SpendKeyRef::as_ref_of(&key);
        match self.slots.find_mut(hash, |s| s.hash == hash && r.matches(&s.key)) {
            Some(slot) => {
                slot.totals = totals;
                slot.touched = true;
            }
            None => {
                self.slots.insert_unique(hash, Slot { hash, key, totals, touched: true }, |s| s.hash);
            }
        }
    }

    /// The cumulative totals of a key.
    pub fn get(&self, key: &SpendKey) -> Option<&SpendTotals> {
        let r = SpendKeyRef::as_ref_of(key);
        let hash = self.hash_of(&r);
        self.slots.find(hash, |s| s.hash == hash && r.matches(&s.key)).map(|s| &s.totals)
    }

    /// The keys touched since the last call, with their cumulative totals, in key order.
    pub fn take_touched(&mut self) -> Vec<(SpendKey, SpendTotals)> {
        let mut out: Vec<(SpendKey, SpendTotals)> = self
            .slots
            .iter_mut()
            .filter(|s| s.touched)
            .map(|s| {
                s.touched = false;
                (s.key.clone(), s.totals)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets buckets that started before `bucket_start` (unix seconds).
    pub fn evict_before(&mut self, bucket_start: i64) {
        self.slots.retain(|s| s.key.bucket_start >= bucket_start);
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sum of the cost of every key of one scope (every call counts once per scope).
    pub fn total_cost(&self, scope: SpendScope) -> Result<Money, MoneyOverflow> {
        Money::checked_sum(
            self.slots.iter().filter(|s| SpendScope::of_key(&s.key) == Some(scope)).map(|s| s.totals.cost),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(tenant: &str, bucket: i64) -> SpendKey {
        SpendKey {
            tenant_id: tenant.into(),
            team: None,
            project: None,
            user_id: None,
            api_key_id: None,
            model: None,
            bucket_start: bucket,
        }
    }

    #[test]
    fn a_call_counts_once_in_every_scope_it_has_fields_for() {
        let mut agg = SpendAggregator::new();
        let t = TokenCounts::default();
        let full = Attribution {
            tenant_id: "a",
            team: Some("t"),
            project: Some("p"),
            user_id: Some("u"),
            api_key_id: Some("k"),
            model: "m",
        };
        agg.add_call(&full, 0, Money::from_picos(5), &t, 1, 0).unwrap();
        let bare = Attribution { team: None, project: None, user_id: None, api_key_id: None, ..full };
        agg.add_call(&bare, 0, Money::from_picos(7), &t, 2, 0).unwrap();
        for scope in SpendScope::ALL {
            let expected = match scope {
                SpendScope::Tenant | SpendScope::Model => 12,
                _ => 5,
            };
            assert_eq!(agg.total_cost(scope).unwrap().picos(), expected, "{scope:?}");
        }
        assert_eq!(agg.len(), 8);

        // A restored key (from the ledger) is the same slot a later call adds to.
        let mut agg = SpendAggregator::new();
        for scope in SpendScope::ALL {
            let key = SpendKey::for_scope(scope, &full, 0).unwrap();
            agg.restore(key, SpendTotals { cost: Money::from_picos(100), requests: 1, ..SpendTotals::default() });
        }
        agg.add_call(&full, 0, Money::from_picos(5), &t, 1, 0).unwrap();
        assert_eq!(agg.len(), 8);
        for scope in SpendScope::ALL {
            let key = SpendKey::for_scope(scope, &full, 0).unwrap();
            assert_eq!(agg.get(&key).unwrap().cost.picos(), 105, "{scope:?}");
        }
    }

    #[test]
    fn buckets_are_hours() {
        assert_eq!(hour_bucket(0), 0);
        assert_eq!(hour_bucket(3599), 0);
        assert_eq!(hour_bucket(3600), 3600);
        assert_eq!(hour_bucket(-1), -3600);
    }

    #[test]
    fn touched_keys_are_reported_once_with_cumulative_totals() {
        let mut agg = SpendAggregator::new();
        let t = TokenCounts { input: 10, output: 5, ..TokenCounts::default() };
        agg.add(key("a", 0), Money::from_picos(7), &t, 1, 10).unwrap();
        agg.add(key("a", 0), Money::from_picos(3), &t, 2, 5).unwrap();
        let touched = agg.take_touched();
        assert_eq!(touched.len(), 1);
        assert_eq!(touched[0].1.cost, Money::from_picos(10));
        assert_eq!(touched[0].1.requests, 2);
        assert_eq!(touched[0].1.last_offset, 2);
        assert_eq!(touched[0].1.max_event_time_micros, 10);
        assert!(agg.take_touched().is_empty());
        agg.add(key("a", 0), Money::from_picos(1), &t, 3, 11).unwrap();
        assert_eq!(agg.take_touched()[0].1.cost, Money::from_picos(11), "cumulative, not a delta");
    }

    proptest! {
        #[test]
        fn aggregation_preserves_the_exact_total(costs in prop::collection::vec((0u8..4, 0i64..10_000_000_000_000), 0..200)) {
            let mut agg = SpendAggregator::new();
            let t = TokenCounts::default();
            let mut expected = 0i128;
            for (i, (tenant, picos)) in costs.iter().enumerate() {
                agg.add(key(&tenant.to_string(), (i as i64 % 3) * 3600), Money::from_picos(i128::from(*picos)), &t, i as i64, 0).unwrap();
                expected += i128::from(*picos);
            }
            prop_assert_eq!(agg.total_cost(SpendScope::Tenant).unwrap().picos(), expected);
            let published: i128 = agg.take_touched().iter().map(|(_, t)| t.cost.picos()).sum();
            prop_assert_eq!(published, expected);
        }
    }
}
