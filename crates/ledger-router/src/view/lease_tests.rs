//! Decisions under lease budgets, without Kafka: grants are applied by hand.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ledger_core::catalog::{Catalog, CatalogSource};
use ledger_core::lease::{LeaseGrant, LeaseStatus};
use ledger_core::signal::{BudgetState, Enforcement};
use ledger_core::Money;

use super::tests::signal;
use super::*;
use crate::lease::estimate::Estimator;
use crate::lease::{CallSize, LeaseRegistry, LeaseSettings};

const NOW_US: i64 = 1_800_000_000 * 1_000_000;
const KEY: &str = "day:tenant_id=acme";

fn registry(settings: LeaseSettings) -> Arc<LeaseRegistry> {
    let json = r#"{"gpt-4o": {"input_cost_per_token": "2.5e-06", "output_cost_per_token": "1e-05"},
                   "gpt-4o-mini": {"input_cost_per_token": "1.5e-07", "output_cost_per_token": "6e-07"}}"#;
    let (source, _) = CatalogSource::from_litellm_json("prices", chrono::DateTime::UNIX_EPOCH, json).unwrap();
    let catalog = Arc::new(Catalog::new(vec![source]).unwrap());
    Arc::new(LeaseRegistry::new(settings, Estimator::new(Some(catalog), 1_000, Default::default())))
}

fn leased(state: BudgetState, sequence: i64) -> ledger_core::signal::BudgetSignal {
    ledger_core::signal::BudgetSignal { enforcement: Enforcement::Lease, ..signal(&[("tenant_id", "acme")], state, sequence) }
}

fn table(reg: &Arc<LeaseRegistry>, signals: Vec<ledger_core::signal::BudgetSignal>) -> Arc<Snapshot> {
    let mut t = SignalTable::with_leases(RouterPolicy::default(), reg.clone());
    for s in signals {
        assert_eq!(t.apply(s), Applied::Updated);
    }
    t.snapshot()
}

/// Sends what the account wants and grants it `usd`.
fn grant(reg: &LeaseRegistry, usd: &str) {
    let account = reg.find(KEY).expect("an account for the lease scope");
    let (request, _) = account.maintain(Instant::now(), &reg.settings, &reg.instance, || "lease-1".to_owned());
    let request = request.expect("a request");
    let at = DateTime::<Utc>::from_timestamp_micros(NOW_US).unwrap();
    let g = LeaseGrant {
        request_id: request.request_id.clone(),
        instance_id: request.instance_id,
        budget: request.budget,
        status: LeaseStatus::Granted,
        lease_id: request.request_id,
        amount_usd: usd.parse().unwrap(),
        granted_at: at,
        expires_at: at + chrono::Duration::seconds(10),
        call_timeout_ms: 30_000,
        retry_after_ms: 0,
        reason: String::new(),
    };
    assert!(account.apply_grant(&g, Instant::now()));
}

const SIZE: CallSize<'static> = CallSize { input_tokens: 2_000, max_tokens: Some(2_000), provider: "" };

#[test]
fn a_lease_budget_throttles_until_granted_then_reserves_each_call_and_completes_to_the_actual_cost() {
    let reg = registry(LeaseSettings::default());
    let snap = table(&reg, vec![leased(BudgetState::Ok, 1)]);
    let ctx = CallContext::tenant("acme");
    let first = snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US);
    assert!(matches!(first.decision, Decision::Throttle { ref scope, .. } if &**scope == KEY), "{:?}", first.decision);
    grant(&reg, "0.05");
    let a = snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US);
    assert_eq!(a.decision, Decision::Allow);
    let r = a.reservation.expect("reserved");
    assert_eq!(r.estimate(), "0.025".parse().unwrap());
    assert_eq!(r.budgets().collect::<Vec<_>>(), [KEY]);
    let b = snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US).reservation.expect("room for a second");
    assert!(snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US).decision != Decision::Allow, "the third does not fit");
    // The first cost 0.02: 0.005 is refunded, and a call of gpt-4o-mini fits in it.
    reg.complete(&r, Some("0.02".parse().unwrap()));
    let mini = snap.decide_call_at(&ctx, "gpt-4o-mini", &SIZE, NOW_US);
    assert_eq!(mini.decision, Decision::Allow);
    reg.complete(&b, None);
    let stats = reg.counters.snapshot();
    assert_eq!((stats.reserved, stats.estimate_error.count), (3, 1));
    assert_eq!(stats.estimate_error.sum, "0.005".parse::<Money>().unwrap());
    // Another tenant is not affected; a signal-only tenant decides without reserving.
    let other = snap.decide_call_at(&CallContext::tenant("globex"), "gpt-4o", &SIZE, NOW_US);
    assert!(other.reservation.is_none() && other.decision == Decision::Allow);
}

#[test]
fn a_reroute_reserves_for_the_model_it_calls_and_block_needs_no_lease() {
    let reg = registry(LeaseSettings::default());
    let snap = table(&reg, vec![leased(BudgetState::Reroute, 1)]);
    let ctx = CallContext::tenant("acme");
    let _ = snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US);
    grant(&reg, "1");
    let call = snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US);
    assert!(matches!(call.decision, Decision::Reroute { ref to, .. } if &**to == "gpt-4o-mini"), "{:?}", call.decision);
    assert_eq!(call.reservation.unwrap().estimate(), "0.0015".parse().unwrap(), "priced as gpt-4o-mini");
    let snap = table(&reg, vec![leased(BudgetState::Block, 2)]);
    assert!(matches!(snap.decide_call_at(&ctx, "gpt-4o", &SIZE, NOW_US).decision, Decision::Block { .. }));
}

#[test]
fn without_a_catalog_or_a_known_model_calls_fail_closed_or_open_as_configured() {
    let closed = Arc::new(LeaseRegistry::new(
        LeaseSettings { when_empty: crate::EmptyPolicy::Block, ..LeaseSettings::default() },
        Estimator::new(None, 1_000, Default::default()),
    ));
    let snap = table(&closed, vec![leased(BudgetState::Ok, 1)]);
    let d = snap.decide_call_at(&CallContext::tenant("acme"), "gpt-4o", &SIZE, NOW_US).decision;
    assert!(matches!(&d, Decision::Block { reason, .. } if reason.contains("no price catalog")), "{d:?}");
    let open = registry(LeaseSettings { unreachable: StalePolicy::FailOpen, ..LeaseSettings::default() });
    let snap = table(&open, vec![leased(BudgetState::Ok, 1)]);
    let call = snap.decide_call_at(&CallContext::tenant("acme"), "unknown-model", &SIZE, NOW_US);
    assert_eq!((call.decision, call.reservation.is_none()), (Decision::Allow, true));
    assert_eq!(open.counters.snapshot().unleased, 1);
}
