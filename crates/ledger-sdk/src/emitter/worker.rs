//! The emitter's Kafka side: the worker thread that drains the queue into librdkafka, and the
//! delivery reports that settle each event.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ledger_core::UsageEvent;
use ledger_schema::{UsageEventCodec, WireFormat};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::{DeliveryFailure, FailureReason, Shared};

pub(super) struct DeliveryContext {
    pub(super) shared: Arc<Shared>,
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
                self.shared.finish(Some(DeliveryFailure { event_id: *event_id, reason: FailureReason::Kafka(e.to_string()) }));
            }
        }
    }
}

/// The worker: takes events off the queue, encodes them and hands them to librdkafka, waiting
/// (and so letting the queue fill, which is what the overflow policy is for) while
/// librdkafka's own buffer is full.
pub(super) fn drain_queue(
    shared: &Shared,
    producer: &ThreadedProducer<DeliveryContext>,
    topic: &str,
    codec: UsageEventCodec,
    wire: WireFormat,
) {
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
            if let Err(e) = codec.encode_framed_into(&event, wire, &mut payload) {
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
