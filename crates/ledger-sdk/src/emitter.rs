//! The emitter: a bounded in-process queue drained by one background thread into an idempotent
//! Kafka producer.
//!
//! `emit` only validates the event and pushes it onto the queue (one uncontended mutex), so an
//! LLM call is never slowed by Kafka. When the queue is full the configured
//! [`OverflowPolicy`] decides; every outcome is counted in [`EmitterMetrics`] and every event
//! that does not reach Kafka is reported to the failure handler.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ledger_core::UsageEvent;
use ledger_kafka::KafkaConfig;
use ledger_schema::UsageEventCodec;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::SdkError;

/// What `emit` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Refuse the new event (`emit` returns [`EmitError::QueueFull`]); the default: the
    /// caller's thread never waits.
    DropNewest,
    /// Evict the oldest queued event to make room; the evicted event goes to the failure handler.
    DropOldest,
    /// Wait up to this long for room, then refuse the new event. The only policy that may
    /// block the caller, and only for this bound.
    BlockWithTimeout(Duration),
}

/// Settings of an [`Emitter`].
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Kafka connection (brokers and extra librdkafka properties, applied last).
    pub kafka: KafkaConfig,
    /// Usage topic.
    pub topic: String,
    /// Events held in the in-process queue at most.
    pub queue_capacity: usize,
    /// What happens when the queue is full.
    pub overflow: OverflowPolicy,
    /// How long dropping an emitter that was not shut down waits for its events to be delivered.
    pub drop_flush_timeout: Duration,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            kafka: KafkaConfig::default(),
            topic: "llm.usage.v1".to_owned(),
            queue_capacity: 100_000,
            overflow: OverflowPolicy::DropNewest,
            drop_flush_timeout: Duration::from_secs(5),
        }
    }
}

/// Why `emit` did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The queue was full (after waiting, with [`OverflowPolicy::BlockWithTimeout`]); the event
    /// was dropped and counted.
    #[error("the emitter's queue is full: the event was dropped (raise queue_capacity or check that Kafka is reachable)")]
    QueueFull,
    /// The emitter is shutting down.
    #[error("the emitter is shut down")]
    Closed,
    /// The event would be rejected by the ledger.
    #[error("invalid usage event: {0}")]
    Invalid(ledger_core::event::Rejection),
}

/// Why an accepted event did not reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// Evicted from a full queue ([`OverflowPolicy::DropOldest`]).
    DroppedOldest,
    /// Kafka refused it or did not acknowledge it within `message.timeout.ms`.
    Kafka(String),
    /// It could not be encoded (a bug; reported rather than lost silently).
    Encode(String),
    /// Still queued when `shutdown` gave up at its deadline.
    Abandoned,
}

/// An accepted event that did not reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The event's id (resend the event with the same id: the ledger counts it once).
    pub event_id: String,
    /// Why.
    pub reason: FailureReason,
}

/// Counters of an emitter (monotonic, except the two gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitterMetrics {
    /// Events taken by `emit`.
    pub accepted: u64,
    /// Events refused by `emit` because the queue was full ([`OverflowPolicy::DropNewest`]).
    pub dropped_newest: u64,
    /// Queued events evicted for newer ones ([`OverflowPolicy::DropOldest`]).
    pub dropped_oldest: u64,
    /// Events refused after waiting for room ([`OverflowPolicy::BlockWithTimeout`]).
    pub dropped_after_timeout: u64,
    /// Events refused because they are invalid.
    pub invalid: u64,
    /// Events Kafka acknowledged.
    pub delivered: u64,
    /// Accepted events Kafka refused or that could not be encoded.
    pub failed: u64,
    /// Accepted events abandoned at a shutdown deadline.
    pub abandoned: u64,
    /// Gauge: events in the in-process queue now.
    pub queued: u64,
    /// Gauge: accepted events neither delivered nor failed nor dropped yet.
    pub outstanding: u64,
}

type FailureHandler = Arc<dyn Fn(&DeliveryFailure) + Send + Sync>;

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
    dropped_after_timeout: AtomicU64,
    invalid: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    outstanding: AtomicU64,
}

struct QueueState {
    events: VecDeque<UsageEvent>,
    closing: bool,
    worker_waiting: bool,
    emitters_waiting: usize,
}

struct Shared {
    queue: Mutex<QueueState>,
    /// Signalled when events arrive (for the worker) or the emitter closes.
    has_events: Condvar,
    /// Signalled when the worker took events (for blocked `emit` calls).
    has_room: Condvar,
    /// Signalled when `outstanding` may have reached zero.
    settled: Condvar,
    settled_lock: Mutex<()>,
    counters: Counters,
    abort: AtomicBool,
    capacity: usize,
    overflow: OverflowPolicy,
    on_failure: Option<FailureHandler>,
    /// Keeps the worker from taking events until cleared, so a test sees the queue alone.
    #[cfg(test)]
    worker_held: AtomicBool,
}

#[cfg(test)]
thread_local! {
    /// Emitters built on this thread while set start with their worker held (tests only).
    static HOLD_NEW_WORKERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic in a failure handler must not make the emitter unusable.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn finish(&self, failure: Option<DeliveryFailure>) {
        if let Some(f) = failure {
            if let Some(handler) = &self.on_failure {
                handler(&f);
            }
        }
        if self.counters.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.settled_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.settled.notify_all();
        }
    }
}

struct DeliveryContext {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<String>;

    fn delivery(&self, result: &DeliveryResult<'_>, event_id: Box<String>) {
        match result {
            Ok(_) => {
                self.shared.counters.delivered.fetch_add(1, Ordering::Relaxed);
                self.shared.finish(None);
            }
            Err((e, _)) => {
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.shared.finish(Some(DeliveryFailure {
                    event_id: *event_id,
                    reason: FailureReason::Kafka(e.to_string()),
                }));
            }
        }
    }
}

/// Emits usage events to Kafka without slowing the caller. Cheap to share behind an `Arc`.
///
/// Call [`Emitter::shutdown`] before the process exits: it delivers what is still queued or in
/// flight, up to a deadline. Dropping the emitter does the same with
/// [`EmitterConfig::drop_flush_timeout`].
pub struct Emitter {
    shared: Arc<Shared>,
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    worker: Option<JoinHandle<()>>,
    drop_flush_timeout: Duration,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter").field("capacity", &self.shared.capacity).field("metrics", &self.metrics()).finish()
    }
}

impl Emitter {
    /// An emitter with the given settings and no failure handler (failures are still counted).
    pub fn new(config: EmitterConfig) -> Result<Emitter, SdkError> {
        Self::build(config, None)
    }

    /// An emitter that calls `handler` for every accepted event that does not reach Kafka.
    ///
    /// The handler runs on the emitter's threads (or, for [`OverflowPolicy::DropOldest`], on
    /// the thread calling `emit`): keep it short and non-blocking.
    pub fn with_failure_handler(
        config: EmitterConfig,
        handler: impl Fn(&DeliveryFailure) + Send + Sync + 'static,
    ) -> Result<Emitter, SdkError> {
        Self::build(config, Some(Arc::new(handler)))
    }

    fn build(config: EmitterConfig, on_failure: Option<FailureHandler>) -> Result<Emitter, SdkError> {
        if config.queue_capacity == 0 {
            return Err(SdkError::Config("queue_capacity must be at least 1".to_owned()));
        }
        if config.topic.trim().is_empty() {
            return Err(SdkError::Config("topic must not be empty".to_owned()));
        }
        let codec = UsageEventCodec::new().map_err(|e| SdkError::Config(format!("usage event schema: {e}")))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(QueueState {
                events: VecDeque::with_capacity(config.queue_capacity.min(65_536)),
                closing: false,
                worker_waiting: false,
                emitters_waiting: 0,
            }),
            has_events: Condvar::new(),
            has_room: Condvar::new(),
            settled: Condvar::new(),
            settled_lock: Mutex::new(()),
            counters: Counters::default(),
            abort: AtomicBool::new(false),
            capacity: config.queue_capacity,
            overflow: config.overflow,
            on_failure,
            #[cfg(test)]
            worker_held: AtomicBool::new(HOLD_NEW_WORKERS.with(|h| h.get())),
        });
        let mut client = config.kafka.client_config();
        client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000");
        for (k, v) in &config.kafka.options {
            client.set(k, v);
        }
        let producer: ThreadedProducer<DeliveryContext> = client
            .create_with_context(DeliveryContext { shared: Arc::clone(&shared) })
            .map_err(|e| SdkError::Kafka(format!("creating the producer: {e}")))?;
        let producer = Arc::new(producer);
        let worker = {
            let shared = Arc::clone(&shared);
            let producer = Arc::clone(&producer);
            let topic = config.topic.clone();
            std::thread::Builder::new()
                .name("ledger-sdk-emitter".to_owned())
                .spawn(move || drain_queue(&shared, &producer, &topic, codec))
                .map_err(|e| SdkError::Config(format!("cannot start the emitter thread: {e}")))?
        };
        Ok(Emitter { shared, producer, worker: Some(worker), drop_flush_timeout: config.drop_flush_timeout })
    }

    /// Queues `event` for delivery. Never waits for Kafka; waits for queue room only under
    /// [`OverflowPolicy::BlockWithTimeout`], at most its bound.
    pub fn emit(&self, event: UsageEvent) -> Result<(), EmitError> {
        let counters = &self.shared.counters;
        if let Err(rejection) = event.validate() {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            return Err(EmitError::Invalid(rejection));
        }
        let mut evicted = None;
        {
            let mut q = self.shared.lock();
            if q.closing {
                return Err(EmitError::Closed);
            }
            if q.events.len() >= self.shared.capacity {
                match self.shared.overflow {
                    OverflowPolicy::DropNewest => {
                        counters.dropped_newest.fetch_add(1, Ordering::Relaxed);
                        return Err(EmitError::QueueFull);
                    }
                    OverflowPolicy::DropOldest => {
                        evicted = q.events.pop_front();
                        counters.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    }
                    OverflowPolicy::BlockWithTimeout(bound) => {
                        let deadline = Instant::now() + bound;
                        while q.events.len() >= self.shared.capacity && !q.closing {
                            let now = Instant::now();
                            if now >= deadline {
                                break;
                            }
                            q.emitters_waiting += 1;
                            let (guard, _) = self
                                .shared
                                .has_room
                                .wait_timeout(q, deadline - now)
                                .unwrap_or_else(|p| p.into_inner());
                            q = guard;
                            q.emitters_waiting -= 1;
                        }
                        if q.closing {
                            return Err(EmitError::Closed);
                        }
                        if q.events.len() >= self.shared.capacity {
                            counters.dropped_after_timeout.fetch_add(1, Ordering::Relaxed);
                            return Err(EmitError::QueueFull);
                        }
                    }
                }
            }
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            if evicted.is_none() {
                counters.outstanding.fetch_add(1, Ordering::AcqRel);
            }
            q.events.push_back(event);
            if q.worker_waiting {
                q.worker_waiting = false;
                self.shared.has_events.notify_one();
            }
        }
        if let Some(old) = evicted {
            if let Some(handler) = &self.shared.on_failure {
                handler(&DeliveryFailure { event_id: old.event_id, reason: FailureReason::DroppedOldest });
            }
        }
        Ok(())
    }

    /// The counters now.
    pub fn metrics(&self) -> EmitterMetrics {
        let c = &self.shared.counters;
        let queued = self.shared.lock().events.len() as u64;
        EmitterMetrics {
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped_newest: c.dropped_newest.load(Ordering::Relaxed),
            dropped_oldest: c.dropped_oldest.load(Ordering::Relaxed),
            dropped_after_timeout: c.dropped_after_timeout.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            queued,
            outstanding: c.outstanding.load(Ordering::Acquire),
        }
    }

    /// Waits until every event accepted so far was delivered (or failed), at most `timeout`.
    /// Emitting may continue meanwhile. Errors with the number still outstanding at the deadline.
    pub fn flush(&self, timeout: Duration) -> Result<(), SdkError> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.settled_lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let outstanding = self.shared.counters.outstanding.load(Ordering::Acquire);
            if outstanding == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SdkError::FlushTimeout { outstanding, timeout });
            }
            // Bounded waits: the librdkafka linger and delivery reports need no nudge, but a
            // missed wake-up must not cost more than a few milliseconds.
            let wait = (deadline - now).min(Duration::from_millis(20));
            guard = self.shared.settled.wait_timeout(guard, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Stops accepting events, delivers what is queued and in flight within `timeout`, and
    /// stops the emitter. Events still undelivered at the deadline are reported to the failure
    /// handler as [`FailureReason::Abandoned`] (or left to Kafka's in-flight delivery) and the
    /// error says how many. Returns the final counters.
    pub fn shutdown(mut self, timeout: Duration) -> Result<EmitterMetrics, SdkError> {
        let result = self.close(timeout);
        let metrics = self.metrics();
        result.map(|()| metrics)
    }

    fn close(&mut self, timeout: Duration) -> Result<(), SdkError> {
        let Some(worker) = self.worker.take() else { return Ok(()) };
        {
            let mut q = self.shared.lock();
            q.closing = true;
            self.shared.has_events.notify_all();
            self.shared.has_room.notify_all();
        }
        let flushed = self.flush(timeout);
        if flushed.is_err() {
            self.shared.abort.store(true, Ordering::Release);
        }
        let _ = worker.join();
        // Give librdkafka the remaining time for what it holds (no-op when flushed).
        let _ = self.producer.flush(Duration::from_millis(0));
        flushed
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        let timeout = self.drop_flush_timeout;
        let _ = self.close(timeout);
    }
}

/// The worker: takes events off the queue, encodes them and hands them to librdkafka, waiting
/// (and so letting the queue fill, which is what the overflow policy is for) while
/// librdkafka's own buffer is full.
fn drain_queue(shared: &Shared, producer: &ThreadedProducer<DeliveryContext>, topic: &str, codec: UsageEventCodec) {
    const BATCH: usize = 2048;
    let mut batch: Vec<UsageEvent> = Vec::with_capacity(BATCH);
    let mut payload = Vec::with_capacity(512);
    loop {
        #[cfg(test)]
        while shared.worker_held.load(Ordering::Acquire) && !shared.abort.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        {
            let mut q = shared.lock();
            while q.events.is_empty() {
                if q.closing {
                    return;
                }
                q.worker_waiting = true;
                q = shared.has_events.wait_timeout(q, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
                q.worker_waiting = false;
            }
            let n = q.events.len().min(BATCH);
            batch.extend(q.events.drain(..n));
            if q.emitters_waiting > 0 {
                shared.has_room.notify_all();
            }
        }
        for event in batch.drain(..) {
            if shared.abort.load(Ordering::Acquire) {
                abandon(shared, event);
                continue;
            }
            payload.clear();
            if let Err(e) = codec.encode_into(&event, &mut payload) {
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                shared.finish(Some(DeliveryFailure { event_id: event.event_id, reason: FailureReason::Encode(e.to_string()) }));
                continue;
            }
            let mut record = BaseRecord::with_opaque_to(topic, Box::new(event.event_id.clone()))
                .key(event.attribution.tenant_id.as_bytes())
                .payload(payload.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if shared.abort.load(Ordering::Acquire) {
                            abandon(shared, event.clone());
                            break;
                        }
                        record = r;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err((e, r)) => {
                        shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                        shared.finish(Some(DeliveryFailure {
                            event_id: *r.delivery_opaque,
                            reason: FailureReason::Kafka(e.to_string()),
                        }));
                        break;
                    }
                }
            }
        }
        if shared.abort.load(Ordering::Acquire) {
            let rest: Vec<UsageEvent> = shared.lock().events.drain(..).collect();
            for event in rest {
                abandon(shared, event);
            }
        }
    }
}

fn abandon(shared: &Shared, event: UsageEvent) {
    shared.counters.abandoned.fetch_add(1, Ordering::Relaxed);
    shared.finish(Some(DeliveryFailure { event_id: event.event_id, reason: FailureReason::Abandoned }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBuilder, OpenAiUsage};

    /// An emitter whose Kafka never answers and whose librdkafka buffer holds one message, so
    /// the worker stalls and the in-process queue fills: at most `capacity` queued, at most
    /// `capacity` in the worker's hands, one in librdkafka.
    fn stalled(capacity: usize, overflow: OverflowPolicy, failures: Arc<Mutex<Vec<DeliveryFailure>>>) -> Emitter {
        let mut kafka = KafkaConfig { brokers: "127.0.0.1:1".to_owned(), ..KafkaConfig::default() };
        kafka.options.insert("queue.buffering.max.messages".to_owned(), "1".to_owned());
        let config = EmitterConfig {
            kafka,
            topic: "unit.sdk".to_owned(),
            queue_capacity: capacity,
            overflow,
            drop_flush_timeout: Duration::from_millis(10),
        };
        Emitter::with_failure_handler(config, move |f| failures.lock().unwrap().push(f.clone())).unwrap()
    }

    /// Like [`stalled`], but the worker takes nothing until [`release`]: what the queue holds
    /// depends only on the emits, not on when the worker thread runs.
    fn held(capacity: usize, overflow: OverflowPolicy, failures: Arc<Mutex<Vec<DeliveryFailure>>>) -> Emitter {
        HOLD_NEW_WORKERS.with(|h| h.set(true));
        let emitter = stalled(capacity, overflow, failures);
        HOLD_NEW_WORKERS.with(|h| h.set(false));
        emitter
    }

    fn release(emitter: &Emitter) {
        emitter.shared.worker_held.store(false, Ordering::Release);
    }

    fn event(i: usize) -> UsageEvent {
        EventBuilder::openai("gpt-4o-mini", OpenAiUsage { prompt_tokens: 10, completion_tokens: 5, ..Default::default() })
            .tenant("acme")
            .event_id(format!("e{i}"))
            .build()
            .unwrap()
    }

    #[test]
    fn drop_newest_refuses_and_counts() {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let emitter = stalled(10, OverflowPolicy::DropNewest, Arc::clone(&failures));
        let refused = (0..100).filter(|i| emitter.emit(event(*i)) == Err(EmitError::QueueFull)).count() as u64;
        let m = emitter.metrics();
        assert_eq!(m.accepted + m.dropped_newest, 100);
        assert_eq!(m.dropped_newest, refused);
        assert!(m.accepted <= 21, "{m:?}");
        assert!(failures.lock().unwrap().is_empty(), "refused events are the caller's, not failures");
        let err = emitter.shutdown(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, SdkError::FlushTimeout { .. }), "{err}");
    }

    #[test]
    fn drop_oldest_evicts_and_reports() {
        let failures = Arc::new(Mutex::new(Vec::new()));
        // Held, so the worker takes nothing: which events are evicted is exact. (A running
        // worker would take some into its hands at a moment that depends on the scheduler.)
        let emitter = held(10, OverflowPolicy::DropOldest, Arc::clone(&failures));
        for i in 0..100 {
            emitter.emit(event(i)).unwrap();
        }
        let m = emitter.metrics();
        assert_eq!(m.accepted, 100);
        assert_eq!(m.dropped_oldest, 90, "{m:?}");
        assert_eq!(m.queued, 10);
        assert_eq!(m.outstanding, 10);
        let evicted = failures.lock().unwrap().clone();
        assert!(evicted.iter().all(|f| f.reason == FailureReason::DroppedOldest));
        // The oldest go, in order; the newest ten are kept.
        let evicted_ids: Vec<String> = evicted.iter().map(|f| f.event_id.clone()).collect();
        let expected: Vec<String> = (0..90).map(|i| format!("e{i}")).collect();
        assert_eq!(evicted_ids, expected);
        release(&emitter);
    }

    #[test]
    fn block_with_timeout_waits_then_refuses() {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let emitter = stalled(5, OverflowPolicy::BlockWithTimeout(Duration::from_millis(20)), failures);
        let refused = (0..20).filter(|i| emitter.emit(event(*i)).is_err()).count() as u64;
        let m = emitter.metrics();
        assert_eq!(m.dropped_after_timeout, refused);
        assert_eq!(m.accepted + refused, 20);
        assert!(refused >= 9, "{m:?}");
    }

    #[test]
    fn invalid_events_and_a_zero_capacity_are_refused() {
        let emitter = stalled(5, OverflowPolicy::DropNewest, Arc::new(Mutex::new(Vec::new())));
        let mut bad = event(1);
        bad.reasoning_output_tokens = bad.output_tokens + 1;
        assert!(matches!(emitter.emit(bad), Err(EmitError::Invalid(_))));
        assert_eq!(emitter.metrics().invalid, 1);
        assert!(EmitterConfig::default().queue_capacity > 0);
        let zero = EmitterConfig { queue_capacity: 0, ..EmitterConfig::default() };
        assert!(matches!(Emitter::new(zero), Err(SdkError::Config(_))));
    }

    #[test]
    fn shutdown_at_the_deadline_abandons_and_reports_what_is_left() {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let emitter = stalled(1_000, OverflowPolicy::DropNewest, Arc::clone(&failures));
        for i in 0..50 {
            emitter.emit(event(i)).unwrap();
        }
        let err = emitter.shutdown(Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, SdkError::FlushTimeout { .. }));
        let failures = failures.lock().unwrap();
        // Everything but the one message librdkafka holds is abandoned and reported by id.
        let abandoned = failures.iter().filter(|f| f.reason == FailureReason::Abandoned).count();
        assert!(abandoned >= 49, "{abandoned}");
    }
}
