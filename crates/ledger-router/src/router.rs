//! [`Router`]: reads the signals topic in a background thread and answers `decide`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ledger_core::signal::BudgetSignal;
use ledger_kafka::KafkaConfig;
use ledger_schema::BudgetSignalCodec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::lease::client::LeaseClient;
use crate::lease::estimate::Estimator;
use crate::lease::{CallDecision, CallSize, LeaseRegistry, LeaseSettings, LeaseStats, Reservation};
use crate::view::{Applied, CallContext, Decision, RouterPolicy, SignalTable, Snapshot};
use crate::RouterError;
use ledger_core::catalog::Catalog;
use ledger_core::{Money, UsageEvent};

/// Settings of a [`Router`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// The signals topic (`llm.budget-signals.v1`).
    pub signals_topic: String,
    /// How signals are applied.
    pub policy: RouterPolicy,
    /// How long [`Router::start`] waits for the topic's metadata.
    pub metadata_timeout_ms: u64,
    /// Quota leases of the budgets enforced by them (docs/budgets.md).
    pub leases: LeaseSettings,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            kafka: KafkaConfig::default(),
            signals_topic: ledger_kafka::TopicNames::default().signals,
            policy: RouterPolicy::default(),
            metadata_timeout_ms: 10_000,
            leases: LeaseSettings::default(),
        }
    }
}

/// Called with every signal the router applied, right after decisions started to follow it.
pub type SignalObserver = Arc<dyn Fn(&BudgetSignal) + Send + Sync>;

/// Counters of a router's consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Signals that became a scope's state.
    pub applied: u64,
    /// Signals ignored because the scope already had the same or a higher sequence.
    pub not_newer: u64,
    /// Signals the router cannot use (unknown scope field); see the log.
    pub unusable: u64,
    /// Records that do not decode as a BudgetSignal; see the log.
    pub undecodable: u64,
    /// Tombstones (a scope removed from the compacted topic).
    pub removed: u64,
    /// Consumer errors (the consumer retries on its own; see the log).
    pub consumer_errors: u64,
    /// Scopes in the current view.
    pub scopes: u64,
}

#[derive(Default)]
struct Counters {
    applied: AtomicU64,
    not_newer: AtomicU64,
    unusable: AtomicU64,
    undecodable: AtomicU64,
    removed: AtomicU64,
    consumer_errors: AtomicU64,
}

struct Shared {
    view: ArcSwap<Snapshot>,
    ready: Mutex<bool>,
    ready_changed: Condvar,
    stop: AtomicBool,
    counters: Counters,
}

/// The client-side router: keeps the current state of every budget scope from the compacted
/// signals topic and decides, before each LLM call, whether to make it, with which model.
///
/// [`Router::start`] assigns every partition of the topic from the beginning (no consumer
/// group, nothing committed: every router reads the whole current state) and applies the
/// records in a background thread, which also reads partitions added to the topic later.
/// [`Router::decide`] reads an immutable snapshot through an atomic pointer: no lock, no
/// allocation when the call is allowed.
///
/// ```no_run
/// use ledger_router::{CallContext, Decision, Router, RouterConfig};
/// # fn main() -> Result<(), ledger_router::RouterError> {
/// let router = Router::start(RouterConfig::default())?;
/// router.wait_ready(std::time::Duration::from_secs(10))?;
/// let ctx = CallContext::tenant("acme").team("search");
/// match router.decide(&ctx, "gpt-4o") {
///     Decision::Allow => { /* call gpt-4o */ }
///     Decision::Reroute { to, .. } => { /* call `to`, then stamp the usage event */ }
///     Decision::Throttle { retry_after, .. } => { /* come back after retry_after */ }
///     Decision::Block { reason, .. } => { /* refuse, with reason */ }
/// }
/// # Ok(()) }
/// ```
pub struct Router {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    topic: String,
    leases: Arc<LeaseRegistry>,
    /// Dropped before the signals thread stops: returns every lease held.
    client: Option<LeaseClient>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("topic", &self.topic).field("ready", &self.is_ready()).finish_non_exhaustive()
    }
}

impl Router {
    /// Starts reading `config.signals_topic` from the beginning in a background thread.
    ///
    /// Fails when the topic does not exist (start the enforcer, or create it) or Kafka cannot
    /// be reached within `metadata_timeout_ms`. Decisions allow everything until the signals
    /// are read: use [`Router::wait_ready`] before the first call when that matters.
    ///
    /// Without a price catalog the router cannot estimate calls: the calls of lease budgets
    /// fail closed or open as `config.leases.unreachable` says. Use
    /// [`Router::start_with_catalog`] when some budgets use quota leases.
    pub fn start(config: RouterConfig) -> Result<Router, RouterError> {
        Router::start_observed(config, None)
    }

    /// [`Router::start`] with the price catalog (the processor's) that estimates calls under
    /// lease budgets, and the lease client that asks the enforcer for allowances.
    pub fn start_with_catalog(config: RouterConfig, catalog: Arc<Catalog>) -> Result<Router, RouterError> {
        Router::start_full(config, Some(catalog), None)
    }

    /// [`Router::start`] that calls `observer` with each signal once decisions follow it
    /// (e.g. to measure how quickly signals arrive, or to log them).
    pub fn start_observed(config: RouterConfig, observer: Option<SignalObserver>) -> Result<Router, RouterError> {
        Router::start_full(config, None, observer)
    }

    /// [`Router::start_with_catalog`] with an observer.
    pub fn start_full(
        mut config: RouterConfig,
        catalog: Option<Arc<Catalog>>,
        observer: Option<SignalObserver>,
    ) -> Result<Router, RouterError> {
        let problems = config.leases.problems();
        if !problems.is_empty() {
            return Err(RouterError::Config(problems.join("; ")));
        }
        let codec = BudgetSignalCodec::new().map_err(|e| RouterError::Schema(e.to_string()))?;
        config.kafka.resolve_secrets().map_err(RouterError::Settings)?;
        // Unreachable brokers are reported below, where the topic's partitions are read.
        if let Err(e @ ledger_kafka::KafkaError::Config { .. }) =
            ledger_kafka::check_connection(&config.kafka, Duration::from_millis(config.metadata_timeout_ms))
        {
            return Err(RouterError::Settings(e));
        }
        let consumer = signal_consumer(&config)?;
        let partitions = partitions_of(&consumer, &config.signals_topic, Duration::from_millis(config.metadata_timeout_ms))?;
        let assignment = from_beginning(&config.signals_topic, &partitions)
            .map_err(|e| RouterError::kafka("assigning the signals topic", e))?;
        consumer.assign(&assignment).map_err(|e| RouterError::kafka("assigning the signals topic", e))?;

        let shared = Arc::new(Shared {
            view: ArcSwap::from_pointee(Snapshot::default()),
            ready: Mutex::new(false),
            ready_changed: Condvar::new(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let with_catalog = catalog.is_some();
        let l = &config.leases;
        let estimator = Estimator::new(catalog, l.default_output_tokens, l.output_tokens.clone());
        let leases = Arc::new(LeaseRegistry::new(config.leases.clone(), estimator));
        let client = if with_catalog {
            Some(LeaseClient::start(&config.kafka, leases.clone(), Duration::from_millis(config.metadata_timeout_ms))?)
        } else {
            None
        };
        let mut table = SignalTable::with_leases(config.policy, leases.clone());
        shared.view.store(table.snapshot());
        let worker = Worker {
            consumer,
            topic: config.signals_topic.clone(),
            assigned: partitions.iter().copied().collect(),
            state: WorkerState {
                codec,
                table,
                shared: shared.clone(),
                not_at_end: partitions.into_iter().collect(),
                observer,
                pending_observed: Vec::new(),
            },
        };
        let thread = std::thread::Builder::new()
            .name("ledger-router".into())
            .spawn(move || worker.run())
            .map_err(|e| RouterError::Thread(e.to_string()))?;
        Ok(Router { shared, thread: Some(thread), topic: config.signals_topic, leases, client })
    }

    /// A router over a fixed list of signals, without Kafka (for tests, benchmarks and
    /// offline tools). It is ready at once.
    pub fn from_signals(policy: RouterPolicy, signals: impl IntoIterator<Item = BudgetSignal>) -> Router {
        let mut table = SignalTable::new(policy);
        let counters = Counters::default();
        for s in signals {
            count(&counters, &table.apply(s));
        }
        let shared = Arc::new(Shared {
            view: ArcSwap::new(table.snapshot()),
            ready: Mutex::new(true),
            ready_changed: Condvar::new(),
            stop: AtomicBool::new(false),
            counters,
        });
        Router { shared, thread: None, topic: String::new(), leases: Arc::default(), client: None }
    }

    /// The decision for a call of `ctx` asking for `requested_model`, on the current view.
    ///
    /// Lock-free; allocates nothing when the call is allowed; reads the clock only when some
    /// scope of the call's tenant (or a scope without tenant) has a restrictive signal.
    #[inline]
    pub fn decide(&self, ctx: &CallContext<'_>, requested_model: &str) -> Decision {
        self.shared.view.load().decide_with_clock(ctx, requested_model, now_us)
    }

    /// The decision for a call of `ctx` asking for `requested_model` of `size`. Under lease
    /// budgets the call's estimate is reserved from this router's allowance: report what the
    /// call cost with [`Router::complete`] (or [`Router::cancel`] when it was not made).
    ///
    /// ```no_run
    /// use ledger_router::{CallContext, CallSize, Router};
    /// fn call(router: &Router, make_the_call: impl Fn(&str) -> ledger_core::UsageEvent) {
    ///     let size = CallSize { input_tokens: 1_200, max_tokens: Some(500), provider: "openai" };
    ///     let call = router.decide_call(&CallContext::tenant("acme"), "gpt-4o", &size);
    ///     if let Some(model) = call.decision.model_to_call("gpt-4o") {
    ///         let usage = make_the_call(model);
    ///         if let Some(reservation) = call.reservation {
    ///             router.complete_event(reservation, &usage);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn decide_call(&self, ctx: &CallContext<'_>, requested_model: &str, size: &CallSize<'_>) -> CallDecision {
        self.shared.view.load().decide_call_with_clock(ctx, requested_model, size, now_us)
    }

    /// The call of `reservation` was made and cost `actual`: the lease is corrected from the
    /// estimate to it, and `estimate − actual` is recorded ([`LeaseStats::estimate_error`]).
    pub fn complete(&self, reservation: Reservation, actual: Money) {
        self.leases.complete(&reservation, Some(actual));
    }

    /// [`Router::complete`] with the call's usage event, priced with the router's catalog (an
    /// event the catalog cannot price counts as what the ledger will count: nothing).
    pub fn complete_event(&self, reservation: Reservation, event: &UsageEvent) {
        let actual = self.leases.estimator.catalog().and_then(|c| c.price_event(event).ok()).map_or(Money::ZERO, |p| p.cost);
        self.complete(reservation, actual);
    }

    /// The call of `reservation` was not made: its estimate goes back to the lease.
    pub fn cancel(&self, reservation: Reservation) {
        self.leases.complete(&reservation, None);
    }

    /// This router's id in the lease protocol.
    pub fn instance_id(&self) -> &str {
        &self.leases.instance
    }

    /// The lease counters and the estimate-error histogram.
    pub fn lease_stats(&self) -> LeaseStats {
        self.leases.counters.snapshot()
    }

    /// The allowance open to new calls under lease budget `key` in this router.
    pub fn lease_allowance(&self, key: &str) -> Option<Money> {
        self.leases.find(key).map(|a| a.open_allowance())
    }

    /// The current view (every scope's latest signal).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.view.load_full()
    }

    /// True once the router has read every partition up to its end as of the start.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the router has read the whole topic as of its start (so that decisions
    /// follow every signal published before), at most `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), RouterError> {
        let deadline = Instant::now() + timeout;
        let mut ready = self.shared.ready.lock().unwrap_or_else(|p| p.into_inner());
        while !*ready {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RouterError::NotReady { topic: self.topic.clone(), waited: timeout });
            }
            ready = self.shared.ready_changed.wait_timeout(ready, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(())
    }

    /// The consumer's counters.
    pub fn stats(&self) -> RouterStats {
        let c = &self.shared.counters;
        RouterStats {
            applied: c.applied.load(Ordering::Relaxed),
            not_newer: c.not_newer.load(Ordering::Relaxed),
            unusable: c.unusable.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            removed: c.removed.load(Ordering::Relaxed),
            consumer_errors: c.consumer_errors.load(Ordering::Relaxed),
            scopes: self.shared.view.load().len() as u64,
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        drop(self.client.take());
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn count(c: &Counters, applied: &Applied) {
    let counter = match applied {
        Applied::Updated => &c.applied,
        Applied::NotNewer { .. } => &c.not_newer,
        Applied::Unusable(_) => &c.unusable,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn signal_consumer(config: &RouterConfig) -> Result<BaseConsumer, RouterError> {
    // A group id is required by librdkafka, but the router never joins or commits: every
    // router instance reads the whole compacted topic.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let group = format!("ledger-router-{}-{nanos}", std::process::id());
    let cfg = config.kafka.consumer_config(&[
        ("group.id", &group),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", "earliest"),
        // Signals are few and latency matters: do not wait to fill fetches.
        ("fetch.wait.max.ms", "20"),
        ("fetch.min.bytes", "1"),
    ]);
    cfg.create().map_err(|e| RouterError::kafka("creating the signals consumer", e))
}

pub(crate) fn partitions_of(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, RouterError> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| RouterError::kafka(format!("fetching the metadata of {topic}"), e))?;
    let t = md.topics().iter().find(|t| t.name() == topic);
    match t {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().iter().map(|p| p.id()).collect()),
        _ => Err(RouterError::TopicMissing { topic: topic.to_owned() }),
    }
}

/// Records applied per published snapshot at most, so a long initial read still publishes
/// progress.
const MAX_BATCH: usize = 10_000;

struct Worker {
    consumer: BaseConsumer,
    topic: String,
    /// The signals topic's partitions read: the topic's metadata is asked again every
    /// [`PARTITION_REFRESH`], and partitions added since are read from their beginning.
    assigned: std::collections::BTreeSet<i32>,
    state: WorkerState,
}

/// How often the router asks whether the signals topic has new partitions.
const PARTITION_REFRESH: Duration = Duration::from_secs(5);

struct WorkerState {
    codec: BudgetSignalCodec,
    table: SignalTable,
    shared: Arc<Shared>,
    /// Partitions not yet read to their end (at start).
    not_at_end: std::collections::BTreeSet<i32>,
    observer: Option<SignalObserver>,
    pending_observed: Vec<BudgetSignal>,
}

impl Worker {
    fn run(self) {
        let Worker { consumer, topic, mut assigned, state: mut this } = self;
        let mut refresh_at = std::time::Instant::now() + PARTITION_REFRESH;
        while !this.shared.stop.load(Ordering::Relaxed) {
            if std::time::Instant::now() >= refresh_at {
                refresh_at = std::time::Instant::now() + PARTITION_REFRESH;
                assign_new_partitions(&consumer, &topic, &mut assigned);
            }
            let mut batch = 0;
            let mut wait = Duration::from_millis(100);
            while batch < MAX_BATCH {
                let Some(result) = consumer.poll(wait) else { break };
                wait = Duration::ZERO;
                batch += 1;
                match result {
                    Ok(message) => this.handle(message.key(), message.payload(), message.partition(), message.offset()),
                    Err(RdKafkaError::PartitionEOF(partition)) => {
                        this.not_at_end.remove(&partition);
                    }
                    Err(e) => {
                        this.shared.counters.consumer_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "budget signals consumer error (retrying)");
                    }
                }
            }
            this.publish();
        }
    }
}

/// `partitions` of `topic`, each from its beginning.
fn from_beginning(topic: &str, partitions: &[i32]) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    Ok(tpl)
}

/// Reads the partitions of `topic` added since `assigned` was taken, from their beginning.
/// Failures are logged and tried again at the next refresh.
fn assign_new_partitions(consumer: &BaseConsumer, topic: &str, assigned: &mut std::collections::BTreeSet<i32>) {
    let partitions = match partitions_of(consumer, topic, Duration::from_secs(2)) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "checking the signals topic for new partitions");
            return;
        }
    };
    let added: Vec<i32> = partitions.into_iter().filter(|p| !assigned.contains(p)).collect();
    if added.is_empty() {
        return;
    }
    let assigning = from_beginning(topic, &added).and_then(|tpl| consumer.incremental_assign(&tpl));
    match assigning {
        Ok(()) => {
            tracing::info!(?added, "reading new partitions of the signals topic");
            assigned.extend(added);
        }
        Err(e) => tracing::warn!(error = %e, "assigning new partitions of the signals topic failed; trying again"),
    }
}

impl WorkerState {
    fn handle(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>, partition: i32, offset: i64) {
        let Some(payload) = payload else {
            if let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) {
                if self.table.remove(key) {
                    self.shared.counters.removed.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        };
        let signal = match self.codec.decode(payload) {
            Ok(signal) => signal,
            Err(e) => {
                self.shared.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(partition, offset, error = %e, "skipping a budget signal that does not decode");
                return;
            }
        };
        if key.is_some_and(|k| k != signal.scope.as_bytes()) {
            tracing::warn!(partition, offset, scope = %signal.scope, "budget signal keyed differently from its scope; using the scope");
        }
        let observed = self.observer.is_some().then(|| signal.clone());
        let applied = self.table.apply(signal);
        count(&self.shared.counters, &applied);
        match applied {
            Applied::Updated => self.pending_observed.extend(observed),
            Applied::NotNewer { have, got } => {
                tracing::debug!(partition, offset, have, got, "ignoring a budget signal that is not newer")
            }
            Applied::Unusable(why) => tracing::warn!(partition, offset, %why, "ignoring a budget signal"),
        }
    }

    fn publish(&mut self) {
        if self.table.has_changes() {
            self.shared.view.store(self.table.snapshot());
        }
        if let Some(observer) = &self.observer {
            for signal in self.pending_observed.drain(..) {
                observer(&signal);
            }
        }
        if self.not_at_end.is_empty() {
            let mut ready = self.shared.ready.lock().unwrap_or_else(|p| p.into_inner());
            if !*ready {
                *ready = true;
                self.shared.ready_changed.notify_all();
            }
        }
    }
}
