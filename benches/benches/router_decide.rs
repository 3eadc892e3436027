//! `Router::decide` with 10,000 scopes loaded (1,250 tenants x the 8 spend scope shapes, in
//! every state). Goal (issue 5): well under one microsecond per decision.
//!
//! `cargo bench -p ledger-benches --bench router_decide`
//!
//! Each case goes through the whole read path of a running router (atomic snapshot load, tenant
//! index, scope matching, the clock when a scope applies, the throttle gate).

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ledger_core::signal::{BudgetPeriod, BudgetSignal, BudgetState};
use ledger_core::Money;
use ledger_router::{CallContext, Decision, Router, RouterPolicy, StalePolicy};

const TENANTS: usize = 1_250;

/// The 8 scope shapes of `ledger_core::aggregate::SpendScope`.
const SHAPES: [&[&str]; 8] = [
    &["tenant_id"],
    &["tenant_id", "team"],
    &["tenant_id", "team", "project"],
    &["tenant_id", "user_id"],
    &["tenant_id", "api_key_id"],
    &["tenant_id", "model"],
    &["tenant_id", "team", "model"],
    &["tenant_id", "team", "project", "model"],
];

fn signal(tenant: &str, shape: &[&str], state: BudgetState) -> BudgetSignal {
    let fields: BTreeMap<String, String> = shape
        .iter()
        .map(|f| {
            let v = match *f {
                "tenant_id" => tenant.to_owned(),
                "team" => "search".to_owned(),
                "project" => "ranker".to_owned(),
                "user_id" => "u-17".to_owned(),
                "api_key_id" => "key-3".to_owned(),
                _ => "gpt-4o".to_owned(),
            };
            ((*f).to_owned(), v)
        })
        .collect();
    let key: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let now = Utc::now();
    BudgetSignal {
        scope: format!("month:{}", key.join(",")),
        scope_fields: fields,
        period: BudgetPeriod::Month,
        period_start: now - Duration::days(1),
        period_end: now + Duration::days(30),
        state,
        action: String::new(),
        spend_usd: Money::ZERO,
        limit_usd: None,
        remaining_usd: None,
        spent_tokens: 0,
        limit_tokens: None,
        burn_rate_usd_per_hour: Money::ZERO,
        projected_exhaustion: None,
        throttle_fraction_ppm: (state == BudgetState::Throttle).then_some(500_000),
        throttle_rate_per_sec: None,
        retry_after_ms: Some(1_000),
        reroute: if state == BudgetState::Reroute {
            [("gpt-4o".to_owned(), "gpt-4o-mini".to_owned())].into_iter().collect()
        } else {
            BTreeMap::new()
        },
        valid_until: now + Duration::days(30),
        reason: "bench".to_owned(),
        sequence: 1,
        emitted_at: now,
        enforcement: Default::default(),
    }
}

/// 10,000 scopes: tenant `t{i}` has all 8 shapes; the state of its scopes depends on `i % 5`
/// (OK, NOTIFY, THROTTLE, REROUTE, BLOCK on the tenant-wide scope; OK on the others).
fn signals() -> Vec<BudgetSignal> {
    let mut out = Vec::with_capacity(TENANTS * SHAPES.len());
    for i in 0..TENANTS {
        let tenant = format!("t{i}");
        for (s, shape) in SHAPES.iter().enumerate() {
            let state = if s == 0 { BudgetState::ALL[i % 5] } else { BudgetState::Ok };
            out.push(signal(&tenant, shape, state));
        }
    }
    out
}

fn decide(c: &mut Criterion) {
    let open = Router::from_signals(RouterPolicy::default(), signals());
    let closed = Router::from_signals(RouterPolicy { stale: StalePolicy::FailClosed, ..RouterPolicy::default() }, signals());
    assert_eq!(open.snapshot().len(), TENANTS * SHAPES.len());

    // t0: OK everywhere; t2: THROTTLE; t3: REROUTE; t4: BLOCK (tenant-wide scope).
    let call = |tenant: &'static str| CallContext::tenant(tenant).team("search").project("ranker").user("u-17").api_key("key-3");
    assert_eq!(open.decide(&call("t0"), "gpt-4o"), Decision::Allow);
    assert!(matches!(open.decide(&call("t3"), "gpt-4o"), Decision::Reroute { .. }));
    assert!(matches!(open.decide(&call("t4"), "gpt-4o"), Decision::Block { .. }));

    let mut group = c.benchmark_group("router_decide_10k_scopes");
    group.bench_function("allow_unknown_tenant", |b| {
        let ctx = call("nobody");
        b.iter(|| black_box(open.decide(black_box(&ctx), black_box("gpt-4o"))))
    });
    group.bench_function("allow_8_ok_scopes_fail_open", |b| {
        let ctx = call("t0");
        b.iter(|| black_box(open.decide(black_box(&ctx), black_box("gpt-4o"))))
    });
    group.bench_function("allow_8_ok_scopes_fail_closed", |b| {
        let ctx = call("t0");
        b.iter(|| black_box(closed.decide(black_box(&ctx), black_box("gpt-4o"))))
    });
    group.bench_function("throttle_half", |b| {
        let ctx = call("t2");
        b.iter(|| black_box(open.decide(black_box(&ctx), black_box("gpt-4o"))))
    });
    group.bench_function("reroute", |b| {
        let ctx = call("t3");
        b.iter(|| black_box(open.decide(black_box(&ctx), black_box("gpt-4o"))))
    });
    group.bench_function("block", |b| {
        let ctx = call("t4");
        b.iter(|| black_box(open.decide(black_box(&ctx), black_box("gpt-4o"))))
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
