//! Closed-loop budget benchmark on the local stack (issue 5, "Benchmark"): the real `ledger
//! process` and `ledger enforce` (release build) between a load generator and an in-process
//! [`Router`].
//!
//! 1. Event-to-signal latency at each rate of `--rates` (default 1,000 and 50,000 events/s):
//!    many tenants, each with a USD budget (notify 25 %, throttle 50 %, reroute 75 %, block
//!    100 %, no lookahead); the generator knows which event of a tenant crosses each threshold
//!    and records when it handed it to the producer; the router's observer records when
//!    decisions follow the signal. p50 / p99 / max over every transition.
//! 2. Overshoot: one tenant spends at a steady `--usd-per-min` (default 100) against a
//!    `--budget-usd` (default 100) budget that blocks at 100 % with `--lookahead-secs` (default
//!    2) of predictive enforcement; the generator asks the router before every call and only
//!    emits allowed ones. Overshoot = final ledger spend - budget, as a % of the budget.
//!
//! ```text
//! cargo run --release -p ledger-benches --bin budget_loop -- [--rates 1000,50000|none] [--secs 20]
//!     [--budget-usd 100] [--usd-per-min 100] [--lookahead-secs 2] [--batch-delay-ms 100]
//! ```
//! Needs `scripts/stack.sh up`. Uses fresh topics and a fresh ClickHouse database (dropped at
//! the end).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use ledger_core::catalog::{Catalog, CatalogSource};
use ledger_core::signal::{BudgetSignal, BudgetState};
use ledger_core::{Money, UsageEvent};
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_router::{CallContext, Decision, Router, RouterConfig, RouterPolicy};
use ledger_schema::UsageEventCodec;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

type Failure = Box<dyn std::error::Error>;

#[derive(Debug, Clone)]
struct Options {
    rates: Vec<u64>,
    secs: u64,
    budget_usd: u64,
    usd_per_min: u64,
    lookahead_secs: u64,
    batch_delay_ms: u64,
    brokers: String,
    clickhouse: String,
}

fn options() -> Result<Options, Failure> {
    let mut o = Options {
        rates: vec![1_000, 50_000],
        secs: 20,
        budget_usd: 100,
        usd_per_min: 100,
        lookahead_secs: 2,
        batch_delay_ms: 100,
        brokers: std::env::var("LEDGER_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        clickhouse: std::env::var("LEDGER_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value (see the doc comment of budget_loop.rs)"))?;
        let int = || value.parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--rates" if value == "none" => o.rates.clear(),
            "--rates" => {
                o.rates = value
                    .split(',')
                    .map(|r| r.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--rates {value}: {e}"))?
            }
            "--secs" => o.secs = int()?,
            "--budget-usd" => o.budget_usd = int()?,
            "--usd-per-min" => o.usd_per_min = int()?,
            "--lookahead-secs" => o.lookahead_secs = int()?,
            "--batch-delay-ms" => o.batch_delay_ms = int()?,
            other => {
                return Err(format!(
                "unknown option {other}; options: --rates --secs --budget-usd --usd-per-min --lookahead-secs --batch-delay-ms"
            )
                .into())
            }
        }
    }
    Ok(o)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The release `ledger` binary, built if missing or stale.
fn ledger_bin(root: &Path) -> Result<PathBuf, Failure> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-q", "-p", "ledger-cli"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        return Err("cargo build --release -p ledger-cli failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(if target.is_absolute() { target } else { root.join(target) }.join("release/ledger"))
}

/// One run's names and the `ledger` command with them in its environment.
struct Stack {
    bin: PathBuf,
    root: PathBuf,
    kafka: KafkaConfig,
    topics: TopicNames,
    clickhouse: String,
    database: String,
    run: String,
    batch_delay_ms: u64,
}

impl Stack {
    fn ledger(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.root)
            .env("LEDGER__KAFKA__BROKERS", &self.kafka.brokers)
            .env("LEDGER__CLICKHOUSE__URL", &self.clickhouse)
            .env("LEDGER__CLICKHOUSE__DATABASE", &self.database)
            .env("LEDGER__TOPICS__USAGE", &self.topics.usage)
            .env("LEDGER__TOPICS__DEAD_LETTER", &self.topics.dead_letter)
            .env("LEDGER__TOPICS__SPEND", &self.topics.spend)
            .env("LEDGER__TOPICS__SIGNALS", &self.topics.signals)
            .env("LEDGER__PROCESSOR__GROUP_ID", format!("{}-processor", self.run))
            .env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", self.run))
            .env("LEDGER__PROCESSOR__BATCH__MAX_DELAY_MS", self.batch_delay_ms.to_string())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
        cmd
    }

    fn clickhouse_query(&self, sql: &str) -> Result<String, Failure> {
        let out = Command::new("curl").args(["-sS", "--fail", "--data-binary", sql, &self.clickhouse]).output()?;
        if !out.status.success() {
            return Err(format!("clickhouse: {sql}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

/// A child process stopped with SIGTERM when dropped.
struct Service {
    name: &'static str,
    child: Child,
}

impl Service {
    fn start(name: &'static str, mut cmd: Command) -> Result<Service, Failure> {
        let child = cmd.stdin(Stdio::null()).spawn().map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Service { name, child })
    }

    fn check_running(&mut self) -> Result<(), Failure> {
        if let Some(status) = self.child.try_wait()? {
            return Err(format!("{} exited early ({status}); run with RUST_LOG=info to see why", self.name).into());
        }
        Ok(())
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

/// The event every simulated call reports: gpt-4o, 2,000 input and 500 output tokens.
fn event(run: &str, n: u64, tenant: &str, model: &str) -> UsageEvent {
    UsageEvent {
        input_tokens: 2_000,
        output_tokens: 500,
        ..UsageEvent::new(format!("{run}-{n}"), Utc::now(), tenant.to_owned(), "openai".into(), model.to_owned())
    }
}

fn producer(kafka: &KafkaConfig) -> Result<ThreadedProducer<DefaultProducerContext>, Failure> {
    let mut cfg = kafka.client_config();
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
    Ok(cfg.create()?)
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, payload: &[u8]) -> Result<(), Failure> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Paces a loop at `rate` iterations per second (sleeps when ahead of schedule).
struct Pacer {
    start: Instant,
    rate: u64,
}

impl Pacer {
    fn wait_for(&self, i: u64) {
        let due = self.start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / self.rate.max(1));
        let now = Instant::now();
        if due > now + Duration::from_micros(200) {
            std::thread::sleep(due - now);
        }
    }
}

/// When the router first saw each (scope, state).
type Seen = Arc<Mutex<HashMap<(String, BudgetState), Instant>>>;

/// Watches the spend topic like the enforcer does, to split the latency: when did the spend
/// of a tenant scope first reach each threshold amount (`thresholds`: tenant -> (amount,
/// state)), recorded under the same (scope key, state) as [`Seen`].
struct SpendWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpendWatcher {
    fn start(stack: &Stack, thresholds: HashMap<String, Vec<(Money, BudgetState)>>, seen: Seen) -> Result<SpendWatcher, Failure> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let group = format!("{}-spend-watch", stack.run);
        let consumer: BaseConsumer = stack
            .kafka
            .consumer_config(&[("group.id", &group), ("enable.auto.commit", "false"), ("fetch.wait.max.ms", "10")])
            .create()?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..ledger_kafka::admin::partition_count(&stack.kafka, &stack.topics.spend, Duration::from_secs(10))? {
            tpl.add_partition_offset(&stack.topics.spend, p, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let codec = ledger_schema::SpendUpdateCodec::new()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // (tenant, period start, source partition) -> cumulative cost
            let mut latest: HashMap<(String, i64, i32), Money> = HashMap::new();
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
                let Some(Ok(u)) = m.payload().map(|p| codec.decode(p)) else { continue };
                if u.scope.attribution.team.is_some()
                    || u.scope.attribution.project.is_some()
                    || u.scope.attribution.user_id.is_some()
                    || u.scope.attribution.api_key_id.is_some()
                    || u.scope.model.is_some()
                {
                    continue;
                }
                let Some(levels) = thresholds.get(&u.scope.attribution.tenant_id) else { continue };
                let slot = latest
                    .entry((u.scope.attribution.tenant_id.clone(), u.period_start.timestamp(), u.source_partition))
                    .or_insert(Money::ZERO);
                *slot = (*slot).max(u.cost_usd);
                let total: i128 =
                    latest.iter().filter(|(k, _)| k.0 == u.scope.attribution.tenant_id).map(|(_, v)| v.picos()).sum();
                let now = Instant::now();
                if let Ok(mut seen) = seen.lock() {
                    for (amount, state) in levels {
                        if total >= amount.picos() {
                            seen.entry((format!("day:tenant_id={}", u.scope.attribution.tenant_id), *state)).or_insert(now);
                        }
                    }
                }
            }
        });
        Ok(SpendWatcher { stop, thread: Some(thread) })
    }
}

impl Drop for SpendWatcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const LATENCY_THRESHOLDS: [(u64, BudgetState); 4] =
    [(25, BudgetState::Notify), (50, BudgetState::Throttle), (75, BudgetState::Reroute), (100, BudgetState::Block)];

struct LatencyPlan {
    rate: u64,
    tenants: u64,
    limit: Money,
}

fn latency_plan(rate: u64, secs: u64, cost: Money) -> LatencyPlan {
    // ~4 transitions per tenant, every tenant blocked at ~80 % of the run.
    let events = rate * secs;
    let tenants = (rate / 250).clamp(20, 200);
    let per_tenant_to_block = (events * 8 / 10 / tenants).max(8);
    LatencyPlan { rate, tenants, limit: Money::from_picos(cost.picos() * i128::from(per_tenant_to_block)) }
}

fn tenant_name(rate: u64, i: u64) -> String {
    format!("lat{rate}-{i:03}")
}

fn budgets_toml(plans: &[LatencyPlan], o: &Options) -> String {
    let mut s = String::from("[defaults]\nlookahead_secs = 0\n");
    for plan in plans {
        for i in 0..plan.tenants {
            let t = tenant_name(plan.rate, i);
            let _ = write!(
                s,
                r#"
[[budget]]
name = "{t}"
scope = {{ tenant_id = "{t}" }}
period = "day"
limit_usd = "{limit}"
lookahead_secs = 0
[[budget.threshold]]
at_percent = "25"
action = "notify"
[[budget.threshold]]
at_percent = "50"
action = "throttle"
throttle_fraction = "0.5"
retry_after_ms = 100
[[budget.threshold]]
at_percent = "75"
action = "reroute"
reroute = {{ "gpt-4o" = "gpt-4o-mini" }}
[[budget.threshold]]
at_percent = "100"
action = "block"
"#,
                limit = plan.limit
            );
        }
    }
    let _ = write!(
        s,
        r#"
[[budget]]
name = "overshoot"
scope = {{ tenant_id = "overshoot" }}
period = "day"
limit_usd = "{budget}"
lookahead_secs = {lookahead}
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "100"
action = "block"
"#,
        budget = o.budget_usd,
        lookahead = o.lookahead_secs
    );
    s
}

/// Microseconds as milliseconds with one decimal.
fn ms(us: u64) -> String {
    format!("{}.{}", us / 1000, us % 1000 / 100)
}

fn percentile_line(h: &Histogram<u64>) -> String {
    format!("p50 {} ms, p99 {} ms, max {} ms", ms(h.value_at_quantile(0.50)), ms(h.value_at_quantile(0.99)), ms(h.max()))
}

fn run_latency(
    stack: &Stack,
    plan: &LatencyPlan,
    o: &Options,
    cost: Money,
    (seen, spend_seen): (&Seen, &Seen),
    services: &mut [Service],
) -> Result<String, Failure> {
    let codec = UsageEventCodec::new()?;
    let producer = producer(&stack.kafka)?;
    let total = plan.rate * o.secs;
    // Event count of a tenant at which it crosses each threshold: ceil(p% * limit / cost).
    let crossing: Vec<(u64, BudgetState)> = LATENCY_THRESHOLDS
        .iter()
        .map(|(p, st)| {
            let need = plan.limit.picos() * i128::from(*p);
            let per = cost.picos() * 100;
            (u64::try_from((need + per - 1) / per).unwrap_or(u64::MAX), *st)
        })
        .collect();
    let mut produced: HashMap<(String, BudgetState), Instant> = HashMap::new();
    let mut per_tenant = vec![0u64; plan.tenants as usize];
    let names: Vec<String> = (0..plan.tenants).map(|i| tenant_name(plan.rate, i)).collect();
    let pacer = Pacer { start: Instant::now(), rate: plan.rate };
    let mut buf = Vec::with_capacity(512);
    for n in 0..total {
        pacer.wait_for(n);
        let t = (n % plan.tenants) as usize;
        let e = event(&format!("{}-{}", stack.run, plan.rate), n, &names[t], "gpt-4o");
        buf.clear();
        codec.encode_into(&e, &mut buf)?;
        send(&producer, &stack.topics.usage, &names[t], &buf)?;
        per_tenant[t] += 1;
        for (at, state) in &crossing {
            if per_tenant[t] == *at {
                produced.insert((format!("day:tenant_id={}", names[t]), *state), Instant::now());
            }
        }
        if n % 10_000 == 0 {
            for s in services.iter_mut() {
                s.check_running()?;
            }
        }
    }
    let produce_ms = u64::try_from(pacer.start.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
    producer.flush(Duration::from_secs(60))?;
    // Wait for every expected transition (or give up after 60 s: the missing ones are reported).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = { seen.lock().map_err(|_| "poisoned")?.keys().filter(|k| produced.contains_key(*k)).count() };
        if got == produced.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = seen.lock().map_err(|_| "poisoned")?;
    let spend_seen = spend_seen.lock().map_err(|_| "poisoned")?;
    let mut h = Histogram::<u64>::new(3)?;
    let mut to_spend = Histogram::<u64>::new(3)?;
    let mut spend_to_router = Histogram::<u64>::new(3)?;
    let mut early = 0;
    let mut missing = 0;
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    for (k, at) in &produced {
        match seen.get(k) {
            Some(s) if *s >= *at => h.record(micros(*s - *at))?,
            Some(_) => early += 1,
            None => missing += 1,
        }
        if let (Some(sp), Some(r)) = (spend_seen.get(k), seen.get(k)) {
            to_spend.record(micros(sp.saturating_duration_since(*at)))?;
            spend_to_router.record(micros(r.saturating_duration_since(*sp)))?;
        }
    }
    Ok(format!(
        "{rate:>6} events/s target ({actual} achieved, {total} events, {tenants} tenants, limit {limit} USD each): event-to-signal {line}; {n} transitions measured, {missing} missing, {early} seen before their event\n         of which event -> spend update (processor): {spend_line}\n         and spend update -> router (enforcer + signals topic + router): {router_line}",
        rate = plan.rate,
        actual = total * 1000 / produce_ms,
        tenants = plan.tenants,
        limit = plan.limit,
        line = if h.is_empty() { "no samples".into() } else { percentile_line(&h) },
        spend_line = if to_spend.is_empty() { "no samples".into() } else { percentile_line(&to_spend) },
        router_line = if spend_to_router.is_empty() { "no samples".into() } else { percentile_line(&spend_to_router) },
        n = h.len(),
    ))
}

fn run_overshoot(stack: &Stack, router: &Router, o: &Options, cost: Money, services: &mut [Service]) -> Result<String, Failure> {
    let codec = UsageEventCodec::new()?;
    let producer = producer(&stack.kafka)?;
    // calls per minute = usd_per_min / cost; paced per call.
    let calls_per_min = i128::from(o.usd_per_min) * Money::from_picos(1_000_000_000_000).picos() / cost.picos();
    let budget = Money::from_picos(i128::from(o.budget_usd) * 1_000_000_000_000);
    let pacer_rate_per_min = u64::try_from(calls_per_min)?;
    let start = Instant::now();
    let ctx = CallContext::tenant("overshoot");
    let (mut emitted, mut refused) = (0u64, 0u64);
    let mut emitted_cost = Money::ZERO;
    let mut blocked_since: Option<Instant> = None;
    let mut i = 0u64;
    let mut buf = Vec::with_capacity(512);
    // Until the router has said Block for 5 s straight (or 3x the time the budget should last).
    let give_up = Duration::from_secs(o.budget_usd * 60 / o.usd_per_min.max(1) * 3 + 30);
    loop {
        let due = start + Duration::from_nanos(i.saturating_mul(60_000_000_000) / pacer_rate_per_min.max(1));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        i += 1;
        let decision = router.decide(&ctx, "gpt-4o");
        match &decision {
            Decision::Block { .. } => {
                refused += 1;
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(5) {
                    break;
                }
                continue;
            }
            Decision::Throttle { .. } => {
                refused += 1;
                continue;
            }
            Decision::Allow | Decision::Reroute { .. } => blocked_since = None,
        }
        let mut e = event(&format!("{}-overshoot", stack.run), i, "overshoot", "gpt-4o");
        decision.stamp_usage_event(&mut e);
        buf.clear();
        codec.encode_into(&e, &mut buf)?;
        send(&producer, &stack.topics.usage, "overshoot", &buf)?;
        emitted += 1;
        emitted_cost = Money::from_picos(emitted_cost.picos() + cost.picos());
        if start.elapsed() > give_up {
            return Err(
                format!("the router never blocked within {give_up:?} ({emitted} calls, {emitted_cost} USD emitted)").into()
            );
        }
        if emitted % 500 == 0 {
            for s in services.iter_mut() {
                s.check_running()?;
            }
        }
    }
    let spent_secs = start.elapsed().as_secs().saturating_sub(5);
    producer.flush(Duration::from_secs(60))?;
    // The ledger must reach what was emitted (the processor drains in the background).
    let sql = format!("SELECT toString(sum(cost_usd)) FROM {}.usage_ledger WHERE tenant_id = 'overshoot'", stack.database);
    let deadline = Instant::now() + Duration::from_secs(120);
    let ledger = loop {
        let text = stack.clickhouse_query(&sql)?;
        let m: Money = text.parse().unwrap_or(Money::ZERO);
        if m == emitted_cost || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let over = ledger.picos() - budget.picos();
    // percent with 3 decimals, integer arithmetic on pico-dollars
    let milli_pct = over * 100_000 / budget.picos();
    let block = router.snapshot().signal("day:tenant_id=overshoot").map(|s: &BudgetSignal| s.reason.clone()).unwrap_or_default();
    Ok(format!(
        "overshoot: budget {budget} USD at {rate} USD/min ({calls} calls/min of {cost} USD), lookahead {la} s: ledger spend {ledger} USD ({emitted} calls emitted, {refused} refused, spending for ~{spent_secs} s); overshoot {sign}{int}.{frac:03}% of the budget (ledger {eq} emitted){nl}  block signal: {block}",
        rate = o.usd_per_min,
        calls = calls_per_min,
        la = o.lookahead_secs,
        sign = if over < 0 { "-" } else { "" },
        int = milli_pct.abs() / 1000,
        frac = milli_pct.abs() % 1000,
        eq = if ledger == emitted_cost { "==" } else { "!=" },
        nl = '\n',
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("budget_loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Failure> {
    let o = options()?;
    let root = workspace_root();
    let run = format!("bl{}", Utc::now().timestamp());
    let stack = Stack {
        bin: ledger_bin(&root)?,
        root: root.clone(),
        kafka: KafkaConfig { brokers: o.brokers.clone(), ..KafkaConfig::default() },
        topics: TopicNames::with_prefix(&format!("{run}.")),
        clickhouse: o.clickhouse.clone(),
        database: format!("ledger_{run}"),
        run: run.clone(),
        batch_delay_ms: o.batch_delay_ms,
    };
    let catalog_text = std::fs::read_to_string(root.join("catalog/litellm-prices.json"))?;
    let (source, _) = CatalogSource::from_litellm_json("litellm-prices", chrono::DateTime::UNIX_EPOCH, &catalog_text)?;
    let catalog = Catalog::new(vec![source])?;
    let cost = catalog.price_event(&event("x", 0, "x", "gpt-4o")).map_err(|e| format!("pricing: {e:?}"))?.cost;

    let out = stack.ledger().arg("migrate").output()?;
    if !out.status.success() {
        return Err(format!("ledger migrate: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(ledger_kafka::admin::ensure_topics(&stack.kafka, &ledger_kafka::admin::ledger_topics(&stack.topics, 4)))?;

    let plans: Vec<LatencyPlan> = o.rates.iter().map(|r| latency_plan(*r, o.secs, cost)).collect();
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir)?;
    let budgets = dir.join("budgets.toml");
    std::fs::write(&budgets, budgets_toml(&plans, &o))?;

    let seen: Seen = Arc::default();
    let observer_seen = seen.clone();
    let router = Router::start_observed(
        RouterConfig {
            kafka: stack.kafka.clone(),
            signals_topic: stack.topics.signals.clone(),
            policy: RouterPolicy::default(),
            ..RouterConfig::default()
        },
        Some(Arc::new(move |s: &BudgetSignal| {
            if let Ok(mut seen) = observer_seen.lock() {
                seen.entry((s.scope.clone(), s.state)).or_insert_with(Instant::now);
            }
        })),
    )?;
    router.wait_ready(Duration::from_secs(30))?;

    let mut services = vec![
        Service::start("ledger process", {
            let mut c = stack.ledger();
            c.arg("process");
            c
        })?,
        Service::start("ledger enforce", {
            let mut c = stack.ledger();
            c.arg("enforce").arg("--budgets").arg(&budgets);
            c
        })?,
    ];
    // Let both join their topics before the clock starts.
    std::thread::sleep(Duration::from_secs(5));
    for s in services.iter_mut() {
        s.check_running()?;
    }

    println!(
        "budget_loop: run {run}, event cost {cost} USD (gpt-4o, 2,000 in + 500 out tokens), processor batch delay {} ms",
        o.batch_delay_ms
    );
    let mut thresholds: HashMap<String, Vec<(Money, BudgetState)>> = HashMap::new();
    for plan in &plans {
        for i in 0..plan.tenants {
            let levels = LATENCY_THRESHOLDS
                .iter()
                .map(|(p, st)| (Money::from_picos((plan.limit.picos() * i128::from(*p) + 99) / 100), *st))
                .collect();
            thresholds.insert(tenant_name(plan.rate, i), levels);
        }
    }
    let spend_seen: Seen = Arc::default();
    let _watcher = SpendWatcher::start(&stack, thresholds, spend_seen.clone())?;
    for plan in &plans {
        let line = run_latency(&stack, plan, &o, cost, (&seen, &spend_seen), &mut services)?;
        println!("{line}");
    }
    let line = run_overshoot(&stack, &router, &o, cost, &mut services)?;
    println!("{line}");
    drop(services);
    let _ = stack.clickhouse_query(&format!("DROP DATABASE IF EXISTS {}", stack.database));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
