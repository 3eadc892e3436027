//! The whole budget loop on the real services: usage events -> `ledger process` -> spend topic
//! -> `ledger enforce` -> signals topic -> router -> the next call.
//!
//! A closed loop like a service's: before each call the test asks the router and only makes
//! (emits the usage event of) the calls it allows, with the model it says. One tenant's daily
//! budget goes NOTIFY, THROTTLE, REROUTE, BLOCK in order, one signal per transition, and the
//! router applies each; rerouted calls land in the ledger with `routed_from_model` and their
//! savings; another tenant is never affected.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use ledger_core::catalog::{Catalog, CatalogSource};
use ledger_core::signal::{BudgetSignal, BudgetState};
use ledger_core::{Money, UsageEvent};
use ledger_router::{CallContext, Decision, Router, RouterConfig, RouterPolicy};
use ledger_schema::{BudgetSignalCodec, UsageEventCodec};
use ledger_tests::{read_topic, workspace_root, TestEnv};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const WAIT: Duration = Duration::from_secs(90);
const ACME_KEY: &str = "day:tenant_id=acme";

/// Limit 0.99 USD with calls of 0.01 USD: thresholds fall between calls (25, 50, 75, 99 calls).
const BUDGETS: &str = r#"
[defaults]
lookahead_secs = 0

[[budget]]
name = "acme-daily"
scope = { tenant_id = "acme" }
period = "day"
limit_usd = "0.99"
[[budget.threshold]]
at_percent = "25"
action = "notify"
[[budget.threshold]]
at_percent = "50"
action = "throttle"
throttle_fraction = "0.5"
retry_after_ms = 1000
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
limit_usd = "100.00"
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;

/// A `ledger` service stopped with SIGTERM when the test ends.
struct Service {
    name: &'static str,
    child: Child,
}

impl Service {
    fn start(name: &'static str, mut cmd: Command) -> Service {
        let child = cmd.stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Service { name, child }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early ({status}); rerun with RUST_LOG=info --nocapture to see why", self.name);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's application: asks the router, makes the allowed calls, emits their usage.
struct App<'a> {
    env: &'a TestEnv,
    router: &'a Router,
    producer: BaseProducer,
    codec: UsageEventCodec,
    catalog: Catalog,
    calls: u64,
    /// Cost of the calls made, per tenant (what the ledger must hold).
    cost: BTreeMap<String, Money>,
    /// Rerouted calls made, and what they saved.
    rerouted: u64,
    savings: Money,
    services: Vec<Service>,
}

impl App<'_> {
    fn event(&self, tenant: &str, model: &str) -> UsageEvent {
        serde_json::from_value(serde_json::json!({
            "event_id": format!("{}-{}", self.env.group, self.calls),
            "event_time": Utc::now(),
            "tenant_id": tenant,
            "provider": "openai",
            "request_model": model,
            "input_tokens": 2000,
            "output_tokens": 500,
        }))
        .expect("event")
    }

    fn price(&self, event: &UsageEvent) -> Money {
        self.catalog.price_event(event).expect("priced").cost
    }

    /// One call: ask the router, make it when allowed. Returns the decision.
    fn call(&mut self, tenant: &str, model: &str) -> Decision {
        let decision = self.router.decide(&CallContext::tenant(tenant), model);
        if decision.is_allowed() {
            self.calls += 1;
            let requested = self.event(tenant, model);
            let mut event = requested.clone();
            decision.stamp_usage_event(&mut event);
            let cost = self.price(&event);
            if let Decision::Reroute { to, from, .. } = &decision {
                assert_eq!((event.request_model.as_str(), event.routed_from_model.as_deref()), (&**to, Some(&**from)));
                self.rerouted += 1;
                self.savings = Money::from_picos(self.savings.picos() + self.price(&requested).picos() - cost.picos());
            }
            let total = self.cost.entry(tenant.to_owned()).or_insert(Money::ZERO);
            *total = Money::from_picos(total.picos() + cost.picos());
            let payload = self.codec.encode(&event).expect("encode");
            self.producer.send(BaseRecord::to(&self.env.topics.usage).key(tenant).payload(&payload)).expect("enqueue");
            self.producer.flush(Duration::from_secs(30)).expect("acknowledged");
        }
        decision
    }

    fn spent(&self, tenant: &str) -> Money {
        self.cost.get(tenant).copied().unwrap_or(Money::ZERO)
    }

    /// Makes calls of `model` until `tenant` spent at least `usd`, skipping throttled ones.
    fn spend_until(&mut self, tenant: &str, model: &str, usd: &str) {
        let target: Money = usd.parse().unwrap();
        while self.spent(tenant) < target {
            let d = self.call(tenant, model);
            assert!(!matches!(d, Decision::Block { .. }), "{tenant} blocked at {} USD: {d}", self.spent(tenant));
        }
    }

    /// Waits until the router's view of `scope` is `state`.
    fn wait_state(&mut self, scope: &str, state: BudgetState) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.router.snapshot().signal(scope).map(|s| s.state) == Some(state) {
                return;
            }
            for s in &mut self.services {
                s.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "{scope} never reached {state} (router has {:?}; spent {} USD)",
                self.router.snapshot().signal(scope).map(|s| (s.state, s.reason.clone())),
                self.spent("acme")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn kind(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Reroute { .. } => "reroute",
        Decision::Throttle { .. } => "throttle",
        Decision::Block { .. } => "block",
    }
}

fn clickhouse(env: &TestEnv, sql: &str) -> String {
    let out = Command::new("curl").args(["-sS", "--fail", "--data-binary", sql, &env.clickhouse.url]).output().expect("curl");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn catalog() -> Catalog {
    let text = std::fs::read_to_string(workspace_root().join(ledger_processor::config::DEFAULT_CATALOG)).expect("catalog");
    let (source, _) = CatalogSource::from_litellm_json("litellm", chrono::DateTime::UNIX_EPOCH, &text).expect("catalog");
    Catalog::new(vec![source]).expect("catalog")
}

#[test]
fn spend_drives_notify_throttle_reroute_block_and_the_router_applies_each() {
    let env = TestEnv::new("budget_e2e");
    env.run_ledger(&["migrate"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(ledger_kafka::admin::ensure_topics(&env.kafka, &ledger_kafka::admin::ledger_topics(&env.topics, 4)))
        .expect("topics");
    let budgets: PathBuf = std::env::temp_dir().join(format!("{}-budgets.toml", env.group));
    std::fs::write(&budgets, BUDGETS).unwrap();

    let router = Router::start(RouterConfig {
        kafka: env.kafka.clone(),
        signals_topic: env.topics.signals.clone(),
        policy: RouterPolicy::default(),
        ..RouterConfig::default()
    })
    .expect("router");
    router.wait_ready(WAIT).expect("router ready");

    let mut process = env.ledger();
    process.arg("process");
    let mut enforce = env.ledger();
    enforce.env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", env.group)).arg("enforce").arg("--budgets").arg(&budgets);
    let mut app = App {
        env: &env,
        router: &router,
        producer: env.kafka.client_config().set("enable.idempotence", "true").create().unwrap(),
        codec: UsageEventCodec::new().unwrap(),
        catalog: catalog(),
        calls: 0,
        cost: BTreeMap::new(),
        rerouted: 0,
        savings: Money::ZERO,
        services: vec![Service::start("ledger process", process), Service::start("ledger enforce", enforce)],
    };
    let call_cost = app.price(&app.event("acme", "gpt-4o"));
    assert_eq!(call_cost, "0.01".parse::<Money>().unwrap());

    // Globex spends a little and stays OK throughout.
    app.spend_until("globex", "gpt-4o", "0.05");

    // 25 % -> NOTIFY: calls still go through unchanged.
    app.spend_until("acme", "gpt-4o", "0.25");
    app.wait_state(ACME_KEY, BudgetState::Notify);
    assert_eq!(app.call("acme", "gpt-4o"), Decision::Allow);

    // 50 % -> THROTTLE at one half: every other call is refused with the configured retry.
    app.spend_until("acme", "gpt-4o", "0.50");
    app.wait_state(ACME_KEY, BudgetState::Throttle);
    let throttled: Vec<Decision> = (0..4).map(|_| app.call("acme", "gpt-4o")).collect();
    assert_eq!(throttled.iter().map(kind).collect::<Vec<_>>(), ["throttle", "allow", "throttle", "allow"]);
    assert!(throttled.iter().all(|d| match d {
        Decision::Throttle { retry_after, scope } => *retry_after == Duration::from_millis(1000) && &**scope == ACME_KEY,
        _ => true,
    }));

    // 75 % -> REROUTE gpt-4o to gpt-4o-mini (the throttle below stays in force); other
    // models are not rerouted.
    app.spend_until("acme", "gpt-4o", "0.75");
    app.wait_state(ACME_KEY, BudgetState::Reroute);
    let mut reroutes = 0;
    for _ in 0..20 {
        match app.call("acme", "gpt-4o") {
            Decision::Reroute { to, from, .. } => {
                assert_eq!((&*to, &*from), ("gpt-4o-mini", "gpt-4o"));
                reroutes += 1;
            }
            Decision::Throttle { .. } => {}
            other => panic!("under REROUTE gpt-4o must be rerouted or throttled, got {other}"),
        }
    }
    assert!(reroutes >= 10, "the half throttle admits every other call: {reroutes} rerouted of 20");
    for _ in 0..4 {
        let d = app.call("acme", "gpt-4.1");
        assert!(matches!(d, Decision::Allow | Decision::Throttle { .. }), "gpt-4.1 is not in the reroute map: {d}");
    }

    // 100 % -> BLOCK: nothing goes through, for any model; globex is unaffected.
    app.spend_until("acme", "gpt-4.1", "0.99");
    app.wait_state(ACME_KEY, BudgetState::Block);
    for model in ["gpt-4o", "gpt-4o-mini", "gpt-4.1"] {
        let d = app.call("acme", model);
        assert!(matches!(&d, Decision::Block { reason, .. } if reason.contains("acme-daily")), "{model}: {d}");
    }
    assert_eq!(app.call("globex", "gpt-4o"), Decision::Allow);

    // One signal per transition, in order, on the signals topic.
    let codec = BudgetSignalCodec::new().unwrap();
    let mut acme: Vec<BudgetSignal> = Vec::new();
    let mut globex: Vec<BudgetSignal> = Vec::new();
    for m in read_topic(&env, &env.topics.signals) {
        let s = codec.decode(m.payload().expect("signal payload")).expect("signal decodes");
        assert_eq!(m.key(), Some(s.scope.as_bytes()), "signals are keyed by scope");
        match s.scope.as_str() {
            ACME_KEY => acme.push(s),
            "day:tenant_id=globex" => globex.push(s),
            other => panic!("unexpected scope {other}"),
        }
    }
    let states: Vec<BudgetState> = acme.iter().map(|s| s.state).skip_while(|s| *s == BudgetState::Ok).collect();
    assert_eq!(states, [BudgetState::Notify, BudgetState::Throttle, BudgetState::Reroute, BudgetState::Block]);
    assert!(acme.windows(2).all(|w| w[0].sequence < w[1].sequence), "sequences increase");
    assert!(
        globex.iter().all(|s| s.state == BudgetState::Ok),
        "globex stays OK: {:?}",
        globex.iter().map(|s| s.state).collect::<Vec<_>>()
    );

    // The ledger holds every call made, and the rerouted ones with their savings.
    let db = &env.clickhouse.database;
    let deadline = Instant::now() + WAIT;
    while clickhouse(&env, &format!("SELECT count() FROM {db}.usage_ledger")) != app.calls.to_string() {
        assert!(Instant::now() < deadline, "the ledger never reached {} rows", app.calls);
        std::thread::sleep(Duration::from_millis(200));
    }
    let acme_cost: Money =
        clickhouse(&env, &format!("SELECT toString(sum(cost_usd)) FROM {db}.usage_ledger WHERE tenant_id = 'acme'"))
            .parse()
            .unwrap();
    assert_eq!(acme_cost, app.spent("acme"), "ledger spend of acme = cost of the calls the router allowed");
    let routed = clickhouse(
        &env,
        &format!(
            "SELECT count(), toString(sum(savings_usd)), uniqExact(request_model), any(request_model) FROM {db}.usage_ledger \
             WHERE tenant_id = 'acme' AND routed_from_model = 'gpt-4o' FORMAT TSV"
        ),
    );
    let fields: Vec<&str> = routed.split('\t').collect();
    assert_eq!(fields[0], app.rerouted.to_string(), "every rerouted call carries routed_from_model");
    assert_eq!(fields[1].parse::<Money>().unwrap(), app.savings, "savings to the pico-dollar");
    assert_eq!((fields[2], fields[3]), ("1", "gpt-4o-mini"));
    assert!(app.savings > Money::ZERO);
    let _ = std::fs::remove_file(&budgets);
}
