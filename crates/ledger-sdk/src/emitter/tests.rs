use super::*;
use crate::{EventBuilder, OpenAiUsage};
use ledger_kafka::KafkaConfig;

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
        ..EmitterConfig::default()
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
