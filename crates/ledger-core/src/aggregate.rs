//! Windowed spend aggregation: cumulative totals per attribution key and hour bucket.
//!
//! The processor keeps one [`SpendAggregator`] per source partition and adds each row once it
//! is durable in the ledger; after every committed batch it publishes the cumulative totals of
//! the keys the batch touched ([`SpendAggregator::take_touched`]). Totals are cumulative, not
//! deltas, so a lost or repeated update heals itself.

use std::collections::{HashMap, HashSet};

use crate::event::{TokenCounts, UsageEvent};
use crate::money::{Money, MoneyOverflow};

/// Seconds in one bucket.
pub const BUCKET_SECS: i64 = 3600;

/// Start (unix seconds) of the hour bucket holding `unix_secs`.
pub fn hour_bucket(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(BUCKET_SECS) * BUCKET_SECS
}

/// The finest attribution grain of the spend aggregates (the enforcer sums over it).
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
    /// The priced model (catalog key), or the requested model when unpriced.
    pub model: String,
    /// Start of the hour bucket (unix seconds).
    pub bucket_start: i64,
}

impl SpendKey {
    /// The key of an event priced as `model`.
    pub fn of(event: &UsageEvent, model: &str) -> SpendKey {
        SpendKey {
            tenant_id: event.tenant_id.clone(),
            team: event.team.clone(),
            project: event.project.clone(),
            user_id: event.user_id.clone(),
            api_key_id: event.api_key_id.clone(),
            model: model.to_owned(),
            bucket_start: hour_bucket(event.event_time.timestamp()),
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
#[derive(Debug, Default, Clone)]
pub struct SpendAggregator {
    totals: HashMap<SpendKey, SpendTotals>,
    touched: HashSet<SpendKey>,
}

impl SpendAggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one priced call.
    pub fn add(
        &mut self,
        key: SpendKey,
        cost: Money,
        tokens: &TokenCounts,
        offset: i64,
        event_micros: i64,
    ) -> Result<(), MoneyOverflow> {
        let entry = self.totals.entry(key.clone()).or_default();
        entry.add(cost, tokens, offset, event_micros)?;
        self.touched.insert(key);
        Ok(())
    }

    /// Sets a key's totals (restored from the durable ledger) and marks it touched.
    pub fn restore(&mut self, key: SpendKey, totals: SpendTotals) {
        self.touched.insert(key.clone());
        self.totals.insert(key, totals);
    }

    /// The cumulative totals of a key.
    pub fn get(&self, key: &SpendKey) -> Option<&SpendTotals> {
        self.totals.get(key)
    }

    /// The keys touched since the last call, with their cumulative totals.
    pub fn take_touched(&mut self) -> Vec<(SpendKey, SpendTotals)> {
        let mut out: Vec<(SpendKey, SpendTotals)> = self
            .touched
            .drain()
            .filter_map(|k| self.totals.get(&k).map(|t| (k, *t)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets buckets that started before `bucket_start` (unix seconds).
    pub fn evict_before(&mut self, bucket_start: i64) {
        self.totals.retain(|k, _| k.bucket_start >= bucket_start);
        self.touched.retain(|k| k.bucket_start >= bucket_start);
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.totals.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// Sum of every key's cost.
    pub fn total_cost(&self) -> Result<Money, MoneyOverflow> {
        Money::checked_sum(self.totals.values().map(|t| t.cost))
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
            model: "m".into(),
            bucket_start: bucket,
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
            prop_assert_eq!(agg.total_cost().unwrap().picos(), expected);
            let published: i128 = agg.take_touched().iter().map(|(_, t)| t.cost.picos()).sum();
            prop_assert_eq!(published, expected);
        }
    }
}
