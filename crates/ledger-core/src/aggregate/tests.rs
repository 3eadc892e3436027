//! Unit and property tests of the spend aggregator.

use super::interner::{short_name_words, Interner};
use super::*;
use crate::attribution::Attribution;
use proptest::prelude::*;

fn key(tenant: &str, bucket: i64) -> SpendKey {
    SpendKey {
        key: AttributionKey { attribution: Attribution::tenant(tenant).to_owned_attribution(), model: None },
        bucket_start: bucket,
    }
}

/// A call's key with every field given (model always set, as the processor passes it).
fn call<'a>(
    tenant_id: &'a str,
    team: Option<&'a str>,
    project: Option<&'a str>,
    user_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    model: &'a str,
) -> AttributionKey<&'a str> {
    AttributionKey { attribution: Attribution { tenant_id, team, project, user_id, api_key_id }, model: Some(model) }
}

#[test]
fn short_name_words_see_every_byte() {
    // With the length fixed, changing any one byte changes the words: the windows cover
    // every position at every length the cache takes.
    for n in 0..=24usize {
        let base: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let words = short_name_words(&base).expect("short");
        for at in 0..n {
            let mut changed = base.clone().into_bytes();
            changed[at] = b'Z';
            let changed = String::from_utf8(changed).unwrap();
            assert_ne!(short_name_words(&changed), Some(words), "length {n}, byte {at}");
        }
    }
    let long = "x".repeat(25);
    assert_eq!(short_name_words(&long), None);
}

proptest! {
    /// The name cache never gives two names one id, nor one name two ids: names from a
    /// two-letter alphabet collide in the cache's slots and share most of their bytes.
    #[test]
    fn interned_ids_are_equal_exactly_when_names_are(names in prop::collection::vec("[ab]{0,30}", 1..300)) {
        let state = DefaultHashBuilder::default();
        let mut interner = Interner::default();
        let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        for _round in 0..2 {
            for name in &names {
                let id = interner.intern(&state, name);
                let first = *seen.entry(name.clone()).or_insert(id);
                prop_assert_eq!(id, first, "{:?} got two ids", name);
                let stored = interner.name(id);
                prop_assert_eq!(stored.as_deref(), Some(name.as_str()));
            }
        }
        let distinct: std::collections::HashSet<u32> = seen.values().copied().collect();
        prop_assert_eq!(distinct.len(), seen.len());
    }
}

#[test]
fn add_call_adds_to_exactly_the_keys_for_scope_gives() {
    // Every combination of present, absent and empty fields.
    let choices = [None, Some(""), Some("x")];
    let t = TokenCounts::default();
    for team in choices {
        for project in choices {
            for user_id in choices {
                for api_key_id in choices {
                    for model in ["", "m"] {
                        let a = call("a", team, project, user_id, api_key_id, model);
                        let mut agg = SpendAggregator::new();
                        agg.add_call(&a, 3600, Money::from_picos(1), &t, 1, 0).unwrap();
                        let mut expected: Vec<SpendKey> =
                            SpendScope::ALL.iter().filter_map(|s| SpendKey::for_scope(*s, &a, 3600)).collect();
                        expected.sort();
                        let touched = agg.take_touched().unwrap();
                        // Each key once, and the call counted once in it.
                        assert!(touched.iter().all(|(_, totals)| totals.requests == 1), "{a:?}: {touched:?}");
                        let got: Vec<SpendKey> = touched.into_iter().map(|(k, _)| k).collect();
                        assert_eq!(got, expected, "{a:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_call_counts_once_in_every_scope_it_has_fields_for() {
    let mut agg = SpendAggregator::new();
    let t = TokenCounts::default();
    let full = call("a", Some("t"), Some("p"), Some("u"), Some("k"), "m");
    agg.add_call(&full, 0, Money::from_picos(5), &t, 1, 0).unwrap();
    let bare = call("a", None, None, None, None, "m");
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
        agg.restore(key, SpendTotals { cost: Money::from_picos(100), requests: 1, ..SpendTotals::default() }).unwrap();
    }
    agg.add_call(&full, 0, Money::from_picos(5), &t, 1, 0).unwrap();
    assert_eq!(agg.len(), 8);
    for scope in SpendScope::ALL {
        let key = SpendKey::for_scope(scope, &full, 0).unwrap();
        assert_eq!(agg.get(&key).unwrap().unwrap().cost.picos(), 105, "{scope:?}");
    }
}

#[test]
fn merging_a_batch_equals_adding_its_calls() {
    let t = TokenCounts { input: 3, output: 4, ..TokenCounts::default() };
    let a = call("a", Some("t"), None, Some("u"), None, "m");
    let b = call("b", None, Some("p"), None, Some("k"), "n");
    let calls = [(&a, 0, 5, 1), (&b, 3600, 7, 2), (&a, 3600, 11, 3), (&b, 3600, 13, 4), (&a, 0, 17, 5)];
    let mut all = SpendAggregator::new();
    let mut durable = SpendAggregator::new();
    let mut batch = SpendAggregator::new();
    // The durable side knows other names first, so the two interners disagree on ids.
    durable.add_call(&b, 7200, Money::from_picos(1), &t, 0, 0).unwrap();
    all.add_call(&b, 7200, Money::from_picos(1), &t, 0, 0).unwrap();
    for (i, (attr, bucket, cost, offset)) in calls.into_iter().enumerate() {
        all.add_call(attr, bucket, Money::from_picos(cost), &t, offset, offset * 10).unwrap();
        let side = if i < 2 { &mut durable } else { &mut batch };
        side.add_call(attr, bucket, Money::from_picos(cost), &t, offset, offset * 10).unwrap();
    }
    durable.take_touched().unwrap();
    durable.merge_from(&batch, |_| true).unwrap();
    all.take_touched().unwrap();
    // Every key of the batch is touched, with its cumulative totals.
    let touched = durable.take_touched().unwrap();
    assert_eq!(touched.len(), batch.len());
    for (key, totals) in &touched {
        assert_eq!(all.get(key).unwrap().as_ref(), Some(totals), "{key:?}");
    }
    assert_eq!(durable.len(), all.len());

    assert_eq!(batch.bucket_starts(), vec![0, 3600]);

    // A bucket the caller restores from the ledger instead is left out.
    let mut durable = SpendAggregator::new();
    durable.merge_from(&batch, |bucket| bucket != 3600).unwrap();
    assert_eq!(durable.total_cost(SpendScope::Tenant).unwrap().picos(), 17);
}

#[test]
fn pending_cells_settle_by_themselves_at_the_limit() {
    let mut agg = SpendAggregator::new();
    let t = TokenCounts::default();
    let models: Vec<String> = (0..CELL_LIMIT + 10).map(|i| format!("m{i}")).collect();
    for m in &models {
        let a = call("a", Some("t"), None, None, None, m);
        agg.add_call(&a, 0, Money::from_picos(2), &t, 1, 0).unwrap();
    }
    assert_eq!(agg.cells.len(), 10, "settled once, at {CELL_LIMIT} cells");
    let tenant = key("a", 0);
    assert_eq!(agg.get(&tenant).unwrap().unwrap().requests, models.len() as u64);
    assert_eq!(agg.total_cost(SpendScope::TeamModel).unwrap().picos(), 2 * models.len() as i128);
    // Tenant, team, and per model: Model and TeamModel.
    assert_eq!(agg.len(), 2 + 2 * models.len());
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
    let touched = agg.take_touched().unwrap();
    assert_eq!(touched.len(), 1);
    assert_eq!(touched[0].1.cost, Money::from_picos(10));
    assert_eq!(touched[0].1.requests, 2);
    assert_eq!(touched[0].1.last_offset, 2);
    assert_eq!(touched[0].1.max_event_time_micros, 10);
    assert!(agg.take_touched().unwrap().is_empty());
    agg.add(key("a", 0), Money::from_picos(1), &t, 3, 11).unwrap();
    assert_eq!(agg.take_touched().unwrap()[0].1.cost, Money::from_picos(11), "cumulative, not a delta");
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
        let published: i128 = agg.take_touched().unwrap().iter().map(|(_, t)| t.cost.picos()).sum();
        prop_assert_eq!(published, expected);
    }
}

#[test]
fn eviction_keeps_the_rest_and_forgets_names_only_evicted_keys_used() {
    let mut agg = SpendAggregator::new();
    let t = TokenCounts::default();
    let users: Vec<String> = (0..110).map(|i| format!("u{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        let a = call("a", Some("t"), None, Some(u), None, "m");
        let bucket = if i < 100 { 0 } else { 3600 };
        agg.add_call(&a, bucket, Money::from_picos(1), &t, i as i64, 0).unwrap();
    }
    let names_before = agg.names_len();
    agg.evict_before(3600);
    // a, t, m and the ten users of the kept bucket.
    assert_eq!(agg.names_len(), 13, "was {names_before}");
    let u105 = call("a", Some("t"), None, Some("u105"), None, "m");
    let key = SpendKey::for_scope(SpendScope::User, &u105, 3600).unwrap();
    assert_eq!(agg.get(&key).unwrap().unwrap().requests, 1);
    let tenant = SpendKey::for_scope(SpendScope::Tenant, &u105, 3600).unwrap();
    assert_eq!(agg.get(&tenant).unwrap().unwrap().requests, 10);
    let len = agg.len();
    agg.add_call(&u105, 3600, Money::from_picos(1), &t, 200, 0).unwrap();
    assert_eq!(agg.len(), len, "a call after compaction adds to the same keys");
    assert_eq!(agg.get(&tenant).unwrap().unwrap().requests, 11);
    let old = SpendKey::for_scope(SpendScope::Tenant, &u105, 0).unwrap();
    assert!(agg.get(&old).unwrap().is_none());
}

fn attribution_strategy() -> impl Strategy<Value = (u8, Option<u8>, Option<u8>, Option<u8>, Option<u8>, u8)> {
    (0u8..3, prop::option::of(0u8..3), prop::option::of(0u8..3), prop::option::of(0u8..4), prop::option::of(0u8..2), 0u8..3)
}

proptest! {
    /// The interned aggregator agrees with a plain map of owned keys, through evictions.
    #[test]
    fn agrees_with_a_reference_map(
        ops in prop::collection::vec((attribution_strategy(), 0i64..3, 0i64..1_000_000, 0u8..10), 0..150),
    ) {
        use std::collections::BTreeMap;
        let name = |prefix: &str, v: u8| if v == 0 { String::new() } else { format!("{prefix}{v}") };
        let mut agg = SpendAggregator::new();
        let mut reference: BTreeMap<SpendKey, (i128, u64)> = BTreeMap::new();
        let t = TokenCounts::default();
        for (i, ((tenant, team, project, user, key, model), bucket, picos, evict)) in ops.into_iter().enumerate() {
            if evict == 0 {
                let from = bucket * 3600;
                agg.evict_before(from);
                reference.retain(|k, _| k.bucket_start >= from);
                continue;
            }
            if evict == 1 {
                agg.settle().unwrap();
                continue;
            }
            let (team, project, user, key) =
                (team.map(|v| name("t", v)), project.map(|v| name("p", v)), user.map(|v| name("u", v)), key.map(|v| name("k", v)));
            let (tenant, model) = (format!("a{tenant}"), name("m", model));
            let a = call(&tenant, team.as_deref(), project.as_deref(), user.as_deref(), key.as_deref(), &model);
            agg.add_call(&a, bucket * 3600, Money::from_picos(i128::from(picos)), &t, i as i64, 0).unwrap();
            for scope in SpendScope::ALL {
                if let Some(k) = SpendKey::for_scope(scope, &a, bucket * 3600) {
                    let e = reference.entry(k).or_default();
                    e.0 += i128::from(picos);
                    e.1 += 1;
                }
            }
        }
        // With the cells pending, then settled: reads agree either way.
        for settled in [false, true] {
            if settled {
                agg.settle().unwrap();
            }
            prop_assert_eq!(agg.len(), reference.len(), "settled: {}", settled);
            for (k, (cost, requests)) in &reference {
                let got = agg.get(k).unwrap();
                prop_assert!(got.is_some(), "missing {:?} (settled: {})", k, settled);
                let got = got.unwrap();
                prop_assert_eq!(got.cost.picos(), *cost);
                prop_assert_eq!(got.requests, *requests);
            }
            for scope in SpendScope::ALL {
                let expected: i128 = reference.iter().filter(|(k, _)| SpendScope::of_key(&k.key) == Some(scope)).map(|(_, (c, _))| c).sum();
                prop_assert_eq!(agg.total_cost(scope).unwrap().picos(), expected, "{:?} settled: {}", scope, settled);
            }
        }
        let touched: BTreeMap<SpendKey, i128> = agg.take_touched().unwrap().into_iter().map(|(k, t)| (k, t.cost.picos())).collect();
        for k in touched.keys() {
            prop_assert!(reference.contains_key(k), "published a key the reference lacks: {:?}", k);
        }
    }
}
