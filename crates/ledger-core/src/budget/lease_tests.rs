use super::*;
use crate::lease::LeaseReturn;
use proptest::prelude::*;

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
}

fn usd(s: &str) -> Money {
    s.parse().unwrap()
}

const BUDGET: &str = "day:tenant_id=acme";

fn facts(spend: &str) -> BudgetFacts {
    BudgetFacts { limit: usd("10"), spend: usd(spend), period: PeriodWindow { start: t(-3_600_000), end: t(3_600_000) } }
}

fn request(id: &str, instance: &str, wanted: &str, least: &str, returns: Vec<LeaseReturn>) -> LeaseRequest {
    LeaseRequest {
        request_id: id.into(),
        instance_id: instance.into(),
        budget: BUDGET.into(),
        wanted_usd: usd(wanted),
        least_usd: usd(least),
        returns,
        sent_at: t(0),
    }
}

fn ret(id: &str, used: &str, done: bool) -> LeaseReturn {
    LeaseReturn { lease_id: id.into(), used_usd: usd(used), done }
}

#[test]
fn grants_are_capped_by_the_share_and_the_percent_of_the_limit() {
    let mut book = LeaseBook::new(LeaseRules::default());
    let g = book.handle(&request("r1", "a", "5", "0.025", vec![]), Some(facts("0")), t(0)).unwrap();
    assert_eq!((g.status, g.amount_usd, g.lease_id.as_str()), (LeaseStatus::Granted, usd("1"), "r1"), "10% of 10 USD");
    assert_eq!(g.expires_at, t(10_000));
    // A second instance: the share is what is left over two askers.
    let g = book.handle(&request("r2", "b", "5", "0.025", vec![]), Some(facts("0")), t(1)).unwrap();
    assert_eq!(g.amount_usd, usd("1"));
    let out = book.outstanding(BUDGET, facts("0").period.start);
    assert_eq!((out.active, out.held, out.unsettled), (2, usd("2"), 0));
    // A retry of r1 gets the same grant, not a second one.
    let again = book.handle(&request("r1", "a", "5", "0.025", vec![]), Some(facts("0")), t(2)).unwrap();
    assert_eq!(again.lease_id, "r1");
    assert_eq!(book.outstanding(BUDGET, facts("0").period.start).active, 2);
}

#[test]
fn nothing_is_granted_past_the_limit_wait_then_exhausted() {
    let mut book = LeaseBook::new(LeaseRules { max_grant_percent: 100, ..LeaseRules::default() });
    let g = book.handle(&request("r1", "a", "9.99", "0.025", vec![]), Some(facts("0")), t(0)).unwrap();
    assert_eq!(g.amount_usd, usd("9.99"));
    // 0.01 left: less than the least useful amount, but held by a lease that may come back.
    let g = book.handle(&request("r2", "b", "1", "0.025", vec![]), Some(facts("0")), t(1)).unwrap();
    assert_eq!((g.status, g.amount_usd), (LeaseStatus::Wait, Money::ZERO));
    assert_eq!(g.retry_after_ms, 200);
    // a returns it having used 2 USD (done): the 2 USD count until settled, the rest is free.
    let g = book.handle(&request("r3", "a", "1", "0.025", vec![ret("r1", "2", true)]), Some(facts("1.5")), t(2)).unwrap();
    assert_eq!(g.amount_usd, usd("1"), "share of 10 - 1.5 - 2 over two askers, capped by wanted");
    assert_eq!(book.settle(t(2) + Duration::milliseconds(999)), 0, "not before the margin");
    assert_eq!(book.settle(t(1_002)), 1);
    // Ledger says 9.99 spent: less than one call left, whatever comes back.
    let g = book.handle(&request("r4", "b", "1", "0.025", vec![]), Some(facts("9.99")), t(3_000)).unwrap();
    assert_eq!(g.status, LeaseStatus::Exhausted);
    assert!(g.reason.contains("is spent"), "{}", g.reason);
}

#[test]
fn a_not_done_return_lowers_the_hold_and_expiry_counts_it_until_settled() {
    let mut book = LeaseBook::new(LeaseRules::default());
    let p = facts("0").period.start;
    book.handle(&request("r1", "a", "1", "0.025", vec![]), Some(facts("0")), t(0)).unwrap();
    let _ = book.handle(&request("x", "a", "0", "0", vec![ret("r1", "0.3", false)]), Some(facts("0")), t(5));
    assert_eq!(book.outstanding(BUDGET, p).held, usd("0.3"));
    // Another instance cannot return a's lease.
    book.handle(&request("y", "b", "0", "0", vec![ret("r1", "0", true)]), Some(facts("0")), t(6));
    assert_eq!(book.outstanding(BUDGET, p).active, 1);
    assert_eq!(book.expire(t(9_999)), 0);
    assert_eq!(book.expire(t(10_000)), 1);
    let out = book.outstanding(BUDGET, p);
    assert_eq!((out.active, out.unsettled, out.used), (0, 1, usd("0.3")));
    let settle = t(10_000) + Duration::seconds(31);
    assert_eq!(book.earliest_settle_point(), Some(settle));
    assert_eq!(book.settle(settle - Duration::milliseconds(1)), 0);
    assert_eq!(book.settle(settle), 1);
    assert!(book.is_empty());
}

#[test]
fn a_request_for_an_unknown_budget_is_not_leased() {
    let mut book = LeaseBook::new(LeaseRules::default());
    let g = book.handle(&request("r1", "a", "1", "0.025", vec![]), None, t(0)).unwrap();
    assert_eq!(g.status, LeaseStatus::NotLeased);
    assert!(book.is_empty());
    assert!(book.handle(&request("r2", "a", "0", "0", vec![]), None, t(0)).is_none(), "returns only: no answer");
}

#[test]
fn leases_never_outlive_their_period() {
    let mut book = LeaseBook::new(LeaseRules::default());
    let f = BudgetFacts { period: PeriodWindow { start: t(-1000), end: t(2_000) }, ..facts("0") };
    let g = book.handle(&request("r1", "a", "1", "0.025", vec![]), Some(f), t(0)).unwrap();
    assert_eq!(g.expires_at, t(2_000));
}

#[test]
fn a_rebuilt_book_counts_what_the_topics_say_and_settles_no_earlier_than_now() {
    let mut live = LeaseBook::new(LeaseRules::default());
    let p = facts("0").period.start;
    let g1 = live.handle(&request("r1", "a", "1", "0.025", vec![]), Some(facts("0")), t(0)).unwrap();
    let g2 = live.handle(&request("r2", "b", "1", "0.025", vec![]), Some(facts("0")), t(0)).unwrap();
    let back = request("r3", "a", "0", "0", vec![ret("r1", "0.4", true)]);
    live.handle(&back, Some(facts("0")), t(100));
    let mut rebuilt = LeaseBook::new(LeaseRules::default());
    rebuilt.restore_request(&back, t(100)); // requests may be read before the grants they return
    for g in [&g1, &g2] {
        rebuilt.restore_grant(g, p);
    }
    rebuilt.restore_request(&back, t(100));
    assert_eq!(rebuilt.earliest_settle_point(), Some(t(1_100)), "as when read live");
    rebuilt.finish_restore(t(500));
    assert_eq!(rebuilt.outstanding(BUDGET, p), live.outstanding(BUDGET, p));
    assert_eq!(rebuilt.earliest_settle_point(), Some(t(1_500)), "settles against the usage topic after the restart");
    // The retried request r2 gets its grant again.
    let again = rebuilt.handle(&request("r2", "b", "1", "0.025", vec![]), Some(facts("0")), t(600)).unwrap();
    assert_eq!(again, g2);
}

proptest! {
    /// Whatever routers ask and return, and whatever the ledger shows (never more than what
    /// was used), a grant never brings spend + outstanding over the limit.
    #[test]
    fn grants_never_exceed_what_remains(ops in prop::collection::vec((0u8..4, 0usize..4, 1i64..4_000_000, 0i64..3_000), 1..120)) {
        let rules = LeaseRules { max_grant_percent: 40, ..LeaseRules::default() };
        let mut book = LeaseBook::new(rules);
        let limit = usd("10").picos();
        let mut spend = 0i128; // what the ledger shows
        // (lease, instance, amount, expiry) of the leases still open; an expired one spent nothing.
        let mut granted: Vec<(String, String, i128, DateTime<Utc>)> = Vec::new();
        let mut now = t(0);
        for (i, (op, who, amount_micros, step)) in ops.into_iter().enumerate() {
            now += Duration::milliseconds(step);
            let instance = format!("i{who}");
            let f = BudgetFacts { limit: Money::from_picos(limit), spend: Money::from_picos(spend), period: facts("0").period };
            match op {
                0 | 1 => {
                    let r = LeaseRequest {
                        request_id: format!("r{i}"), instance_id: instance.clone(), budget: BUDGET.into(),
                        wanted_usd: Money::from_picos(i128::from(amount_micros) * 1_000_000), least_usd: usd("0.01"),
                        returns: vec![], sent_at: now,
                    };
                    let g = book.handle(&r, Some(f), now).unwrap();
                    if g.status == LeaseStatus::Granted {
                        granted.push((g.lease_id, instance, g.amount_usd.picos(), g.expires_at));
                        let out = book.outstanding(BUDGET, f.period.start);
                        prop_assert!(spend + out.total().picos() <= limit, "spend {spend} + outstanding {:?} > limit", out);
                    }
                }
                2 if granted.iter().any(|g| g.3 > now) => {
                    // Return the oldest open lease, used in full (its spend is in the ledger at once).
                    let at = granted.iter().position(|g| g.3 > now).unwrap_or(0);
                    let (lease, inst, amount, _) = granted.remove(at);
                    let r = LeaseRequest {
                        request_id: format!("r{i}"), instance_id: inst, budget: BUDGET.into(), wanted_usd: Money::ZERO,
                        least_usd: Money::ZERO, returns: vec![ret(&lease, &Money::from_picos(amount).to_string(), true)], sent_at: now,
                    };
                    book.handle(&r, Some(f), now);
                    spend += amount;
                }
                _ => {
                    granted.retain(|g| g.3 > now);
                    book.expire(now);
                    book.settle(now - Duration::seconds(2));
                }
            }
        }
    }
}
