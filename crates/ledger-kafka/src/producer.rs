//! An idempotent producer: acks=all, idempotence on, lz4, bounded in-flight queue.

use rdkafka::producer::FutureProducer;

use crate::{KafkaConfig, KafkaError};

/// Builds the ledger's producer: nothing is acknowledged before every in-sync replica has it,
/// retries cannot duplicate or reorder (idempotence), batches are lz4-compressed.
pub fn idempotent_producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    let mut cfg = config.client_config();
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "120000");
    for (k, v) in &config.options {
        cfg.set(k, v);
    }
    cfg.create().map_err(|e| KafkaError::client("creating producer", e))
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
