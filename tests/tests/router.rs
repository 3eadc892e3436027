//! The router on the real Kafka: signals published with the real codec on a private compacted
//! signals topic; routers started before and after them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ledger_core::signal::{BudgetPeriod, BudgetSignal, BudgetState};
use ledger_core::Money;
use ledger_kafka::admin::{ensure_topics, TopicSpec};
use ledger_router::{CallContext, Decision, Router, RouterConfig, RouterError, RouterPolicy, StalePolicy};
use ledger_schema::BudgetSignalCodec;
use ledger_tests::TestEnv;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const WAIT: Duration = Duration::from_secs(30);

fn signal(fields: &[(&str, &str)], state: BudgetState, sequence: i64) -> BudgetSignal {
    let scope_fields: BTreeMap<String, String> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let canonical: Vec<String> = scope_fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let now = Utc::now();
    BudgetSignal {
        scope: format!("day:{}", canonical.join(",")),
        scope_fields,
        period: BudgetPeriod::Day,
        period_start: now - chrono::Duration::hours(1),
        period_end: now + chrono::Duration::hours(1),
        state,
        action: state.as_str().to_lowercase(),
        spend_usd: "12.5".parse::<Money>().unwrap(),
        limit_usd: Some("10".parse::<Money>().unwrap()),
        remaining_usd: Some("-2.5".parse::<Money>().unwrap()),
        spent_tokens: 1000,
        limit_tokens: None,
        burn_rate_usd_per_hour: "3".parse::<Money>().unwrap(),
        projected_exhaustion: None,
        throttle_fraction_ppm: (state == BudgetState::Throttle).then_some(0),
        throttle_rate_per_sec: None,
        retry_after_ms: Some(750),
        reroute: if state == BudgetState::Reroute {
            [("gpt-4o".to_owned(), "gpt-4o-mini".to_owned())].into_iter().collect()
        } else {
            BTreeMap::new()
        },
        valid_until: now + chrono::Duration::hours(1),
        reason: format!("{} by test", state.as_str()),
        sequence,
        emitted_at: now,
        enforcement: Default::default(),
    }
}

fn with_valid_until(mut s: BudgetSignal, valid_until: DateTime<Utc>) -> BudgetSignal {
    s.valid_until = valid_until;
    s
}

/// Creates the test's compacted signals topic (3 partitions, so scopes spread out).
fn create_signals_topic(env: &TestEnv) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(ensure_topics(
        &env.kafka,
        &[TopicSpec { name: env.topics.signals.clone(), partitions: 3, compacted: true, replication: Default::default() }],
    ))
    .expect("creating the signals topic");
}

/// Publishes signals as the enforcer does: key = scope, value = single-object Avro.
fn publish(env: &TestEnv, signals: &[BudgetSignal]) {
    let codec = BudgetSignalCodec::new().unwrap();
    let producer: BaseProducer = env.kafka.client_config().set("enable.idempotence", "true").create().unwrap();
    for s in signals {
        let payload = codec.encode(s).unwrap();
        producer.send(BaseRecord::to(&env.topics.signals).key(s.key()).payload(&payload)).expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("every signal acknowledged");
}

fn publish_tombstone(env: &TestEnv, scope: &str) {
    let producer: BaseProducer = env.kafka.client_config().create().unwrap();
    producer.send(BaseRecord::<str, [u8]>::to(&env.topics.signals).key(scope)).expect("enqueue");
    producer.flush(Duration::from_secs(30)).expect("tombstone acknowledged");
}

fn router(env: &TestEnv, stale: StalePolicy) -> Router {
    let config = RouterConfig {
        kafka: env.kafka.clone(),
        signals_topic: env.topics.signals.clone(),
        policy: RouterPolicy { stale, ..RouterPolicy::default() },
        ..RouterConfig::default()
    };
    let router = Router::start(config).expect("router starts");
    router.wait_ready(WAIT).expect("router reads the topic to its end");
    router
}

/// Polls `decide` until `done` holds (the router applies records asynchronously).
fn eventually(router: &Router, ctx: &CallContext<'_>, model: &str, done: impl Fn(&Decision) -> bool) -> Decision {
    let deadline = Instant::now() + WAIT;
    loop {
        let d = router.decide(ctx, model);
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "the router still decides {d:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_block(d: &Decision) -> bool {
    matches!(d, Decision::Block { .. })
}

#[test]
fn a_router_started_late_sees_the_current_state_of_every_scope() {
    let env = TestEnv::new("router_late");
    create_signals_topic(&env);
    let acme = [("tenant_id", "acme")];
    let globex = [("tenant_id", "globex")];
    let initech = [("tenant_id", "initech")];
    let acme_search = [("tenant_id", "acme"), ("team", "search")];
    publish(
        &env,
        &[
            signal(&acme, BudgetState::Notify, 1),
            signal(&globex, BudgetState::Throttle, 1),
            signal(&acme, BudgetState::Throttle, 2),
            signal(&initech, BudgetState::Block, 1),
            signal(&acme, BudgetState::Reroute, 3),
            signal(&initech, BudgetState::Ok, 2),
            signal(&acme_search, BudgetState::Notify, 1),
        ],
    );
    let router = router(&env, StalePolicy::FailOpen);

    let snap = router.snapshot();
    assert_eq!(snap.len(), 4);
    let state = |scope: &str| snap.signal(scope).map(|s| (s.state, s.sequence));
    assert_eq!(state("day:tenant_id=acme"), Some((BudgetState::Reroute, 3)));
    assert_eq!(state("day:tenant_id=globex"), Some((BudgetState::Throttle, 1)));
    assert_eq!(state("day:tenant_id=initech"), Some((BudgetState::Ok, 2)));
    assert_eq!(state("day:team=search,tenant_id=acme"), Some((BudgetState::Notify, 1)));
    // The decoded signal is the published one, field for field.
    assert_eq!(snap.signal("day:tenant_id=globex").unwrap().spend_usd, "12.5".parse::<Money>().unwrap());

    let acme_call = CallContext::tenant("acme").team("search");
    assert_eq!(
        router.decide(&acme_call, "gpt-4o"),
        Decision::Reroute { to: "gpt-4o-mini".into(), from: "gpt-4o".into(), scope: "day:tenant_id=acme".into() }
    );
    assert_eq!(router.decide(&acme_call, "claude-haiku-4-5"), Decision::Allow);
    assert_eq!(
        router.decide(&CallContext::tenant("globex"), "gpt-4o"),
        Decision::Throttle { retry_after: Duration::from_millis(750), scope: "day:tenant_id=globex".into() }
    );
    assert_eq!(router.decide(&CallContext::tenant("initech"), "gpt-4o"), Decision::Allow);
    assert_eq!(router.decide(&CallContext::tenant("unknown"), "gpt-4o"), Decision::Allow);
    let stats = router.stats();
    assert_eq!((stats.applied, stats.scopes, stats.undecodable), (7, 4, 0));
}

#[test]
fn out_of_order_and_replayed_sequences_are_ignored() {
    let env = TestEnv::new("router_order");
    create_signals_topic(&env);
    let acme = [("tenant_id", "acme")];
    publish(&env, &[signal(&acme, BudgetState::Block, 5), signal(&acme, BudgetState::Ok, 3), signal(&acme, BudgetState::Ok, 5)]);
    let router = router(&env, StalePolicy::FailOpen);
    assert!(is_block(&router.decide(&CallContext::tenant("acme"), "gpt-4o")));
    assert_eq!(router.stats().not_newer, 2);
    assert_eq!(router.snapshot().signal("day:tenant_id=acme").map(|s| s.sequence), Some(5));

    // A newer record reaches the running router.
    publish(&env, &[signal(&acme, BudgetState::Ok, 6)]);
    eventually(&router, &CallContext::tenant("acme"), "gpt-4o", |d| *d == Decision::Allow);
    // ...and an older one published later still does not undo it.
    publish(&env, &[signal(&acme, BudgetState::Block, 4), signal(&acme, BudgetState::Notify, 7)]);
    eventually(&router, &CallContext::tenant("acme"), "gpt-4o", |_| router.stats().not_newer == 3);
    let deadline = Instant::now() + WAIT;
    while router.snapshot().signal("day:tenant_id=acme").map(|s| s.sequence) != Some(7) {
        assert!(Instant::now() < deadline, "sequence 7 never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(router.decide(&CallContext::tenant("acme"), "gpt-4o"), Decision::Allow);
}

#[test]
fn the_most_restrictive_applicable_scope_wins_and_tenants_are_independent() {
    let env = TestEnv::new("router_precedence");
    create_signals_topic(&env);
    publish(
        &env,
        &[
            signal(&[("tenant_id", "acme")], BudgetState::Reroute, 1),
            signal(&[("tenant_id", "acme"), ("team", "ads")], BudgetState::Throttle, 1),
            signal(&[("tenant_id", "acme"), ("team", "search"), ("model", "o1")], BudgetState::Block, 1),
            signal(&[("tenant_id", "globex")], BudgetState::Block, 1),
        ],
    );
    let router = router(&env, StalePolicy::FailOpen);
    let search = CallContext::tenant("acme").team("search");
    let ads = CallContext::tenant("acme").team("ads");
    // team+model block beats the tenant's reroute, only for that model
    assert!(is_block(&router.decide(&search, "o1")));
    assert!(matches!(router.decide(&search, "gpt-4o"), Decision::Reroute { .. }));
    // team throttle (admitting nothing) beats the tenant's reroute
    assert!(matches!(router.decide(&ads, "gpt-4o"), Decision::Throttle { .. }));
    assert!(matches!(router.decide(&ads, "o1"), Decision::Throttle { .. }));
    // globex is blocked; acme's other teams are not
    assert!(is_block(&router.decide(&CallContext::tenant("globex"), "gpt-4o-mini")));
    assert_eq!(router.decide(&CallContext::tenant("acme").team("infra"), "gpt-4o-mini"), Decision::Allow);

    // Unblocking globex changes nothing for acme.
    publish(&env, &[signal(&[("tenant_id", "globex")], BudgetState::Ok, 2)]);
    eventually(&router, &CallContext::tenant("globex"), "gpt-4o", |d| *d == Decision::Allow);
    assert!(is_block(&router.decide(&search, "o1")));
    assert!(matches!(router.decide(&search, "gpt-4o"), Decision::Reroute { .. }));
}

#[test]
fn stale_signals_fail_open_or_closed_as_configured() {
    let env = TestEnv::new("router_stale");
    create_signals_topic(&env);
    let past = Utc::now() - chrono::Duration::minutes(5);
    publish(
        &env,
        &[
            with_valid_until(signal(&[("tenant_id", "acme")], BudgetState::Block, 1), past),
            with_valid_until(signal(&[("tenant_id", "globex")], BudgetState::Ok, 1), past),
            signal(&[("tenant_id", "initech")], BudgetState::Ok, 1),
        ],
    );
    let open = router(&env, StalePolicy::FailOpen);
    let closed = router(&env, StalePolicy::FailClosed);
    for tenant in ["acme", "globex", "initech"] {
        assert_eq!(open.decide(&CallContext::tenant(tenant), "gpt-4o"), Decision::Allow, "{tenant} fails open");
    }
    for tenant in ["acme", "globex"] {
        match closed.decide(&CallContext::tenant(tenant), "gpt-4o") {
            Decision::Block { reason, .. } => assert!(reason.contains("fails closed"), "{reason}"),
            other => panic!("{tenant}: a stale signal must block when failing closed, got {other:?}"),
        }
    }
    assert_eq!(closed.decide(&CallContext::tenant("initech"), "gpt-4o"), Decision::Allow);

    // A fresh signal heals the scope for the fail-closed router.
    publish(&env, &[signal(&[("tenant_id", "globex")], BudgetState::Ok, 2)]);
    eventually(&closed, &CallContext::tenant("globex"), "gpt-4o", |d| *d == Decision::Allow);
}

#[test]
fn a_tombstone_removes_the_scope() {
    let env = TestEnv::new("router_tombstone");
    create_signals_topic(&env);
    publish(&env, &[signal(&[("tenant_id", "acme")], BudgetState::Block, 1)]);
    let router = router(&env, StalePolicy::FailClosed);
    assert!(is_block(&router.decide(&CallContext::tenant("acme"), "gpt-4o")));
    publish_tombstone(&env, "day:tenant_id=acme");
    eventually(&router, &CallContext::tenant("acme"), "gpt-4o", |d| *d == Decision::Allow);
    assert_eq!(router.stats().removed, 1);
    assert!(router.snapshot().is_empty());
}

#[test]
fn an_undecodable_record_is_skipped_and_counted() {
    let env = TestEnv::new("router_garbage");
    create_signals_topic(&env);
    let producer: BaseProducer = env.kafka.client_config().create().unwrap();
    producer.send(BaseRecord::to(&env.topics.signals).key("day:tenant_id=acme").payload(&b"\xC3\x01not a signal"[..])).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    publish(&env, &[signal(&[("tenant_id", "acme")], BudgetState::Block, 1)]);
    let router = router(&env, StalePolicy::FailOpen);
    assert!(is_block(&router.decide(&CallContext::tenant("acme"), "gpt-4o")));
    assert_eq!(router.stats().undecodable, 1);
}

#[test]
fn a_missing_topic_is_a_clear_retryable_error() {
    let env = TestEnv::new("router_missing");
    let config = RouterConfig {
        kafka: env.kafka.clone(),
        signals_topic: format!("{}-does-not-exist", env.topics.signals),
        metadata_timeout_ms: 5_000,
        ..RouterConfig::default()
    };
    let err = Router::start(config).expect_err("no such topic");
    assert!(matches!(err, RouterError::TopicMissing { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("ledger enforce"), "{err}");
}

#[test]
fn partitions_added_to_the_signals_topic_are_read_without_a_restart() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    let env = TestEnv::new("router_grow");
    create_signals_topic(&env);
    let router = router(&env, StalePolicy::FailOpen);
    let admin: AdminClient<_> = env.kafka.client_config().create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let grown = rt
        .block_on(admin.create_partitions(&[NewPartitions::new(&env.topics.signals, 6)], &AdminOptions::new()))
        .expect("adding partitions");
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");
    // A signal on a partition the router did not have when it started.
    let block = signal(&[("tenant_id", "grown")], BudgetState::Block, 1);
    let producer: BaseProducer = env.kafka.client_config().create().unwrap();
    let payload = BudgetSignalCodec::new().unwrap().encode(&block).unwrap();
    producer.send(BaseRecord::to(&env.topics.signals).partition(5).key(block.key()).payload(&payload)).expect("enqueue");
    producer.flush(Duration::from_secs(30)).expect("acknowledged");
    eventually(&router, &CallContext::tenant("grown"), "gpt-4o", is_block);
}
