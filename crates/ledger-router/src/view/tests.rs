use std::collections::BTreeMap;

use super::*;
use chrono::{DateTime, TimeZone, Utc};
use ledger_core::signal::{BudgetPeriod, BudgetSignal, BudgetState};
use ledger_core::Money;
use proptest::prelude::*;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap()
}

const NOW: i64 = 1_800_000_000;
const NOW_US: i64 = NOW * 1_000_000;

pub(super) fn signal(fields: &[(&str, &str)], state: BudgetState, sequence: i64) -> BudgetSignal {
    let scope_fields: BTreeMap<String, String> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let canonical: Vec<String> = scope_fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    BudgetSignal {
        scope: format!("day:{}", canonical.join(",")),
        scope_fields,
        period: BudgetPeriod::Day,
        period_start: t(NOW - 3600),
        period_end: t(NOW + 3600),
        state,
        action: state.as_str().to_lowercase(),
        spend_usd: Money::ZERO,
        limit_usd: None,
        remaining_usd: None,
        spent_tokens: 0,
        limit_tokens: None,
        burn_rate_usd_per_hour: Money::ZERO,
        projected_exhaustion: None,
        throttle_fraction_ppm: (state == BudgetState::Throttle).then_some(500_000),
        throttle_rate_per_sec: None,
        retry_after_ms: Some(250),
        reroute: if state == BudgetState::Reroute {
            [("gpt-4o".to_owned(), "gpt-4o-mini".to_owned())].into_iter().collect()
        } else {
            BTreeMap::new()
        },
        valid_until: t(NOW + 3600),
        reason: format!("{} reason", state.as_str()),
        sequence,
        emitted_at: t(NOW - 60),
        enforcement: Default::default(),
    }
}

fn table(policy: RouterPolicy, signals: Vec<BudgetSignal>) -> (SignalTable, Arc<Snapshot>) {
    let mut table = SignalTable::new(policy);
    for s in signals {
        assert_eq!(table.apply(s), Applied::Updated);
    }
    let snap = table.snapshot();
    (table, snap)
}

fn acme() -> CallContext<'static> {
    CallContext::tenant("acme").team("search")
}

#[test]
fn no_signals_allows() {
    let (_, snap) = table(RouterPolicy::default(), vec![]);
    assert_eq!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Allow);
    assert!(snap.is_empty());
}

#[test]
fn ok_and_notify_allow() {
    let (_, snap) = table(
        RouterPolicy::default(),
        vec![
            signal(&[("tenant_id", "acme")], BudgetState::Ok, 1),
            signal(&[("tenant_id", "acme"), ("team", "search")], BudgetState::Notify, 1),
        ],
    );
    assert_eq!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Allow);
    assert_eq!(snap.len(), 2);
}

#[test]
fn block_wins_over_everything() {
    let (_, snap) = table(
        RouterPolicy::default(),
        vec![
            signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1),
            signal(&[("tenant_id", "acme"), ("team", "search")], BudgetState::Throttle, 1),
            signal(&[("tenant_id", "acme"), ("team", "search"), ("model", "gpt-4o")], BudgetState::Block, 1),
        ],
    );
    match snap.decide_at(&acme(), "gpt-4o", NOW_US) {
        Decision::Block { reason, scope } => {
            assert_eq!(&*reason, "BLOCK reason");
            assert_eq!(&*scope, "day:model=gpt-4o,team=search,tenant_id=acme");
        }
        other => panic!("expected block, got {other:?}"),
    }
    // Another model is not covered by the model scope: throttle (half) then reroute does
    // not apply to it.
    let decisions: Vec<Decision> = (0..4).map(|_| snap.decide_at(&acme(), "claude-sonnet-4", NOW_US)).collect();
    assert_eq!(decisions.iter().filter(|d| **d == Decision::Allow).count(), 2);
    assert!(decisions.iter().all(|d| matches!(d, Decision::Allow | Decision::Throttle { .. })));
}

#[test]
fn throttle_refusal_beats_reroute_and_admitted_calls_are_rerouted() {
    let (_, snap) = table(
        RouterPolicy::default(),
        vec![
            signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1),
            signal(&[("tenant_id", "acme"), ("team", "search")], BudgetState::Throttle, 1),
        ],
    );
    let first = snap.decide_at(&acme(), "gpt-4o", NOW_US);
    assert_eq!(
        first,
        Decision::Throttle { retry_after: Duration::from_millis(250), scope: "day:team=search,tenant_id=acme".into() }
    );
    let second = snap.decide_at(&acme(), "gpt-4o", NOW_US);
    assert_eq!(second, Decision::Reroute { to: "gpt-4o-mini".into(), from: "gpt-4o".into(), scope: "day:tenant_id=acme".into() });
    assert!(!first.is_allowed());
    assert_eq!(second.model_to_call("gpt-4o"), Some("gpt-4o-mini"));
}

#[test]
fn a_reroute_keeps_the_throttle_below_it_in_force_for_every_model() {
    let mut s = signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1);
    s.throttle_fraction_ppm = Some(500_000);
    let (_, snap) = table(RouterPolicy::default(), vec![s]);
    let rerouted: Vec<Decision> = (0..4).map(|_| snap.decide_at(&acme(), "gpt-4o", NOW_US)).collect();
    assert_eq!(rerouted.iter().filter(|d| matches!(d, Decision::Throttle { .. })).count(), 2);
    assert_eq!(rerouted.iter().filter(|d| matches!(d, Decision::Reroute { .. })).count(), 2);
    let other: Vec<Decision> = (0..4).map(|_| snap.decide_at(&acme(), "o1", NOW_US)).collect();
    assert_eq!(other.iter().filter(|d| matches!(d, Decision::Throttle { .. })).count(), 2);
    assert_eq!(other.iter().filter(|d| **d == Decision::Allow).count(), 2);
}

#[test]
fn a_rate_throttle_admits_its_rate_and_says_when_to_retry() {
    let mut s = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
    s.throttle_fraction_ppm = None;
    s.throttle_rate_per_sec = Some(2);
    let (_, snap) = table(RouterPolicy::default(), vec![s]);
    assert_eq!(snap.decide_at(&acme(), "m", NOW_US), Decision::Allow);
    assert_eq!(snap.decide_at(&acme(), "m", NOW_US), Decision::Allow);
    assert_eq!(
        snap.decide_at(&acme(), "m", NOW_US),
        Decision::Throttle { retry_after: Duration::from_millis(500), scope: "day:tenant_id=acme".into() }
    );
    assert_eq!(snap.decide_at(&acme(), "m", NOW_US + 500_000), Decision::Allow);
    // With a fraction as well, a call must pass both.
    let mut both = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
    both.throttle_rate_per_sec = Some(1_000);
    let (_, snap) = table(RouterPolicy::default(), vec![both]);
    let kinds: Vec<bool> = (0..4).map(|_| snap.decide_at(&acme(), "m", NOW_US).is_allowed()).collect();
    assert_eq!(kinds, [false, true, false, true]);
}

#[test]
fn concurrent_callers_share_one_exact_throttle() {
    let mut s = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
    s.throttle_fraction_ppm = Some(250_000);
    let (_, snap) = table(RouterPolicy::default(), vec![s]);
    let admitted: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..10_000).filter(|_| snap.decide_at(&acme(), "m", NOW_US).is_allowed()).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(admitted, 10_000, "a quarter of 40,000 calls, exactly, whatever the interleaving");
}

#[test]
fn reroute_only_touches_models_in_its_map() {
    let (_, snap) = table(RouterPolicy::default(), vec![signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1)]);
    assert_eq!(snap.decide_at(&acme(), "gpt-4o-mini", NOW_US), Decision::Allow);
    assert!(matches!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Reroute { .. }));
}

#[test]
fn scopes_of_other_tenants_and_other_attributes_do_not_apply() {
    let (_, snap) = table(
        RouterPolicy::default(),
        vec![
            signal(&[("tenant_id", "globex")], BudgetState::Block, 1),
            signal(&[("tenant_id", "acme"), ("team", "ads")], BudgetState::Block, 1),
            signal(&[("tenant_id", "acme"), ("user_id", "u1")], BudgetState::Block, 1),
            signal(&[("tenant_id", "acme"), ("api_key_id", "k1")], BudgetState::Block, 1),
            signal(&[("tenant_id", "acme"), ("team", "search"), ("project", "p9")], BudgetState::Block, 1),
        ],
    );
    assert_eq!(snap.decide_at(&acme(), "gpt-4o", NOW_US), Decision::Allow);
    assert!(matches!(snap.decide_at(&acme().user("u1"), "gpt-4o", NOW_US), Decision::Block { .. }));
    assert!(matches!(snap.decide_at(&acme().api_key("k1"), "gpt-4o", NOW_US), Decision::Block { .. }));
    assert!(matches!(snap.decide_at(&acme().project("p9"), "gpt-4o", NOW_US), Decision::Block { .. }));
    assert!(matches!(snap.decide_at(&CallContext::tenant("globex"), "x", NOW_US), Decision::Block { .. }));
}

#[test]
fn scopes_without_tenant_apply_to_every_tenant() {
    let (_, snap) = table(RouterPolicy::default(), vec![signal(&[("model", "o1")], BudgetState::Block, 1)]);
    assert!(matches!(snap.decide_at(&CallContext::tenant("anyone"), "o1", NOW_US), Decision::Block { .. }));
    assert_eq!(snap.decide_at(&CallContext::tenant("anyone"), "o3", NOW_US), Decision::Allow);
}

#[test]
fn older_or_equal_sequence_is_ignored() {
    let mut table = SignalTable::new(RouterPolicy::default());
    assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Block, 5)), Applied::Updated);
    assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Ok, 4)), Applied::NotNewer { have: 5, got: 4 });
    assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Ok, 5)), Applied::NotNewer { have: 5, got: 5 });
    assert!(matches!(table.snapshot().decide_at(&acme(), "m", NOW_US), Decision::Block { .. }));
    assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Ok, 6)), Applied::Updated);
    assert_eq!(table.snapshot().decide_at(&acme(), "m", NOW_US), Decision::Allow);
    assert_eq!(table.len(), 1);
}

#[test]
fn tombstone_forgets_the_scope() {
    let (mut table, _) = table(RouterPolicy::default(), vec![signal(&[("tenant_id", "acme")], BudgetState::Block, 1)]);
    assert!(table.remove("day:tenant_id=acme"));
    assert!(!table.remove("day:tenant_id=acme"));
    let snap = table.snapshot();
    assert_eq!(snap.decide_at(&acme(), "m", NOW_US), Decision::Allow);
    assert!(snap.is_empty());
}

#[test]
fn stale_signals_fail_open_or_closed() {
    let mut ok = signal(&[("tenant_id", "acme")], BudgetState::Ok, 1);
    ok.valid_until = t(NOW - 1);
    let mut block = signal(&[("tenant_id", "globex")], BudgetState::Block, 1);
    block.valid_until = t(NOW - 1);
    let (_, open) = table(RouterPolicy::default(), vec![ok.clone(), block.clone()]);
    assert_eq!(open.decide_at(&acme(), "m", NOW_US), Decision::Allow);
    assert_eq!(open.decide_at(&CallContext::tenant("globex"), "m", NOW_US), Decision::Allow);
    // Still valid one microsecond earlier.
    assert!(matches!(open.decide_at(&CallContext::tenant("globex"), "m", NOW_US - 1_000_001), Decision::Block { .. }));

    let closed_policy = RouterPolicy { stale: StalePolicy::FailClosed, ..RouterPolicy::default() };
    let (_, closed) = table(closed_policy, vec![ok, block]);
    for tenant in ["acme", "globex"] {
        match closed.decide_at(&CallContext::tenant(tenant), "m", NOW_US) {
            Decision::Block { reason, .. } => assert!(reason.contains("fails closed"), "{reason}"),
            other => panic!("expected a stale block, got {other:?}"),
        }
    }
    assert_eq!(closed.decide_at(&CallContext::tenant("initech"), "m", NOW_US), Decision::Allow);
}

#[test]
fn unknown_scope_field_is_unusable_and_keeps_the_previous_state() {
    let mut table = SignalTable::new(RouterPolicy::default());
    assert_eq!(table.apply(signal(&[("tenant_id", "acme")], BudgetState::Block, 1)), Applied::Updated);
    let mut odd = signal(&[("tenant_id", "acme")], BudgetState::Ok, 2);
    odd.scope_fields.insert("feature".into(), "chat".into());
    assert!(matches!(table.apply(odd), Applied::Unusable(Unusable::UnknownField(f)) if f == "feature"));
    assert!(matches!(table.snapshot().decide_at(&acme(), "m", NOW_US), Decision::Block { .. }));
}

#[test]
fn throttle_without_parameters_admits_nothing_and_default_retry_applies() {
    let mut s = signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1);
    s.throttle_fraction_ppm = None;
    s.retry_after_ms = None;
    let (_, snap) = table(RouterPolicy::default(), vec![s]);
    for _ in 0..3 {
        assert_eq!(
            snap.decide_at(&acme(), "m", NOW_US),
            Decision::Throttle { retry_after: Duration::from_millis(1000), scope: "day:tenant_id=acme".into() }
        );
    }
}

#[test]
fn snapshot_keeps_unchanged_tenants_and_throttle_counters() {
    let mut table = SignalTable::new(RouterPolicy::default());
    table.apply(signal(&[("tenant_id", "acme")], BudgetState::Throttle, 1));
    let first = table.snapshot();
    assert!(!first.decide_at(&acme(), "m", NOW_US).is_allowed());
    table.apply(signal(&[("tenant_id", "globex")], BudgetState::Block, 1));
    let second = table.snapshot();
    // acme's gate carried over: the second call of the half throttle is admitted.
    assert!(second.decide_at(&acme(), "m", NOW_US).is_allowed());
    assert!(Arc::ptr_eq(first.by_tenant.get("acme").unwrap(), second.by_tenant.get("acme").unwrap()));
    assert!(Arc::ptr_eq(&table.snapshot(), &second), "no change, same snapshot");
    assert_eq!(second.signal("day:tenant_id=globex").map(|s| s.state), Some(BudgetState::Block));
    assert_eq!(second.signals().count(), 2);
}

#[test]
fn stamp_marks_rerouted_events() {
    let d = Decision::Reroute { to: "gpt-4o-mini".into(), from: "gpt-4o".into(), scope: "s".into() };
    let mut event: UsageEvent = serde_json::from_str(
        r#"{"event_id":"e","event_time":"2026-11-01T00:00:00Z","tenant_id":"acme","provider":"openai","request_model":"gpt-4o"}"#,
    )
    .unwrap();
    Decision::Allow.stamp_usage_event(&mut event);
    assert_eq!(event.routed_from_model, None);
    d.stamp_usage_event(&mut event);
    assert_eq!(event.request_model, "gpt-4o-mini");
    assert_eq!(event.routed_from_model.as_deref(), Some("gpt-4o"));
    // An event already built with the model called keeps it.
    let mut called = event.clone();
    called.request_model = "gpt-4o-mini-2024-07-18".into();
    d.stamp_usage_event(&mut called);
    assert_eq!(called.request_model, "gpt-4o-mini-2024-07-18");
}

fn state_strategy() -> impl Strategy<Value = BudgetState> {
    prop::sample::select(BudgetState::ALL.to_vec())
}

/// The scope shapes of ledger_core::aggregate::SpendScope, plus one without a tenant.
const SHAPES: [&[&str]; 9] = [
    &["tenant_id"],
    &["tenant_id", "team"],
    &["tenant_id", "team", "project"],
    &["tenant_id", "user_id"],
    &["tenant_id", "api_key_id"],
    &["tenant_id", "model"],
    &["tenant_id", "team", "model"],
    &["tenant_id", "team", "project", "model"],
    &["model"],
];

fn value_of(field: &str, pick: u8) -> &'static str {
    match (field, pick % 2) {
        ("tenant_id", 0) => "acme",
        ("tenant_id", _) => "globex",
        ("team", 0) => "search",
        ("team", _) => "ads",
        ("project", 0) => "p1",
        ("project", _) => "p2",
        ("user_id", 0) => "u1",
        ("user_id", _) => "u2",
        ("api_key_id", 0) => "k1",
        ("api_key_id", _) => "k2",
        ("model", 0) => "gpt-4o",
        _ => "o1",
    }
}

proptest! {
    /// The decision equals a brute-force reading of the precedence rules over every scope
    /// (throttles at fraction 0 or 1 so that the expected answer does not depend on counters).
    #[test]
    fn decision_follows_the_precedence(
        scopes in prop::collection::vec((0usize..SHAPES.len(), any::<[u8; 5]>(), state_strategy(), any::<bool>(), any::<bool>()), 0..12),
        call in any::<[u8; 6]>(),
        closed in any::<bool>(),
    ) {
        let policy = RouterPolicy { stale: if closed { StalePolicy::FailClosed } else { StalePolicy::FailOpen }, ..RouterPolicy::default() };
        let mut signals = BTreeMap::new();
        for (i, (shape, picks, state, stale, admit_all)) in scopes.into_iter().enumerate() {
            let fields: Vec<(&str, &str)> = SHAPES[shape].iter().enumerate().map(|(j, f)| (*f, value_of(f, picks[j % 5]))).collect();
            let mut s = signal(&fields, state, i as i64 + 1);
            if stale { s.valid_until = t(NOW - 10); }
            if state == BudgetState::Throttle { s.throttle_fraction_ppm = Some(if admit_all { 1_000_000 } else { 0 }); }
            signals.insert(s.scope.clone(), s); // same key: the later (higher sequence) wins
        }
        let ctx = CallContext::tenant(value_of("tenant_id", call[0]))
            .team(value_of("team", call[1]))
            .project(value_of("project", call[2]))
            .user(value_of("user_id", call[3]))
            .api_key(value_of("api_key_id", call[4]));
        let model = value_of("model", call[5]);
        let mut table = SignalTable::new(policy);
        for s in signals.values() { table.apply(s.clone()); }
        let got = table.snapshot().decide_at(&ctx, model, NOW_US);

        let applies = |s: &BudgetSignal| s.scope_fields.iter().all(|(k, v)| match k.as_str() {
            "tenant_id" => v == ctx.tenant_id,
            "team" => ctx.team == Some(v.as_str()),
            "project" => ctx.project == Some(v.as_str()),
            "user_id" => ctx.user_id == Some(v.as_str()),
            "api_key_id" => ctx.api_key_id == Some(v.as_str()),
            "model" => v == model,
            _ => false,
        });
        let live: Vec<&BudgetSignal> = signals.values().filter(|s| applies(s)).collect();
        let stale = |s: &BudgetSignal| s.valid_until <= t(NOW);
        let expected_kind = if live.iter().any(|s| (closed && stale(s)) || (!stale(s) && s.state == BudgetState::Block)) {
            "block"
        } else if live.iter().any(|s| !stale(s) && s.state == BudgetState::Throttle && s.throttle_fraction_ppm == Some(0)) {
            "throttle"
        } else if live.iter().any(|s| !stale(s) && s.state == BudgetState::Reroute && s.reroute.contains_key(model)) {
            "reroute"
        } else {
            "allow"
        };
        let got_kind = match got { Decision::Allow => "allow", Decision::Reroute { .. } => "reroute", Decision::Throttle { .. } => "throttle", Decision::Block { .. } => "block" };
        prop_assert_eq!(got_kind, expected_kind);
    }

    /// Applying records in any order leaves each scope at its highest sequence.
    #[test]
    fn highest_sequence_wins_in_any_order(order in Just((1..=20i64).collect::<Vec<_>>()).prop_shuffle()) {
        let mut table = SignalTable::new(RouterPolicy::default());
        for seq in &order {
            let state = BudgetState::ALL[(*seq as usize) % 5];
            table.apply(signal(&[("tenant_id", "acme")], state, *seq));
        }
        let snap = table.snapshot();
        let s = snap.signal("day:tenant_id=acme").unwrap();
        prop_assert_eq!(s.sequence, 20);
        prop_assert_eq!(s.state, BudgetState::ALL[20 % 5]);
    }
}
