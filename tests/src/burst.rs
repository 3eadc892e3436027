//! The quota-lease burst of issue 25 on the real stack: `ledger process` and `ledger enforce`
//! with lease budgets, and router instances whose services spend at an offered rate, each
//! stopping at its first BLOCK. Shared by `tests/tests/leases.rs` and the benchmark
//! `benches/src/bin/lease_burst.rs`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use ledger_core::catalog::{Catalog, CatalogSource};
use ledger_core::signal::Enforcement;
use ledger_core::{Money, UsageEvent};
use ledger_router::{CallContext, CallSize, Decision, LeaseSettings, Router, RouterConfig};
use rand::Rng;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::{workspace_root, ProcessLogs, TestEnv};

/// One lease budget's burst.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Its tenant (the budget is `day:tenant_id=<tenant>`).
    pub tenant: String,
    /// The offered spend rate, in USD per second (estimates: calls of 0.025 USD).
    pub usd_per_sec: Money,
}

/// The estimate of every call: gpt-4o, 2,000 input tokens, `max_tokens` 2,000 (0.025 USD).
pub const SIZE: CallSize<'static> = CallSize { input_tokens: 2_000, max_tokens: Some(2_000), provider: "openai" };

/// What a burst did.
#[derive(Debug, Clone)]
pub struct BurstResult {
    /// The burst.
    pub burst: Burst,
    /// Calls made.
    pub calls: u64,
    /// Their actual cost (what the ledger must hold).
    pub spent: Money,
    /// Decisions that were THROTTLE.
    pub throttled: u64,
    /// From the start to the first BLOCK.
    pub first_block: Option<Duration>,
    /// From the start until every service had stopped at a BLOCK.
    pub all_blocked: Option<Duration>,
    /// Services that never saw a BLOCK before the deadline.
    pub never_blocked: usize,
}

/// The stack of one lease test: `ledger process` and `ledger enforce` as child processes.
#[derive(Debug)]
pub struct LeaseStack<'a> {
    /// The test's environment.
    pub env: &'a TestEnv,
    /// The shipped price catalog.
    pub catalog: Arc<Catalog>,
    budgets: PathBuf,
    children: Vec<(String, Child)>,
    /// The children's logs (printed when the test fails).
    pub logs: ProcessLogs,
    enforcer_env: Vec<(String, String)>,
}

/// The lease settings the tests use: short lifetimes, so an expiry fits in a test.
pub const ENFORCER_LEASE_ENV: [(&str, &str); 4] = [
    ("LEDGER__ENFORCER__LEASES__TTL_MS", "3000"),
    ("LEDGER__ENFORCER__LEASES__CALL_TIMEOUT_MS", "2000"),
    ("LEDGER__ENFORCER__LEASES__SETTLE_MARGIN_MS", "500"),
    ("LEDGER__ENFORCER__LEASES__PROBE_INTERVAL_MS", "50"),
];

/// A budgets file with one daily lease budget of `limit` USD per tenant.
pub fn lease_budgets(tenants: &[&str], limit: &str) -> String {
    let mut s = String::from("[defaults]\nlookahead_secs = 0\n");
    for t in tenants {
        s.push_str(&format!(
            "\n[[budget]]\nname = \"{t}\"\nscope = {{ tenant_id = \"{t}\" }}\nperiod = \"day\"\nlimit_usd = \"{limit}\"\n\
             enforcement = \"lease\"\n[[budget.threshold]]\nat_percent = \"50\"\naction = \"notify\"\n\
             [[budget.threshold]]\nat_percent = \"100\"\naction = \"block\"\n"
        ));
    }
    s
}

/// The shipped price catalog (`catalog/litellm-prices.json`).
pub fn shipped_catalog() -> Arc<Catalog> {
    let text = std::fs::read_to_string(workspace_root().join("catalog/litellm-prices.json")).expect("catalog");
    let (source, _) = CatalogSource::from_litellm_json("litellm-prices", chrono::DateTime::UNIX_EPOCH, &text).expect("catalog");
    Arc::new(Catalog::new(vec![source]).expect("catalog"))
}

impl<'a> LeaseStack<'a> {
    /// Migrates, creates the topics, writes the budgets and starts the processor (100 ms
    /// batches) and the enforcer (with [`ENFORCER_LEASE_ENV`]).
    pub fn start(env: &'a TestEnv, budgets: &str) -> LeaseStack<'a> {
        LeaseStack::start_with(env, budgets, &[])
    }

    /// [`LeaseStack::start`] with more `LEDGER__*` settings for the enforcer (they win).
    pub fn start_with(env: &'a TestEnv, budgets: &str, enforcer_env: &[(&str, &str)]) -> LeaseStack<'a> {
        env.run_ledger(&["migrate"]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut topics = ledger_kafka::admin::ledger_topics(&env.topics, 4);
        topics.extend(ledger_kafka::admin::lease_topics(&env.topics, 4));
        rt.block_on(ledger_kafka::admin::ensure_topics(&env.kafka, &topics)).expect("topics");
        let path = std::env::temp_dir().join(format!("{}-budgets.toml", env.group));
        std::fs::write(&path, budgets).expect("budgets file");
        let mut stack = LeaseStack {
            env,
            catalog: shipped_catalog(),
            budgets: path,
            children: Vec::new(),
            logs: ProcessLogs::default(),
            enforcer_env: enforcer_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        let mut process = env.ledger();
        process.arg("process").env("LEDGER__PROCESSOR__BATCH__MAX_DELAY_MS", "100");
        stack.spawn("process", process);
        stack.start_enforcer();
        stack
    }

    /// Starts (another) `ledger enforce`; returns its pid.
    pub fn start_enforcer(&mut self) -> u32 {
        let mut enforce = self.env.ledger();
        enforce
            .env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", self.env.group))
            .arg("enforce")
            .arg("--budgets")
            .arg(&self.budgets);
        for (k, v) in ENFORCER_LEASE_ENV {
            enforce.env(k, v);
        }
        for (k, v) in &self.enforcer_env {
            enforce.env(k, v);
        }
        self.spawn("enforce", enforce)
    }

    /// The budgets file.
    pub fn budgets_file(&self) -> &std::path::Path {
        &self.budgets
    }

    /// The pid of the running child named `name`.
    pub fn pid_of(&self, name: &str) -> u32 {
        self.children.iter().find(|(n, _)| n == name).map(|(_, c)| c.id()).expect("a running child of that name")
    }

    /// Starts a `ledger` child process; its stderr goes to the test's logs.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> u32 {
        let log = self.logs.file(self.env, name);
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawning ledger");
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        pid
    }

    /// Panics when a child exited.
    pub fn assert_running(&mut self) {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("ledger {name} exited early ({status}); see its log below");
            }
        }
    }

    /// `kill -9` of the child with `pid`.
    pub fn kill(&mut self, pid: u32) {
        let (_, child) = self.children.iter_mut().find(|(_, c)| c.id() == pid).expect("a child of this stack");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        self.children.retain(|(_, c)| c.id() != pid);
    }

    /// A router of this stack with the catalog (its lease client on the test's topics).
    pub fn router(&self) -> Router {
        let config = RouterConfig {
            kafka: self.env.kafka.clone(),
            signals_topic: self.env.topics.signals.clone(),
            leases: LeaseSettings {
                requests_topic: self.env.topics.lease_requests.clone(),
                grants_topic: self.env.topics.lease_grants.clone(),
                ..LeaseSettings::default()
            },
            ..RouterConfig::default()
        };
        let router = Router::start_with_catalog(config, self.catalog.clone()).expect("router");
        router.wait_ready(Duration::from_secs(60)).expect("router ready");
        router
    }

    /// Waits until `router` knows each tenant's budget as a lease budget.
    pub fn wait_leased(&mut self, router: &Router, tenants: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(90);
        for t in tenants {
            let key = format!("day:tenant_id={t}");
            while router.snapshot().signal(&key).map(|s| s.enforcement) != Some(Enforcement::Lease) {
                self.assert_running();
                assert!(Instant::now() < deadline, "the enforcer never published the lease budget {key}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The tenant's spend in the ledger.
    pub fn ledger_spend(&self, tenant: &str) -> Money {
        let sql = format!(
            "SELECT toString(sum(cost_usd)) FROM {}.usage_ledger WHERE tenant_id = '{tenant}'",
            self.env.clickhouse.database
        );
        let out =
            Command::new("curl").args(["-sS", "--fail", "--data-binary", &sql, &self.env.clickhouse.url]).output().expect("curl");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(Money::ZERO)
    }

    /// Waits until the ledger holds `expected` for `tenant` (at most 90 s) and returns it.
    pub fn wait_ledger(&mut self, tenant: &str, expected: Money) -> Money {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = self.ledger_spend(tenant);
            if got == expected || Instant::now() > deadline {
                return got;
            }
            self.assert_running();
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LeaseStack<'_> {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for (_, child) in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.budgets);
    }
}

/// The usage event of one call of `model` with `output` tokens.
pub fn usage_event(tenant: &str, model: &str, output: u64) -> UsageEvent {
    UsageEvent {
        input_tokens: 2_000,
        output_tokens: i64::try_from(output).unwrap_or(i64::MAX),
        ..UsageEvent::new(uuid_like(), Utc::now(), tenant.to_owned(), "openai".into(), model.to_owned())
    }
}

fn uuid_like() -> String {
    let n: u128 = rand::thread_rng().gen();
    format!("{n:032x}")
}

/// True once Kafka answered a produce request (acknowledged or failed), without waiting.
fn delivered(delivery: &mut rdkafka::producer::DeliveryFuture) -> bool {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(delivery).poll(&mut cx).is_ready()
}

/// Runs `bursts` at once, each spread over every router of `routers` (one service thread per
/// router and burst): a service asks its router before each call, makes the allowed ones
/// (writes their usage event, 1,500 to 2,000 output tokens: at most the estimate) and reports
/// them; waits out THROTTLE; stops at its first BLOCK, or at `deadline`.
pub fn run_bursts(stack: &LeaseStack<'_>, routers: &[Router], bursts: &[Burst], deadline: Duration) -> Vec<BurstResult> {
    let producer: FutureProducer = ledger_kafka::producer::idempotent_producer(&stack.env.kafka).expect("producer");
    let codec = ledger_schema::UsageEventCodec::new().expect("codec");
    let estimate = stack.catalog.price_event(&usage_event("x", "gpt-4o", 2_000)).expect("priced").cost;
    let start = Instant::now();
    let results: Vec<Mutex<BurstResult>> = bursts
        .iter()
        .map(|b| {
            Mutex::new(BurstResult {
                burst: b.clone(),
                calls: 0,
                spent: Money::ZERO,
                throttled: 0,
                first_block: None,
                all_blocked: None,
                never_blocked: 0,
            })
        })
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for (bi, burst) in bursts.iter().enumerate() {
            // A service's calls come every estimate × services / rate seconds.
            let services = i128::try_from(routers.len()).unwrap_or(1);
            let nanos = estimate.picos() * services * 1_000_000_000 / burst.usd_per_sec.picos().max(1);
            let interval = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            for router in routers {
                let (producer, codec, results, stop) = (&producer, &codec, &results, &stop);
                scope.spawn(move || {
                    let mut rng = rand::thread_rng();
                    let mut due = start;
                    let ctx = CallContext::tenant(&burst.tenant);
                    let (mut calls, mut spent, mut throttled) = (0u64, 0i128, 0u64);
                    let mut unreported = std::collections::VecDeque::new();
                    let blocked = loop {
                        let now = Instant::now();
                        if now - start > deadline || stop.load(Ordering::Relaxed) {
                            break None;
                        }
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let call = router.decide_call(&ctx, "gpt-4o", &SIZE);
                        match &call.decision {
                            Decision::Block { .. } => break Some(start.elapsed()),
                            Decision::Throttle { retry_after, .. } => {
                                throttled += 1;
                                std::thread::sleep((*retry_after).min(Duration::from_millis(200)));
                                due = Instant::now();
                                continue;
                            }
                            Decision::Allow | Decision::Reroute { .. } => {}
                        }
                        let model = call.decision.model_to_call("gpt-4o").unwrap_or("gpt-4o").to_owned();
                        let mut event = usage_event(&burst.tenant, &model, rng.gen_range(1_500..=2_000));
                        call.decision.stamp_usage_event(&mut event);
                        let payload = codec.encode(&event).expect("encode");
                        let record = FutureRecord::to(&stack.env.topics.usage).key(&burst.tenant).payload(&payload);
                        let delivery = producer.send_result(record).map_err(|(e, _)| e).expect("enqueue");
                        let actual = stack.catalog.price_event(&event).expect("priced").cost;
                        // A call is reported once its usage event is in Kafka, as the sidecar
                        // does (docs/budgets.md, "Settlement": a lease settles on the usage topic).
                        if let Some(r) = call.reservation {
                            unreported.push_back((delivery, r, actual));
                        }
                        while unreported.front_mut().is_some_and(|(d, _, _)| delivered(d)) {
                            let (_, r, actual) = unreported.pop_front().expect("front");
                            router.complete(r, actual);
                        }
                        calls += 1;
                        spent += actual.picos();
                        due += interval;
                    };
                    for (mut d, r, actual) in unreported {
                        let waited = Instant::now();
                        while !delivered(&mut d) && waited.elapsed() < Duration::from_secs(30) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        router.complete(r, actual);
                    }
                    let mut r = results[bi].lock().expect("results");
                    r.calls += calls;
                    r.spent = Money::from_picos(r.spent.picos() + spent);
                    r.throttled += throttled;
                    match blocked {
                        Some(at) => {
                            r.first_block = Some(r.first_block.map_or(at, |f| f.min(at)));
                            r.all_blocked = Some(r.all_blocked.map_or(at, |a| a.max(at)));
                        }
                        None => r.never_blocked += 1,
                    }
                });
            }
        }
    });
    producer.flush(Duration::from_secs(30)).expect("every usage event acknowledged");
    results.into_iter().map(|m| m.into_inner().expect("results")).collect()
}

/// `100 × (a − b) / b` with three decimals, as text (exact on pico-dollars).
pub fn percent_over(a: Money, b: Money) -> String {
    let milli = (a.picos() - b.picos()) * 100_000 / b.picos();
    format!("{}{}.{:03}%", if milli < 0 { "-" } else { "" }, milli.abs() / 1000, milli.abs() % 1000)
}
