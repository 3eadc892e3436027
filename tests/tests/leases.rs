//! Quota leases on the real stack (issue 25, docs/budgets.md): bursts against 10 USD lease
//! budgets end at most 1% over the limit with at least 95% of it usable, whether the routers
//! are in process, HTTP sidecars with a killed one, or behind an enforcer killed and restarted.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger_core::lease::{LeaseGrant, LeaseRequest, LeaseStatus};
use ledger_core::Money;
use ledger_schema::{LeaseGrantCodec, LeaseRequestCodec};
use ledger_tests::burst::{lease_budgets, percent_over, run_bursts, Burst, LeaseStack, ENFORCER_LEASE_ENV};
use ledger_tests::{random_suffix, read_topic, workspace_root, TestEnv};
use rdkafka::Message;

/// The lease tests each run ten routers, an enforcer and a processor: on two cores, run side by
/// side they starve one another (CI saw leases time out), so they take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn usd(s: &str) -> Money {
    s.parse().unwrap()
}

/// The ledger must hold at most 1% over the limit, and at least 95% of it.
fn assert_within(tenant: &str, ledger: Money, limit: Money) {
    assert!(
        ledger.picos() <= limit.picos() * 101 / 100,
        "{tenant}: ledger spend {ledger} USD is {} over the {limit} USD limit",
        percent_over(ledger, limit)
    );
    assert!(
        ledger.picos() >= limit.picos() * 95 / 100,
        "{tenant}: only {ledger} of {limit} USD could be spent ({})",
        percent_over(ledger, limit)
    );
}

#[test]
fn ten_routers_hold_bursts_of_half_two_and_a_half_and_twenty_five_usd_per_second() {
    let _one_at_a_time = serial();
    let env = TestEnv::new("leases_burst");
    let tenants = ["burst-050", "burst-250", "burst-2500"];
    let mut stack = LeaseStack::start(&env, &lease_budgets(&tenants, "10"));
    let routers: Vec<_> = (0..10).map(|_| stack.router()).collect();
    for r in &routers {
        stack.wait_leased(r, &tenants);
    }
    let bursts: Vec<Burst> = tenants
        .iter()
        .zip(["0.5", "2.5", "25"])
        .map(|(t, rate)| Burst { tenant: (*t).to_owned(), usd_per_sec: usd(rate) })
        .collect();
    let results = run_bursts(&stack, &routers, &bursts, Duration::from_secs(75));
    for r in &results {
        let ledger = stack.wait_ledger(&r.burst.tenant, r.spent);
        eprintln!(
            "{}: {} USD/s offered, {} calls, ledger {ledger} USD ({} vs the limit), first BLOCK after {:?}, all after {:?}, {} throttled",
            r.burst.tenant,
            r.burst.usd_per_sec,
            r.calls,
            percent_over(ledger, usd("10")),
            r.first_block,
            r.all_blocked,
            r.throttled
        );
        assert_eq!(ledger, r.spent, "{}: the ledger holds exactly the calls made", r.burst.tenant);
        assert_within(&r.burst.tenant, ledger, usd("10"));
        assert_eq!(r.never_blocked, 0, "{}: every service stops at a BLOCK once the budget is spent", r.burst.tenant);
    }
    // Every call was reported and none cost more than its estimate.
    let stats: Vec<_> = routers.iter().map(|r| r.lease_stats()).collect();
    let calls: u64 = results.iter().map(|r| r.calls).sum();
    assert_eq!(stats.iter().map(|s| s.estimate_error.count).sum::<u64>(), calls);
    assert!(stats.iter().all(|s| s.estimate_error.min >= Money::ZERO), "estimates never below the actual cost");
    assert!(stats.iter().all(|s| s.timeouts == 0 && s.unleased == 0), "{stats:?}");
}

/// The Python client of docs/router.md (the block after `<!-- python-client`).
fn python_client_from_docs() -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/router.md")).expect("docs/router.md");
    let after = doc.split("<!-- python-client").nth(1).expect("the marked Python block");
    let block = after.split("```python\n").nth(1).expect("a python block").split("\n```").next().expect("its end");
    block.to_owned()
}

/// Each client asks and reports through its own sidecar, `rate` calls per second from the
/// common start `at` (Unix seconds), until BLOCK or an error; prints what it did as JSON.
const DRIVER: &str = r#"
import json, random, sys, time
from router_client import LedgerRouter, call_within_budget
url, key, rate, at, limit_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
router = LedgerRouter(url, key)
calls, outputs, outcome = 0, 0, "deadline"
while time.time() < at:
    time.sleep(0.001)
due = time.monotonic()
while time.time() - at < limit_s:
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    out = random.randint(1500, 2000)
    try:
        answer = call_within_budget(router, lambda model: ("ok", 2000, out), "gpt-4o", 2000, 2000, "py", "openai")
    except Exception as e:
        outcome = "error: %s" % e
        break
    if answer is None:
        outcome = "blocked after %.3f s" % (time.time() - at)
        break
    calls, outputs = calls + 1, outputs + out
    due = max(due + 1 / rate, time.monotonic() - 1)
print(json.dumps({"calls": calls, "output_tokens": outputs, "outcome": outcome}))
"#;

fn healthy(addr: &str) -> bool {
    get(addr, "/healthz").starts_with("HTTP/1.1 200")
}

/// The whole HTTP answer to `GET path` (empty when the connection fails).
fn get(addr: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// What the lease topics say of one instance: its granted leases (id, amount) and the ids it
/// returned as done.
fn leases_of(env: &TestEnv, instance: &str) -> (Vec<(String, Money)>, Vec<String>) {
    let (grants, requests) = (LeaseGrantCodec::new().unwrap(), LeaseRequestCodec::new().unwrap());
    let granted = read_topic(env, &env.topics.lease_grants)
        .iter()
        .map(|m| grants.decode(m.payload().unwrap()).unwrap())
        .filter(|g: &LeaseGrant| g.instance_id == instance && g.status == LeaseStatus::Granted)
        .map(|g| (g.lease_id, g.amount_usd))
        .collect();
    let done = read_topic(env, &env.topics.lease_requests)
        .iter()
        .map(|m| requests.decode(m.payload().unwrap()).unwrap())
        .filter(|r: &LeaseRequest| r.instance_id == instance)
        .flat_map(|r| r.returns.into_iter().filter(|x| x.done).map(|x| x.lease_id))
        .collect();
    (granted, done)
}

#[test]
fn python_clients_through_ten_sidecars_stay_within_the_budget_when_one_sidecar_is_killed() {
    let _one_at_a_time = serial();
    let env = TestEnv::new("leases_sidecar");
    let mut stack = LeaseStack::start(&env, &lease_budgets(&["py"], "10"));
    let dir = std::env::temp_dir().join(format!("leases-py-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("api-keys.toml");
    let key = "test-py-key-0123456789";
    std::fs::write(&keys, format!("[[keys]]\nkey = \"{key}\"\ntenant_id = \"py\"\n")).unwrap();
    env.run_ledger(&["ingest", "keys", "import", "--api-keys", keys.to_str().unwrap()]);
    let mut sidecars = Vec::new();
    for i in 0..10 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = env.ledger();
        cmd.args(["router", "serve", "--listen", &addr, "--api-keys"]).arg(&keys);
        cmd.env("LEDGER__ROUTER__LEASES__INSTANCE_ID", format!("sidecar-{i}"));
        let pid = stack.spawn(&format!("sidecar-{i}"), cmd);
        sidecars.push((addr, pid));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sidecars.iter().all(|(addr, _)| healthy(addr)) {
        stack.assert_running();
        assert!(Instant::now() < deadline, "the sidecars did not become healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(dir.join("router_client.py"), python_client_from_docs()).unwrap();
    std::fs::write(dir.join("driver.py"), DRIVER).unwrap();
    // 10 clients x 100 calls/s x 0.025 USD: 25 USD/s from a common start 2 s from now.
    let at_ms = now_ms() + 2_000;
    let at = format!("{}.{:03}", at_ms / 1_000, at_ms % 1_000);
    let clients: Vec<_> = sidecars
        .iter()
        .map(|(addr, _)| {
            Command::new("python3")
                .arg(dir.join("driver.py"))
                .args([&format!("http://{addr}"), key, "100", &at, "60"])
                .current_dir(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3")
        })
        .collect();
    // kill -9 of sidecar 0 mid-burst (the budget lasts 0.4 s at the full rate).
    std::thread::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()) + 150));
    stack.kill(sidecars[0].1);
    let killed_at = chrono::Utc::now();
    let outcomes: Vec<serde_json::Value> = clients
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("driver");
            assert!(out.status.success(), "the Python driver failed");
            serde_json::from_slice(&out.stdout).expect("the driver's JSON")
        })
        .collect();
    eprintln!("{outcomes:#?}");
    assert!(outcomes[0]["outcome"].as_str().unwrap().starts_with("error"), "the killed sidecar's client lost it");
    for o in &outcomes[1..] {
        assert!(o["outcome"].as_str().unwrap().starts_with("blocked"), "every other client stops at BLOCK: {o}");
    }
    // A sidecar times every decision it answered.
    let metrics = get(&sidecars[1].0, "/metrics");
    let sum = |prefix: &str| -> u64 {
        metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let decided = sum("ledger_router_decisions_total{");
    assert!(decided > 0 && sum("ledger_router_decide_seconds_count ") == decided, "decisions and their timings:\n{metrics}");
    // The ledger settles on what the clients' calls cost (the killed client's last report may
    // have reached Kafka although its answer was lost).
    let reported: i128 = outcomes
        .iter()
        .map(|o| {
            o["calls"].as_i64().unwrap() as i128 * 2_000 * 2_500_000 + o["output_tokens"].as_i64().unwrap() as i128 * 10_000_000
        })
        .sum();
    let mut ledger = stack.wait_ledger("py", Money::from_picos(reported));
    std::thread::sleep(Duration::from_secs(2));
    ledger = ledger.max(stack.ledger_spend("py"));
    eprintln!("python through sidecars: ledger {ledger} USD ({} vs the limit)", percent_over(ledger, usd("10")));
    assert!(ledger.picos() >= reported && ledger.picos() <= reported + 25_000_000_000, "ledger {ledger} vs reported {reported}");
    assert_within("py", ledger, usd("10"));
    // The killed sidecar held allowance it never returned: it expired, and the others spent
    // after that.
    let (granted, done) = leases_of(&env, "sidecar-0");
    let held: i128 = granted.iter().filter(|(id, _)| !done.contains(id)).map(|(_, a)| a.picos()).sum();
    assert!(held > 0, "sidecar 0 was killed holding allowance (granted {granted:?}, done {done:?})");
    let sql =
        format!("SELECT toUnixTimestamp(max(event_time)) FROM {}.usage_ledger WHERE tenant_id = 'py'", env.clickhouse.database);
    let out = Command::new("curl").args(["-sS", "--fail", "--data-binary", &sql, &env.clickhouse.url]).output().unwrap();
    let last: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a Unix time");
    let last = chrono::DateTime::from_timestamp(last, 0).expect("a time");
    let ttl = Duration::from_millis(ENFORCER_LEASE_ENV[0].1.parse().unwrap());
    assert!(
        last + chrono::Duration::seconds(1) > killed_at + chrono::Duration::from_std(ttl).unwrap(), // last: whole seconds
        "the others spent after the killed sidecar's leases expired (last call {last}, killed at {killed_at})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Publishes a lease request and waits for its answer on the grants topic, sending it again
/// every 2 s as a router does (an enforcer answers a request id once; one that arrives while
/// it rebuilds is read as history and answered when sent again).
fn ask(env: &TestEnv, request: &LeaseRequest) -> LeaseGrant {
    let producer: rdkafka::producer::BaseProducer = env.kafka.client_config().create().unwrap();
    let payload = LeaseRequestCodec::new().unwrap().encode(request).unwrap();
    let codec = LeaseGrantCodec::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        producer
            .send(rdkafka::producer::BaseRecord::to(&env.topics.lease_requests).key(&request.budget).payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
        let resend = Instant::now() + Duration::from_secs(2);
        while Instant::now() < resend {
            let found = read_topic(env, &env.topics.lease_grants)
                .iter()
                .map(|m| codec.decode(m.payload().unwrap()).unwrap())
                .find(|g| g.request_id == request.request_id);
            if let Some(g) = found {
                return g;
            }
            assert!(Instant::now() < deadline, "no answer to the lease request");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn an_enforcer_killed_and_restarted_rebuilds_its_leases_from_the_topics() {
    let _one_at_a_time = serial();
    let env = TestEnv::new("leases_restart");
    let lease_env = [("LEDGER__ENFORCER__LEASES__TTL_MS", "60000"), ("LEDGER__ENFORCER__LEASES__MAX_GRANT_PERCENT", "100")];
    let mut stack = LeaseStack::start_with(&env, &lease_budgets(&["restart"], "2"), &lease_env);
    let key = "day:tenant_id=restart";
    let routers: Vec<_> = (0..3).map(|_| stack.router()).collect();
    // One call each: every router then holds a lease (min_lease_calls x 0.025 = 0.1 USD).
    let mut spent = Money::ZERO;
    let producer: rdkafka::producer::FutureProducer = ledger_kafka::producer::idempotent_producer(&env.kafka).unwrap();
    for r in &routers {
        stack.wait_leased(r, &["restart"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let call = loop {
            let call = r.decide_call(&ledger_router::CallContext::tenant("restart"), "gpt-4o", &ledger_tests::burst::SIZE);
            if call.reservation.is_some() {
                break call;
            }
            assert!(Instant::now() < deadline, "no allowance: {:?}", call.decision);
            std::thread::sleep(Duration::from_millis(50));
        };
        let event = ledger_tests::burst::usage_event("restart", "gpt-4o", 1_800);
        let payload = ledger_schema::UsageEventCodec::new().unwrap().encode(&event).unwrap();
        let record = rdkafka::producer::FutureRecord::to(&env.topics.usage).key("restart").payload(&payload);
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio.block_on(producer.send(record, Duration::from_secs(10))).map_err(|(e, _)| e).unwrap();
        let actual = stack.catalog.price_event(&event).unwrap().cost;
        r.complete(call.reservation.unwrap(), actual);
        spent = Money::from_picos(spent.picos() + actual.picos());
    }
    let held: i128 = routers.iter().map(|r| r.lease_allowance(key).unwrap().picos()).sum::<i128>() + spent.picos();
    assert_eq!(held, usd("0.3").picos(), "three leases of 0.1 USD");
    assert_eq!(stack.wait_ledger("restart", spent), spent);

    stack.kill(stack.pid_of("enforce"));
    // Read from the topics while no enforcer runs: the three active leases and the worst case.
    let mut status = env.ledger();
    status.args(["budgets", "status", "--format", "json", "--budgets"]).arg(stack.budgets_file());
    for (k, v) in ENFORCER_LEASE_ENV.iter().chain(&lease_env) {
        status.env(k, v);
    }
    let out = status.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!((row["enforcement"].as_str(), row["leases_active"].as_u64()), (Some("lease"), Some(3)), "{row}");
    assert_eq!(row["leases_held_usd"].as_str().unwrap().parse::<Money>().unwrap(), usd("0.3"));
    let worst = Money::from_picos(usd("2").picos() - spent.picos() - usd("0.3").picos());
    assert_eq!(row["worst_case_usd"].as_str().unwrap().parse::<Money>().unwrap(), worst, "{row}");

    // The restarted enforcer knows the three leases: a request for everything gets the rest.
    stack.start_enforcer();
    let probe = LeaseRequest {
        request_id: format!("probe-{}", random_suffix()),
        instance_id: "probe".into(),
        budget: key.into(),
        wanted_usd: usd("100"),
        least_usd: usd("0.01"),
        returns: vec![],
        sent_at: chrono::Utc::now(),
    };
    let grant = ask(&env, &probe);
    assert_eq!((grant.status, grant.amount_usd), (LeaseStatus::Granted, worst), "limit - ledger - the rebuilt leases: {grant:?}");
    let done = LeaseRequest {
        request_id: format!("probe-return-{}", random_suffix()),
        wanted_usd: Money::ZERO,
        least_usd: Money::ZERO,
        returns: vec![ledger_core::lease::LeaseReturn { lease_id: grant.lease_id, used_usd: Money::ZERO, done: true }],
        ..probe
    };
    let producer: rdkafka::producer::BaseProducer = env.kafka.client_config().create().unwrap();
    let payload = LeaseRequestCodec::new().unwrap().encode(&done).unwrap();
    producer
        .send(rdkafka::producer::BaseRecord::to(&env.topics.lease_requests).key(key).payload(&payload))
        .map_err(|(e, _)| e)
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();

    // And the budget holds through the restart.
    let burst = Burst { tenant: "restart".into(), usd_per_sec: usd("2.5") };
    let result = run_bursts(&stack, &routers, &[burst], Duration::from_secs(60)).remove(0);
    let total = Money::from_picos(spent.picos() + result.spent.picos());
    let ledger = stack.wait_ledger("restart", total);
    eprintln!("after the restart: ledger {ledger} USD ({} vs the limit)", percent_over(ledger, usd("2")));
    assert_eq!(ledger, total);
    assert_within("restart", ledger, usd("2"));
}
