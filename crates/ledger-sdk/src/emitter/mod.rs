//! The emitter: a bounded in-process queue drained by one background thread into an idempotent
//! Kafka producer.
//!
//! `emit` only validates the event and pushes it onto the queue (one uncontended mutex), so an
//! LLM call is never slowed by Kafka. When the queue is full the configured
//! [`OverflowPolicy`] decides; every outcome is counted in [`EmitterMetrics`] and every event
//! that does not reach Kafka is reported to the failure handler.

mod config;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ledger_core::UsageEvent;
use ledger_schema::UsageEventCodec;
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::SdkError;
use worker::{drain_queue, DeliveryContext};

pub use config::{DeliveryFailure, EmitError, EmitterConfig, EmitterMetrics, FailureReason, OverflowPolicy};

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

    /// Connects to the brokers once and fails when they refuse the settings (credentials,
    /// certificate, protocol) or do not answer within `timeout`: for a service that wants to
    /// fail at start rather than count failed deliveries later. Blocking.
    pub fn check_connection(config: &EmitterConfig, timeout: std::time::Duration) -> Result<(), SdkError> {
        let mut kafka = config.kafka.clone();
        kafka.resolve_secrets().map_err(|e| SdkError::Kafka(e.to_string()))?;
        ledger_kafka::check_connection(&kafka, timeout).map_err(|e| SdkError::Kafka(e.to_string()))
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

    fn build(mut config: EmitterConfig, on_failure: Option<FailureHandler>) -> Result<Emitter, SdkError> {
        config.kafka.resolve_secrets().map_err(|e| SdkError::Kafka(e.to_string()))?;
        if config.queue_capacity == 0 {
            return Err(SdkError::Config("queue_capacity must be at least 1".to_owned()));
        }
        if config.topic.trim().is_empty() {
            return Err(SdkError::Config("topic must not be empty".to_owned()));
        }
        let codec = UsageEventCodec::new().map_err(|e| SdkError::Config(format!("usage event schema: {e}")))?;
        let wire = ledger_registry::wire_format_blocking(&config.schema, &config.topic)
            .map_err(|e| SdkError::Registry { message: e.to_string(), retryable: e.is_retryable() })?;
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
        config.kafka.apply_options(&mut client);
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
                .spawn(move || drain_queue(&shared, &producer, &topic, codec, wire))
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
                            let (guard, _) =
                                self.shared.has_room.wait_timeout(q, deadline - now).unwrap_or_else(|p| p.into_inner());
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
