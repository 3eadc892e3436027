use super::*;
use crate::budget::policy::BudgetPolicy;
use crate::spend::BUCKET_HOUR;
use chrono::Duration;
use proptest::prelude::*;

const POLICY: &str = r#"
[defaults]
lookahead_secs = 0
[[budget]]
name = "acme-day"
scope = { tenant_id = "acme" }
period = "day"
limit_usd = "100"
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "80"
action = "throttle"
throttle_fraction = "0.25"
retry_after_ms = 1000
[[budget.threshold]]
at_percent = "90"
action = "reroute"
reroute = { "gpt-4o" = "gpt-4o-mini" }
[[budget.threshold]]
at_percent = "100"
action = "block"
retry_after_ms = 60000
[[budget]]
name = "beta-day"
scope = { tenant_id = "beta" }
period = "day"
limit_usd = "100"
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn update(tenant: &str, bucket: &str, partition: i32, usd: i64, offset: i64) -> SpendUpdate {
    SpendUpdate {
        scope: crate::attribution::Attribution::tenant(tenant).with_model(None).to_owned_key(),
        period_start: t(bucket),
        bucket: BUCKET_HOUR.into(),
        source_topic: "llm.usage.v1".into(),
        source_partition: partition,
        cost_usd: Money::from_usd(usd),
        input_tokens: usd,
        output_tokens: 0,
        total_tokens: usd,
        request_count: 1,
        last_offset: offset,
        max_event_time: t(bucket),
        updated_at: t(bucket),
    }
}

fn engine(now: DateTime<Utc>) -> BudgetEngine {
    let mut e = BudgetEngine::new(BudgetPolicy::parse(POLICY).unwrap(), now);
    e.go_live(now);
    e
}

/// Evaluates and confirms everything, as the runtime does after Kafka acknowledged it.
fn publish(e: &mut BudgetEngine, now: DateTime<Utc>) -> Vec<BudgetSignal> {
    let out = e.evaluate(now);
    for s in &out {
        e.confirm(s.clone());
    }
    out
}

fn states(signals: &[BudgetSignal]) -> Vec<(String, BudgetState)> {
    signals.iter().map(|s| (s.scope.clone(), s.state)).collect()
}

#[test]
fn spend_drives_one_scope_through_every_threshold_once() {
    let now = t("2026-11-18T10:00:00Z");
    let mut e = engine(now);
    let first = publish(&mut e, now);
    assert_eq!(first.len(), 0, "nothing touched yet");
    let all = e.evaluate_all(now);
    assert_eq!(
        states(&all),
        vec![("day:tenant_id=acme".into(), BudgetState::Ok), ("day:tenant_id=beta".into(), BudgetState::Ok)]
    );
    for s in all {
        e.confirm(s);
    }
    let mut seen = Vec::new();
    for (i, usd) in [10, 49, 50, 60, 79, 80, 85, 90, 99, 100, 120, 130].into_iter().enumerate() {
        let now = now + Duration::seconds(i as i64);
        assert!(e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, usd, i as i64), now));
        seen.extend(publish(&mut e, now));
    }
    let got: Vec<BudgetState> = seen.iter().map(|s| s.state).collect();
    assert_eq!(got, vec![BudgetState::Notify, BudgetState::Throttle, BudgetState::Reroute, BudgetState::Block]);
    let seqs: Vec<i64> = seen.iter().map(|s| s.sequence).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5], "sequence continues from the initial OK signal");
    // What each carries.
    assert_eq!(seen[1].throttle_fraction_ppm, Some(250_000));
    assert_eq!(seen[1].retry_after_ms, Some(1000));
    assert_eq!(seen[2].reroute.get("gpt-4o").map(String::as_str), Some("gpt-4o-mini"));
    assert_eq!(seen[2].throttle_fraction_ppm, Some(250_000), "the throttle below stays in force while rerouting");
    assert!(seen[3].reroute.is_empty() && seen[3].throttle_fraction_ppm.is_none());
    assert_eq!(seen[3].retry_after_ms, Some(60_000));
    assert_eq!(seen[3].limit_usd, Some(Money::from_usd(100)));
    assert_eq!(seen[3].remaining_usd, Some(Money::ZERO));
    assert_eq!(seen[3].valid_until, t("2026-11-19T00:00:00Z"));
    assert_eq!(seen[3].scope_fields, BTreeMap::from([("tenant_id".to_owned(), "acme".to_owned())]));
    assert!(seen[3].reason.contains("100.00 of 100.00 USD (100%)"), "{}", seen[3].reason);
}

#[test]
fn partitions_and_buckets_of_the_period_add_up_and_other_shapes_do_not_count() {
    let now = t("2026-11-18T10:00:00Z");
    let mut e = engine(now);
    e.apply(&update("acme", "2026-11-18T08:00:00Z", 0, 30, 1), now);
    e.apply(&update("acme", "2026-11-18T09:00:00Z", 1, 30, 1), now);
    let mut team = update("acme", "2026-11-18T09:00:00Z", 1, 1000, 2);
    team.scope.attribution.team = Some("search".into());
    assert!(!e.apply(&team, now), "a team aggregate is not the tenant scope");
    assert!(!e.apply(&update("acme", "2026-11-17T23:00:00Z", 0, 1000, 1), now), "yesterday's bucket");
    let v = &e.views(now)[0];
    assert_eq!(v.spend_usd, Money::from_usd(60));
    assert_eq!(v.state, BudgetState::Notify);
    assert_eq!(v.used_percent, Some(Percent::whole(60)));
}

#[test]
fn rollover_publishes_the_reset() {
    let now = t("2026-11-18T23:59:00Z");
    let mut e = engine(now);
    e.apply(&update("acme", "2026-11-18T23:00:00Z", 0, 150, 1), now);
    let s = publish(&mut e, now);
    assert_eq!(s[0].state, BudgetState::Block);
    assert_eq!(e.next_rollover(), Some(t("2026-11-19T00:00:00Z")));
    assert!(publish(&mut e, now + Duration::seconds(30)).is_empty(), "no repeat within the period");
    let later = t("2026-11-19T00:00:01Z");
    let reset = publish(&mut e, later);
    assert_eq!(
        states(&reset),
        vec![("day:tenant_id=acme".into(), BudgetState::Ok), ("day:tenant_id=beta".into(), BudgetState::Ok)],
        "every budget starts the new period with a signal"
    );
    assert_eq!(reset[0].period_start, t("2026-11-19T00:00:00Z"));
    assert_eq!(reset[0].spend_usd, Money::ZERO);
    assert_eq!(reset[0].sequence, s[0].sequence + 1);
    // Late spend of yesterday does not count today.
    assert!(!e.apply(&update("acme", "2026-11-18T23:00:00Z", 0, 300, 2), later));
    assert!(publish(&mut e, later).is_empty());
}

#[test]
fn predictive_enforcement_acts_before_the_threshold() {
    let text = POLICY.replace("lookahead_secs = 0", "lookahead_secs = 10\nburn_window_secs = 10");
    let now = t("2026-11-18T10:00:00Z");
    let mut e = BudgetEngine::new(BudgetPolicy::parse(&text).unwrap(), now);
    e.go_live(now);
    // 1 USD per second: 3600 USD/h. At 95 USD the next 10 s bring 10 more: block predicted.
    let mut last = Vec::new();
    for s in 1..=95 {
        let at = now + Duration::seconds(s);
        e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, s, s), at);
        last.extend(publish(&mut e, at));
    }
    let block = last.iter().find(|s| s.state == BudgetState::Block).expect("block predicted");
    assert!(block.spend_usd < Money::from_usd(100), "blocked at {} before the limit", block.spend_usd);
    assert!(block.reason.contains("expected within 10 s"), "{}", block.reason);
    assert_eq!(block.burn_rate_usd_per_hour, Money::from_usd(3600));
    assert!(block.projected_exhaustion.is_some());
    // The burn rate falls to zero, but the block holds for the rest of the period.
    let quiet = now + Duration::seconds(500);
    assert!(publish(&mut e, quiet).is_empty());
    assert_eq!(states(&e.evaluate_all(quiet)), vec![("day:tenant_id=beta".into(), BudgetState::Ok)], "only beta's first signal");
}

#[test]
fn restart_from_published_signals_repeats_and_undoes_nothing() {
    let text = POLICY.replace("lookahead_secs = 0", "lookahead_secs = 10\nburn_window_secs = 10");
    let policy = BudgetPolicy::parse(&text).unwrap();
    let now = t("2026-11-18T10:00:00Z");
    let mut e = BudgetEngine::new(policy.clone(), now);
    e.go_live(now);
    let mut published = Vec::new();
    for s in 1..=85 {
        let at = now + Duration::seconds(s);
        e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, s, s), at);
        published.extend(publish(&mut e, at));
    }
    let last = published.last().unwrap().clone();
    assert_eq!(last.state, BudgetState::Reroute, "reroute predicted at 85 USD with 10 USD expected");
    // A new engine: replays spend (no burn rate) and the signals topic.
    let at = now + Duration::seconds(90);
    let mut r = BudgetEngine::new(policy, at);
    r.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 85, 85), at);
    for s in e.published().values() {
        r.restore_published(s.clone());
    }
    r.go_live(at);
    let again = r.evaluate_all(at);
    assert_eq!(
        states(&again),
        vec![("day:tenant_id=beta".into(), BudgetState::Ok)],
        "the predicted reroute is neither repeated nor undone"
    );
    assert_eq!(e.published().len(), 1, "only acme was touched");
    // The next transition continues the sequence.
    r.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 100, 100), at);
    let next = publish(&mut r, at);
    assert_eq!(states(&next), vec![("day:tenant_id=acme".into(), BudgetState::Block)]);
    assert_eq!(next[0].sequence, last.sequence + 1);
}

#[test]
fn a_restart_after_a_policy_change_republishes_what_changed_only() {
    let now = t("2026-11-18T10:00:00Z");
    let mut e = engine(now);
    e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 110, 1), now);
    e.apply(&update("beta", "2026-11-18T10:00:00Z", 0, 10, 1), now);
    let before = publish(&mut e, now);
    assert_eq!(before.len(), 2);
    // acme's limit doubles: 110 of 200 is only a notification now. beta is unchanged.
    let raised = POLICY.replacen("limit_usd = \"100\"", "limit_usd = \"200\"", 1);
    let mut r = BudgetEngine::new(BudgetPolicy::parse(&raised).unwrap(), now);
    r.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 110, 1), now);
    r.apply(&update("beta", "2026-11-18T10:00:00Z", 0, 10, 1), now);
    for s in e.published().values() {
        r.restore_published(s.clone());
    }
    r.go_live(now);
    let after = r.evaluate_all(now);
    assert_eq!(states(&after), vec![("day:tenant_id=acme".into(), BudgetState::Notify)]);
    assert_eq!(after[0].limit_usd, Some(Money::from_usd(200)));
}

#[test]
fn removing_a_budget_releases_its_scope() {
    let now = t("2026-11-18T10:00:00Z");
    let mut e = engine(now);
    e.apply(&update("beta", "2026-11-18T10:00:00Z", 0, 150, 1), now);
    let blocked = publish(&mut e, now);
    assert_eq!(blocked[0].state, BudgetState::Block);
    let only_acme = POLICY.split("[[budget]]\nname = \"beta-day\"").next().unwrap();
    let mut r = BudgetEngine::new(BudgetPolicy::parse(only_acme).unwrap(), now);
    for s in e.published().values() {
        r.restore_published(s.clone());
    }
    let out = r.evaluate_all(now);
    assert_eq!(
        states(&out),
        vec![("day:tenant_id=acme".into(), BudgetState::Ok), ("day:tenant_id=beta".into(), BudgetState::Ok)],
        "acme's first signal, and beta released"
    );
    assert!(out[1].reason.contains("removed"));
    assert_eq!(out[1].sequence, blocked[0].sequence + 1);
    for s in out {
        r.confirm(s);
    }
    assert!(r.evaluate_all(now).is_empty());
}

#[test]
fn tenants_never_affect_each_other() {
    let now = t("2026-11-18T10:00:00Z");
    let mut e = engine(now);
    e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 500, 1), now);
    let out = publish(&mut e, now);
    assert_eq!(states(&out), vec![("day:tenant_id=acme".into(), BudgetState::Block)]);
    let views = e.views(now);
    assert_eq!(views[1].spend_usd, Money::ZERO);
    assert_eq!(views[1].state, BudgetState::Ok);
}

fn updates() -> impl Strategy<Value = Vec<(u8, u8, u32)>> {
    // (partition, hour, cumulative step): per key, values grow with the offset.
    prop::collection::vec((0u8..3, 0u8..24, 1u32..1000), 1..60)
}

/// The updates of a generated history: per (partition, hour) key, cumulative values that grow
/// with the offset.
fn history(steps: &[(u8, u8, u32)]) -> Vec<SpendUpdate> {
    let mut cumulative: BTreeMap<(u8, u8), i64> = BTreeMap::new();
    steps
        .iter()
        .enumerate()
        .map(|(offset, &(p, h, step))| {
            let c = cumulative.entry((p, h)).or_default();
            *c += i64::from(step);
            let mut u = update("acme", &format!("2026-11-18T{h:02}:00:00Z"), i32::from(p), 0, offset as i64);
            u.cost_usd = Money::from_picos(i128::from(*c) * 1_000_000_000);
            u.total_tokens = *c;
            u
        })
        .collect()
}

proptest! {
    #[test]
    fn spend_is_independent_of_order_and_duplication(steps in updates(), seed in any::<u64>()) {
        let now = t("2026-11-18T23:59:00Z");
        let all = history(&steps);
        let mut expected: BTreeMap<String, &SpendUpdate> = BTreeMap::new();
        for u in &all {
            expected.insert(u.key(), u); // later offsets win
        }
        let total: i128 = expected.values().map(|u| u.cost_usd.picos()).sum();
        // Shuffle deterministically and duplicate every third update.
        let mut shuffled: Vec<&SpendUpdate> = all.iter().chain(all.iter().step_by(3)).collect();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut e = engine(now);
        for u in shuffled {
            e.apply(u, now);
        }
        prop_assert_eq!(e.views(now)[0].spend_usd.picos(), total);
    }

    #[test]
    fn one_signal_per_transition_and_states_only_grow_within_a_period(
        steps in prop::collection::vec(0i64..15, 1..80),
        lookahead in 0u32..5,
    ) {
        let text = POLICY.replace("lookahead_secs = 0", &format!("lookahead_secs = {lookahead}\nburn_window_secs = 5"));
        let start = t("2026-11-18T10:00:00Z");
        let mut e = BudgetEngine::new(BudgetPolicy::parse(&text).unwrap(), start);
        e.go_live(start);
        let mut cumulative = 0;
        let mut published: Vec<BudgetSignal> = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            cumulative += step;
            let at = start + Duration::seconds(i as i64);
            e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, cumulative, i as i64), at);
            let out = if i % 7 == 0 { e.evaluate_all(at) } else { e.evaluate(at) };
            for s in out {
                e.confirm(s.clone());
                published.push(s);
            }
        }
        let acme: Vec<&BudgetSignal> = published.iter().filter(|s| s.scope == "day:tenant_id=acme").collect();
        for w in acme.windows(2) {
            prop_assert!(!same_decision(w[0], w[1]), "duplicate signal {:?}", w[1].state);
            prop_assert!(w[0].state < w[1].state, "state went from {} to {}", w[0].state, w[1].state);
            prop_assert_eq!(w[0].sequence + 1, w[1].sequence);
        }
        // Without look-ahead, the state is exactly the highest threshold the spend reached.
        if lookahead == 0 {
            let last = acme.last().map_or(BudgetState::Ok, |s| s.state);
            let expected = match cumulative { c if c >= 100 => BudgetState::Block, c if c >= 90 => BudgetState::Reroute,
                c if c >= 80 => BudgetState::Throttle, c if c >= 50 => BudgetState::Notify, _ => BudgetState::Ok };
            prop_assert_eq!(last, expected);
        }
    }

    #[test]
    fn a_rollover_always_resets(hour in 0u32..24, usd in 0i64..300) {
        let day = t("2026-11-18T00:00:00Z") + Duration::hours(i64::from(hour));
        let mut e = engine(day);
        e.apply(&update("acme", &day.to_rfc3339(), 0, usd, 1), day);
        publish(&mut e, day);
        let next_day = t("2026-11-19T00:00:00Z") + Duration::minutes(i64::from(hour));
        let out = publish(&mut e, next_day);
        let acme: Vec<_> = out.iter().filter(|s| s.scope == "day:tenant_id=acme").collect();
        prop_assert_eq!(acme.len(), 1);
        prop_assert_eq!(acme[0].state, BudgetState::Ok);
        prop_assert_eq!(acme[0].spend_usd, Money::ZERO);
    }
}

#[test]
fn a_rate_throttle_is_carried_and_stays_in_force_while_rerouting() {
    let text = POLICY.replace("throttle_fraction = \"0.25\"", "throttle_rate_per_sec = 5");
    let now = t("2026-11-18T10:00:00Z");
    let mut e = BudgetEngine::new(BudgetPolicy::parse(&text).unwrap(), now);
    e.go_live(now);
    e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 85, 1), now);
    let throttle = publish(&mut e, now);
    assert_eq!(
        (throttle[0].state, throttle[0].throttle_rate_per_sec, throttle[0].throttle_fraction_ppm),
        (BudgetState::Throttle, Some(5), None)
    );
    assert!(throttle[0].action.contains("at most 5 requests/s"), "{}", throttle[0].action);
    e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 95, 2), now);
    let reroute = publish(&mut e, now);
    assert_eq!((reroute[0].state, reroute[0].throttle_rate_per_sec), (BudgetState::Reroute, Some(5)));
}

#[test]
fn a_lease_budget_is_never_blocked_by_a_projection_and_says_it_is_leased() {
    let text = POLICY.replace("lookahead_secs = 0", "lookahead_secs = 10\nburn_window_secs = 10").replace(
        "limit_usd = \"100\"\n[[budget.threshold]]\nat_percent = \"50\"",
        "limit_usd = \"100\"\nenforcement = \"lease\"\n[[budget.threshold]]\nat_percent = \"50\"",
    );
    let now = t("2026-11-18T10:00:00Z");
    let mut e = BudgetEngine::new(BudgetPolicy::parse(&text).unwrap(), now);
    e.go_live(now);
    let mut last = Vec::new();
    for s in 1..=99 {
        let at = now + Duration::seconds(s);
        e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, s, s), at);
        last.extend(publish(&mut e, at));
    }
    let acme: Vec<&BudgetSignal> = last.iter().filter(|s| s.scope == "day:tenant_id=acme").collect();
    assert!(acme.iter().all(|s| s.enforcement == Enforcement::Lease));
    assert_eq!(acme.last().map(|s| s.state), Some(BudgetState::Reroute), "reroute is still predicted, block is not");
    let at = now + Duration::seconds(100);
    e.apply(&update("acme", "2026-11-18T10:00:00Z", 0, 100, 100), at);
    assert_eq!(states(&publish(&mut e, at)), vec![("day:tenant_id=acme".into(), BudgetState::Block)], "the limit itself blocks");
    let (budget, window, spend) = e.spend_of("day:tenant_id=acme", at).unwrap();
    assert_eq!((budget.name.as_str(), spend), ("acme-day", Money::from_usd(100)));
    assert!(window.contains(at));
    assert!(e.spend_of("day:tenant_id=acme", t("2026-11-19T00:00:01Z")).is_none(), "until the rollover is evaluated");
    assert!(e.spend_of("day:tenant_id=nobody", at).is_none());
}
