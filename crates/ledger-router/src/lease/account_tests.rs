use super::*;
use chrono::DateTime;

const C: i128 = 25_000_000_000; // 0.025 USD in picos

fn settings() -> LeaseSettings {
    LeaseSettings { grant_timeout_ms: 1_000, ..LeaseSettings::default() }
}

fn account(now: Instant) -> Arc<LeaseAccount> {
    Arc::new(LeaseAccount::new(Arc::from("day:tenant_id=acme"), now))
}

fn grant(request: &LeaseRequest, status: LeaseStatus, amount: i128, ttl_ms: i64) -> LeaseGrant {
    let at = DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000).unwrap();
    LeaseGrant {
        request_id: request.request_id.clone(),
        instance_id: request.instance_id.clone(),
        budget: request.budget.clone(),
        status,
        lease_id: if status == LeaseStatus::Granted { request.request_id.clone() } else { String::new() },
        amount_usd: Money::from_picos(amount),
        granted_at: at,
        expires_at: at + chrono::Duration::milliseconds(ttl_ms),
        call_timeout_ms: 5_000,
        retry_after_ms: 200,
        reason: "because".into(),
    }
}

fn part(r: (Result<Reserved, Refusal>, bool)) -> Part {
    match r.0 {
        Ok(Reserved::Part(p)) => p,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("req-{n}")
    }
}

#[test]
fn the_first_call_asks_and_waits_then_calls_spend_the_grant_and_refunds_come_back() {
    let t0 = Instant::now();
    let (a, s, mut id) = (account(t0), settings(), ids());
    let (refused, wake) = a.reserve(C, t0, &s);
    assert_eq!((refused.unwrap_err(), wake), (Refusal::Empty, true));
    assert!(!a.reserve(C, t0, &s).1, "one request at a time");
    let (request, _) = a.maintain(t0, &s, "r1", &mut id);
    let request = request.unwrap();
    assert_eq!((request.least_usd.picos(), request.wanted_usd.picos()), (C, 4 * C), "min_lease_calls of the waiting call");
    assert!(a.apply_grant(&grant(&request, LeaseStatus::Granted, 4 * C, 10_000), t0));
    let p1 = part(a.reserve(C, t0, &s));
    let p2 = part(a.reserve(C, t0, &s));
    assert_eq!(a.open_allowance().picos(), 2 * C);
    // The second call crossed the low watermark (half of what was asked): a request is wanted.
    let (next, _) = a.maintain(t0 + Duration::from_millis(100), &s, "r1", &mut id);
    let next = next.unwrap();
    assert!(next.wanted_usd.picos() >= 4 * C, "sized by the rate: {}", next.wanted_usd);
    assert!(next.returns.is_empty());
    // The calls cost less than estimated: the refund is allowance again.
    a.complete(&p1, C - 5_000_000_000);
    a.complete(&p2, C);
    assert_eq!(a.open_allowance().picos(), 2 * C + 5_000_000_000);
}

#[test]
fn a_new_grant_closes_the_old_lease_which_is_returned_done_once_its_calls_are_reported() {
    let t0 = Instant::now();
    let (a, s, mut id) = (account(t0), settings(), ids());
    assert!(a.reserve(C, t0, &s).0.is_err(), "no lease yet");
    let r1 = a.maintain(t0, &s, "r1", &mut id).0.unwrap();
    a.apply_grant(&grant(&r1, LeaseStatus::Granted, 3 * C, 10_000), t0);
    let p1 = part(a.reserve(C, t0, &s));
    let p2 = part(a.reserve(C, t0, &s));
    let r2 = a.maintain(t0, &s, "r1", &mut id).0.unwrap();
    a.apply_grant(&grant(&r2, LeaseStatus::Granted, 4 * C, 10_000), t0);
    a.complete(&p1, C);
    // p2 is still in flight: the old lease is returned not done, with both estimates.
    let (returns, _) = a.maintain(t0, &s, "r1", &mut id);
    let returns = returns.unwrap();
    assert_eq!(returns.wanted_usd, Money::ZERO);
    assert_eq!(
        returns.returns,
        vec![LeaseReturn { lease_id: r1.request_id.clone(), used_usd: Money::from_picos(2 * C), done: false }]
    );
    assert!(a.maintain(t0, &s, "r1", &mut id).0.is_none(), "said once");
    a.complete(&p2, C - 1);
    let done = a.maintain(t0, &s, "r1", &mut id).0.unwrap();
    assert_eq!(done.returns, vec![LeaseReturn { lease_id: r1.request_id, used_usd: Money::from_picos(2 * C - 1), done: true }]);
    assert_eq!(a.open_allowance().picos(), 4 * C, "the new lease is untouched");
}

#[test]
fn calls_never_reported_are_returned_done_after_the_call_timeout() {
    let t0 = Instant::now();
    let (a, s, mut id) = (account(t0), settings(), ids());
    assert!(a.reserve(C, t0, &s).0.is_err(), "no lease yet");
    let r1 = a.maintain(t0, &s, "r1", &mut id).0.unwrap();
    a.apply_grant(&grant(&r1, LeaseStatus::Granted, C, 2_000), t0);
    let _lost = part(a.reserve(C, t0, &s));
    // The lease expires at 95% of its 2 s lifetime; its call is never reported.
    assert_eq!(a.open_allowance(), Money::ZERO, "used up");
    let stopped = a.maintain(t0 + Duration::from_millis(1_901), &s, "r1", &mut id).0.unwrap();
    assert_eq!(stopped.returns.iter().map(|r| r.done).collect::<Vec<_>>(), [false]);
    // It also asked for the next lease (the call used the first up): the budget is spent.
    assert!(a.apply_grant(&grant(&stopped, LeaseStatus::Exhausted, 0, 0), t0 + Duration::from_millis(1_901)));
    let r = a.maintain(t0 + Duration::from_millis(4_000), &s, "r1", &mut id).0;
    assert!(r.is_none(), "{r:?}");
    let done = a.maintain(t0 + Duration::from_millis(5_000), &s, "r1", &mut id).0.unwrap();
    assert_eq!(done.returns, vec![LeaseReturn { lease_id: r1.request_id, used_usd: Money::from_picos(C), done: true }]);
}

#[test]
fn wait_exhausted_and_an_unreachable_enforcer_refuse_calls() {
    let t0 = Instant::now();
    let (a, s, mut id) = (account(t0), settings(), ids());
    assert!(a.reserve(C, t0, &s).0.is_err(), "no lease yet");
    let r1 = a.maintain(t0, &s, "r1", &mut id).0.unwrap();
    // No answer within the grant timeout: the same request again, and calls see Unreachable.
    assert!(a.maintain(t0 + Duration::from_millis(999), &s, "r1", &mut id).0.is_none());
    let (again, timed_out) = a.maintain(t0 + Duration::from_millis(1_000), &s, "r1", &mut id);
    assert_eq!((again.unwrap().request_id, timed_out), (r1.request_id.clone(), true));
    assert_eq!(a.reserve(C, t0 + Duration::from_millis(1_001), &s).0.unwrap_err(), Refusal::Unreachable);
    // WAIT: refused with its retry until it passes, then a new request.
    let t1 = t0 + Duration::from_millis(1_100);
    assert!(a.apply_grant(&grant(&r1, LeaseStatus::Wait, 0, 0), t1));
    let (refused, wake) = a.reserve(C, t1, &s);
    assert_eq!((refused.unwrap_err(), wake), (Refusal::Wait(Duration::from_millis(200)), false));
    let t2 = t1 + Duration::from_millis(200);
    assert!(a.reserve(C, t2, &s).1, "asks again");
    let r2 = a.maintain(t2, &s, "r1", &mut id).0.unwrap();
    assert_ne!(r2.request_id, r1.request_id);
    assert!(!a.apply_grant(&grant(&r1, LeaseStatus::Granted, C, 1_000), t2), "an answer to an old request is ignored");
    assert!(a.apply_grant(&grant(&r2, LeaseStatus::Exhausted, 0, 0), t2));
    assert_eq!(a.reserve(C, t2, &s).0.unwrap_err(), Refusal::Exhausted(Arc::from("because")));
}
