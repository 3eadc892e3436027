//! `ledger notify` on the real Kafka with a real HTTP receiver started by the test.
//!
//! Budget signals (as `ledger enforce` publishes them, repeats of a state included) go to the
//! test's signals topic; two webhooks, one Slack and one generic JSON, point at a receiver that
//! is down for the first 20 s. The notifier is killed with SIGKILL twice: once while the receiver
//! is down (messages pending) and once after deliveries. Each webhook still gets exactly one
//! message per transition (NOTIFY, THROTTLE, REROUTE, BLOCK), in order, each with its
//! idempotency key; a budget that alerts only on `block` gets only its BLOCK.
//!
//! A second test runs the whole path: spend -> `ledger enforce` -> signals -> `ledger notify` ->
//! receiver, one message per crossing and none for spend that stays within a state.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, Timelike, Utc};
use ledger_core::budget::BudgetPolicy;
use ledger_core::signal::{BudgetSignal, BudgetState};
use ledger_core::Money;
use ledger_schema::BudgetSignalCodec;
use ledger_tests::{random_suffix, TestEnv};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

const BUDGETS: &str = r#"
[[budget]]
name = "acme-daily"
scope = { tenant_id = "acme" }
period = "day"
limit_usd = "100"
[[budget.threshold]]
at_percent = "25"
action = "notify"
[[budget.threshold]]
at_percent = "50"
action = "throttle"
throttle_fraction = "0.5"
[[budget.threshold]]
at_percent = "75"
action = "reroute"
reroute = { "gpt-4o" = "gpt-4o-mini" }
[[budget.threshold]]
at_percent = "100"
action = "block"

[[budget]]
name = "globex-daily"
scope = { tenant_id = "globex" }
period = "day"
limit_usd = "10"
alert = ["block"]
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    idempotency_key: String,
    webhook_id: String,
    body: Value,
}

type Inbox = Arc<Mutex<Vec<Post>>>;

async fn receive(State(inbox): State<Inbox>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let post =
        Post { path: uri.path().to_owned(), idempotency_key: header("idempotency-key"), webhook_id: header("webhook-id"), body };
    inbox.lock().unwrap().push(post);
    StatusCode::OK
}

/// A `ledger notify` process, its log in a file.
struct Notifier {
    child: Child,
    log: PathBuf,
}

impl Notifier {
    fn start(env: &TestEnv, config: &Path, budgets: &Path, run: u32) -> Notifier {
        let log = std::env::temp_dir().join(format!("notify-{}-{run}.log", random_suffix()));
        let child = env
            .ledger()
            .env("RUST_LOG", "info")
            .arg("notify")
            .arg("--config")
            .arg(config)
            .arg("--budgets")
            .arg(budgets)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting ledger notify");
        let n = Notifier { child, log };
        n.wait_for("following the signals topic", Duration::from_secs(60));
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "ledger notify did not log {needle:?} in {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no shutdown, nothing flushed.
    fn kill_9(mut self) -> String {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
        let log = self.log();
        let _ = std::fs::remove_file(&self.log);
        log
    }
}

struct Signals {
    producer: rdkafka::producer::FutureProducer,
    codec: BudgetSignalCodec,
    topic: String,
    policy: BudgetPolicy,
    day: DateTime<Utc>,
}

impl Signals {
    /// Publishes the signal of `budget` in `state` with `sequence` and `spend` USD.
    async fn send(&self, budget: &str, state: BudgetState, sequence: i64, spend: i64) {
        let b = self.policy.budgets.iter().find(|b| b.name == budget).expect("budget");
        let limit = b.limit_usd.expect("a USD limit");
        let end = self.day + chrono::Duration::days(1);
        let signal = BudgetSignal {
            scope: b.signal_key(),
            scope_fields: [("tenant_id".to_owned(), budget.trim_end_matches("-daily").to_owned())].into(),
            period: b.period,
            period_start: self.day,
            period_end: end,
            state,
            action: String::new(),
            spend_usd: Money::from_usd(spend),
            limit_usd: Some(limit),
            remaining_usd: limit.checked_sub(Money::from_usd(spend)).ok(),
            spent_tokens: 1_000 * spend,
            limit_tokens: None,
            burn_rate_usd_per_hour: Money::from_usd(5),
            projected_exhaustion: (state != BudgetState::Block).then(|| self.day + chrono::Duration::hours(20)),
            throttle_fraction_ppm: matches!(state, BudgetState::Throttle | BudgetState::Reroute).then_some(500_000),
            throttle_rate_per_sec: None,
            retry_after_ms: (state == BudgetState::Block).then_some(60_000),
            reroute: if state == BudgetState::Reroute {
                [("gpt-4o".to_owned(), "gpt-4o-mini".to_owned())].into()
            } else {
                BTreeMap::new()
            },
            valid_until: end,
            reason: format!("budget {budget:?}: {spend} USD spent"),
            sequence,
            emitted_at: Utc::now(),
            enforcement: Default::default(),
        };
        let payload = self.codec.encode(&signal).expect("encode");
        let record = FutureRecord::to(&self.topic).key(&signal.scope).payload(&payload);
        let delivery = ledger_kafka::producer::enqueue(&self.producer, record).await.expect("enqueue");
        delivery.await.expect("delivery").expect("kafka ack");
    }
}

/// Polls until `done` holds for the receiver's posts.
fn wait_posts(inbox: &Inbox, what: &str, timeout: Duration, done: impl Fn(&[Post]) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let posts = inbox.lock().unwrap().clone();
        if done(&posts) {
            return;
        }
        let keys: Vec<_> = posts.iter().map(|p| format!("{} {}", p.path, p.idempotency_key)).collect();
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}; received {keys:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count(posts: &[Post], path: &str) -> usize {
    posts.iter().filter(|p| p.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_transition_despite_a_receiver_down_for_20s_and_two_kill_9s() {
    let env = TestEnv::new("notify");
    let started = Instant::now();
    // A port nobody listens on for the first 20 s: connections are refused.
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("notify-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, budgets) = (dir.join("ledger.toml"), dir.join("budgets.toml"));
    std::fs::write(&budgets, BUDGETS).unwrap();
    std::fs::write(
        &config,
        format!(
            "[notify]\nprogress_topic = \"{}notify-progress\"\ngroup_id = \"{}-notify\"\ninitial_backoff_ms = 200\n\
             max_backoff_ms = 1000\nrequest_timeout_ms = 2000\n\n\
             [[notify.webhooks]]\nname = \"chat\"\nurl = \"http://{addr}/slack\"\nformat = \"slack\"\n\n\
             [[notify.webhooks]]\nname = \"finops\"\nurl = \"http://{addr}/generic\"\nformat = \"json\"\n",
            env.topics.signals, env.group
        ),
    )
    .unwrap();
    let policy = BudgetPolicy::parse(BUDGETS).expect("budgets parse");
    let signals = Signals {
        producer: ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer"),
        codec: BudgetSignalCodec::new().expect("codec"),
        topic: env.topics.signals.clone(),
        policy,
        day: Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc(),
    };
    use BudgetState::{Block, Notify, Reroute, Throttle};

    // Run 1 (receiver down): NOTIFY, a repeat, THROTTLE, a repeat; globex NOTIFY (it alerts on
    // block only). Deliveries fail and are retried; then kill -9 with all of them pending.
    let first = Notifier::start(&env, &config, &budgets, 1);
    signals.send("acme-daily", Notify, 1, 30).await;
    signals.send("acme-daily", Notify, 2, 31).await;
    signals.send("acme-daily", Throttle, 3, 55).await;
    signals.send("acme-daily", Throttle, 4, 60).await;
    signals.send("globex-daily", Notify, 1, 6).await;
    first.wait_for("delivering a budget alert failed", Duration::from_secs(30));
    let log = first.kill_9();
    assert!(!log.contains(&addr.to_string()), "the webhook URL is a secret and never logged:\n{log}");

    // Run 2 (receiver still down): REROUTE and a repeat.
    let second = Notifier::start(&env, &config, &budgets, 2);
    signals.send("acme-daily", Reroute, 5, 80).await;
    signals.send("acme-daily", Reroute, 6, 85).await;
    second.wait_for("delivering a budget alert failed", Duration::from_secs(30));

    // The receiver comes up 20 s after the start.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(started.elapsed()));
    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("binding the receiver's port");
    let app = axum::Router::new().fallback(receive).with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    assert!(inbox.lock().unwrap().is_empty());
    wait_posts(&inbox, "NOTIFY, THROTTLE, REROUTE to both webhooks", Duration::from_secs(60), |p| {
        count(p, "/slack") >= 3 && count(p, "/generic") >= 3
    });
    // Progress is recorded right after each 2xx; give it a moment, then kill -9 again.
    std::thread::sleep(Duration::from_secs(2));
    second.kill_9();

    // Run 3: BLOCK and a repeat; globex BLOCK.
    let third = Notifier::start(&env, &config, &budgets, 3);
    signals.send("acme-daily", Block, 7, 100).await;
    signals.send("acme-daily", Block, 8, 101).await;
    signals.send("globex-daily", Block, 2, 10).await;
    wait_posts(&inbox, "BLOCK of both budgets to both webhooks", Duration::from_secs(60), |p| {
        count(p, "/slack") >= 5 && count(p, "/generic") >= 5
    });
    std::thread::sleep(Duration::from_secs(3));
    let log = third.kill_9();
    assert!(!log.contains(&addr.to_string()), "the webhook URL is never logged:\n{log}");

    let posts = inbox.lock().unwrap().clone();
    let acme = signals.policy.budgets[0].signal_key();
    let globex = signals.policy.budgets[1].signal_key();
    for path in ["/slack", "/generic"] {
        let keys: Vec<&str> = posts.iter().filter(|p| p.path == path).map(|p| p.idempotency_key.as_str()).collect();
        let of = |k: &str| keys.iter().filter(|x| x.starts_with(&format!("{k}@"))).copied().collect::<Vec<_>>();
        let expect = |k: &str, seqs: &[i64]| seqs.iter().map(|s| format!("{k}@{s}")).collect::<Vec<_>>();
        assert_eq!(of(&acme), expect(&acme, &[1, 3, 5, 7]), "{path}: one message per transition, in order: {keys:?}");
        assert_eq!(of(&globex), expect(&globex, &[2]), "{path}: globex alerts on block only: {keys:?}");
        assert_eq!(keys.len(), 5, "{path}: nothing else: {keys:?}");
    }
    for p in &posts {
        assert_eq!(p.idempotency_key, p.webhook_id, "Idempotency-Key and webhook-id are the same key");
    }

    // The generic body: budget, scope, spend, limit, state, forecast exhaustion, router action.
    let generic: Vec<&Value> =
        posts.iter().filter(|p| p.path == "/generic" && p.body["budget"] == "acme-daily").map(|p| &p.body).collect();
    let states: Vec<(&str, &str)> =
        generic.iter().map(|b| (b["previous_state"].as_str().unwrap(), b["state"].as_str().unwrap())).collect();
    assert_eq!(states, vec![("OK", "NOTIFY"), ("NOTIFY", "THROTTLE"), ("THROTTLE", "REROUTE"), ("REROUTE", "BLOCK")]);
    let throttle = generic[1];
    assert_eq!(throttle["id"], posts.iter().find(|p| p.body == *throttle).unwrap().idempotency_key.as_str());
    assert_eq!(throttle["scope"]["tenant_id"], "acme");
    assert_eq!(
        (throttle["spend_usd"].as_str(), throttle["limit_usd"].as_str()),
        (Some("55.000000000000"), Some("100.000000000000"))
    );
    let exhaustion = (signals.day + chrono::Duration::hours(20)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(throttle["forecast_exhaustion"].as_str(), Some(exhaustion.as_str()));
    assert!(throttle["router_action"].as_str().unwrap().contains("50%"), "{throttle}");
    assert!(generic[2]["router_action"].as_str().unwrap().contains("gpt-4o -> gpt-4o-mini"), "{}", generic[2]);
    assert!(generic[3]["router_action"].as_str().unwrap().starts_with("refuses every call"), "{}", generic[3]);

    // The Slack body: a `text` notification and blocks with the same facts.
    let slack: Vec<&Value> = posts.iter().filter(|p| p.path == "/slack").map(|p| &p.body).collect();
    let reroute = slack
        .iter()
        .find(|b| b["text"].as_str().unwrap_or_default().contains("REROUTE (was THROTTLE)"))
        .expect("a REROUTE message");
    let text = reroute.to_string();
    for needle in ["acme-daily", "tenant_id=acme", "80.00 of 100.00 USD", &exhaustion, "gpt-4o -> gpt-4o-mini"] {
        assert!(text.contains(needle), "{needle} in the Slack message: {text}");
    }
    assert!(reroute["blocks"].as_array().is_some_and(|b| b.len() >= 3), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Cumulative spend of `tenant` this hour on source partition 0, as `ledger process` publishes it.
fn spend(tenant: &str, usd: &str, offset: i64) -> ledger_core::spend::SpendUpdate {
    let hour = Utc::now().date_naive().and_hms_opt(Utc::now().hour(), 0, 0).unwrap().and_utc();
    ledger_core::spend::SpendUpdate {
        scope: ledger_core::attribution::Attribution::tenant(tenant).with_model(None).to_owned_key(),
        period_start: hour,
        bucket: ledger_core::spend::BUCKET_HOUR.into(),
        source_topic: "llm.usage.v1".into(),
        source_partition: 0,
        cost_usd: usd.parse().expect("amount"),
        input_tokens: 1000,
        output_tokens: 100,
        total_tokens: 1100,
        request_count: 1,
        last_offset: offset,
        max_event_time: hour,
        updated_at: Utc::now(),
    }
}

/// The whole alert path on the real services: spend -> `ledger enforce` -> signals -> `ledger
/// notify` -> a local receiver. Spend that stays within a state sends nothing; each crossing
/// sends one message, NOTIFY, THROTTLE, REROUTE, BLOCK, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcer_signals_become_one_message_per_transition() {
    let env = TestEnv::new("notifyenf");
    ledger_kafka::admin::ensure_topics(&env.kafka, &ledger_kafka::admin::ledger_topics(&env.topics, 1)).await.expect("topics");
    let dir = std::env::temp_dir().join(format!("notifyenf-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let budgets = dir.join("budgets.toml");
    std::fs::write(&budgets, BUDGETS.replace("limit_usd = \"100\"", "limit_usd = \"100\"\nlookahead_secs = 0")).unwrap();
    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, axum::Router::new().fallback(receive).with_state(inbox.clone())).into_future());
    let config = dir.join("ledger.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\nprogress_topic = \"{}notify-progress\"\ngroup_id = \"{}-notify\"\n\n\
             [[notify.webhooks]]\nname = \"finops\"\nurl = \"http://{addr}/generic\"\nformat = \"json\"\n",
            env.topics.signals, env.group
        ),
    )
    .unwrap();
    let notifier = Notifier::start(&env, &config, &budgets, 1);
    let mut enforcer = env
        .ledger()
        .args(["enforce", "--budgets"])
        .arg(&budgets)
        .env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", env.group))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ledger enforce");

    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let codec = ledger_schema::SpendUpdateCodec::new().expect("codec");
    let mut offset = 0;
    let states = ["NOTIFY", "THROTTLE", "REROUTE", "BLOCK"];
    // Two updates per state: the first crosses a threshold, the second stays in the state.
    for (i, amounts) in [["30", "31"], ["55", "60"], ["80", "85"], ["100", "101"]].iter().enumerate() {
        for usd in amounts {
            offset += 1;
            let update = spend("acme", usd, offset);
            let payload = codec.encode(&update).expect("encode");
            let key = update.key();
            let record = FutureRecord::to(&env.topics.spend).key(&key).payload(&payload);
            ledger_kafka::producer::enqueue(&producer, record).await.expect("enqueue").await.expect("delivery").expect("ack");
        }
        wait_posts(&inbox, states[i], Duration::from_secs(60), |p| p.iter().any(|p| p.body["state"] == states[i]));
    }
    std::thread::sleep(Duration::from_secs(3));
    let _ = enforcer.kill();
    let _ = enforcer.wait();
    notifier.kill_9();

    let posts = inbox.lock().unwrap().clone();
    let seen: Vec<(&str, &str)> =
        posts.iter().map(|p| (p.body["previous_state"].as_str().unwrap(), p.body["state"].as_str().unwrap())).collect();
    assert_eq!(seen, vec![("OK", "NOTIFY"), ("NOTIFY", "THROTTLE"), ("THROTTLE", "REROUTE"), ("REROUTE", "BLOCK")]);
    for p in &posts {
        assert_eq!(p.body["budget"], "acme-daily");
        assert_eq!((p.idempotency_key.as_str(), p.body["id"].as_str()), (p.webhook_id.as_str(), Some(p.webhook_id.as_str())));
    }
    let spends: Vec<&str> = posts.iter().map(|p| p.body["spend_usd"].as_str().unwrap()).collect();
    for (spend, amounts) in spends.iter().zip([["30", "31"], ["55", "60"], ["80", "85"], ["100", "101"]]) {
        assert!(amounts.iter().any(|a| *spend == format!("{a}.000000000000")), "the spend of the crossing: {spends:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
