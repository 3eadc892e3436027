//! An idempotent producer: acks=all, idempotence on, lz4, bounded in-flight queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::producer::{DeliveryResult, FutureProducer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::{KafkaConfig, KafkaError};

/// Builds the ledger's producer: nothing is acknowledged before every in-sync replica has it,
/// retries cannot duplicate or reorder (idempotence), batches are lz4-compressed.
pub fn idempotent_producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(config, &[]).create().map_err(|e| KafkaError::client("creating producer", e))
}

/// [`idempotent_producer`] that sends each message at once (`linger.ms = 0`): for the few,
/// latency-bound messages of quota leases, where a renewal waits for every hop.
pub fn low_latency_producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(config, &[("linger.ms", "0")]).create().map_err(|e| KafkaError::client("creating producer", e))
}

/// Counts the acknowledgements of a [`counting_producer`]'s messages: for bulk senders (the
/// load generator), where a future per message cost more CPU than making the message.
#[derive(Debug, Default)]
pub struct AckCounter {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl AckCounter {
    /// Messages Kafka acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }

    /// Messages Kafka finally refused so far (after the producer's own retries).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }

    /// Why the first refused message was refused.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::AcqRel);
            }
            Err((e, _)) => {
                self.first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
                self.failed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// The ledger's producer settings (as [`idempotent_producer`]) with `overrides` on top (the
/// configured options still win), delivering into an [`AckCounter`]; a background thread
/// serves the delivery reports.
pub fn counting_producer(config: &KafkaConfig, overrides: &[(&str, &str)]) -> Result<ThreadedProducer<AckCounter>, KafkaError> {
    producer_config(config, overrides)
        .create_with_context(AckCounter::default())
        .map_err(|e| KafkaError::client("creating producer", e))
}

fn producer_config(config: &KafkaConfig, overrides: &[(&str, &str)]) -> rdkafka::ClientConfig {
    let mut cfg = config.client_config();
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "120000");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    config.apply_options(&mut cfg);
    cfg
}

/// Enqueues a record of a [`counting_producer`]; its acknowledgement is counted in the
/// producer's [`AckCounter`]. Waits while the local queue is full, as [`enqueue`] does.
pub async fn enqueue_counted<K, P>(
    producer: &ThreadedProducer<AckCounter>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P>,
) -> Result<(), KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::KafkaError as E;
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((E::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(KafkaError::client("enqueueing a message", e)),
        }
    }
}

/// Enqueues a record without holding on to it: the returned future resolves when Kafka
/// acknowledged (or finally refused) the message. Waits while the local queue is full.
pub async fn enqueue<K, P>(
    producer: &FutureProducer,
    mut record: rdkafka::producer::FutureRecord<'_, K, P>,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::KafkaError as E;
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((E::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(KafkaError::client("enqueueing a message", e)),
        }
    }
}
