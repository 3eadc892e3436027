//! Dead letters: the original bytes plus headers naming the reason and the source.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use ledger_core::event::Rejection;
use ledger_kafka::KafkaConfig;

/// Header with the machine-readable reason (`unknown_model`, ...).
pub const HEADER_REASON: &str = "ledger.reason";
/// Header with the human-readable detail.
pub const HEADER_DETAIL: &str = "ledger.detail";
/// Header with the source topic.
pub const HEADER_SOURCE_TOPIC: &str = "ledger.source.topic";
/// Header with the source partition (decimal text).
pub const HEADER_SOURCE_PARTITION: &str = "ledger.source.partition";
/// Header with the source offset (decimal text).
pub const HEADER_SOURCE_OFFSET: &str = "ledger.source.offset";
/// Header with the `event_id`, when the bytes decoded far enough to have one.
pub const HEADER_EVENT_ID: &str = "ledger.event_id";
/// Header with the RFC 3339 instant the event was rejected.
pub const HEADER_REJECTED_AT: &str = "ledger.rejected_at";

/// One message for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Source partition (also the dead-letter partition it goes to).
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original bytes, untouched.
    pub payload: Vec<u8>,
    /// Why it was rejected.
    pub rejection: Rejection,
    /// Its `event_id`, when known.
    pub event_id: Option<String>,
}

impl DeadLetter {
    /// The headers of the dead-letter record.
    pub fn headers(&self, source_topic: &str) -> OwnedHeaders {
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        let now = chrono::Utc::now().to_rfc3339();
        let mut h = OwnedHeaders::new()
            .insert(Header { key: HEADER_REASON, value: Some(self.rejection.reason.as_str()) })
            .insert(Header { key: HEADER_DETAIL, value: Some(self.rejection.detail.as_str()) })
            .insert(Header { key: HEADER_SOURCE_TOPIC, value: Some(source_topic) })
            .insert(Header { key: HEADER_SOURCE_PARTITION, value: Some(partition.as_str()) })
            .insert(Header { key: HEADER_SOURCE_OFFSET, value: Some(offset.as_str()) })
            .insert(Header { key: HEADER_REJECTED_AT, value: Some(now.as_str()) });
        if let Some(id) = &self.event_id {
            h = h.insert(Header { key: HEADER_EVENT_ID, value: Some(id.as_str()) });
        }
        h
    }
}

/// Reads a UTF-8 header value.
pub fn header_str<'a, H: Headers>(headers: &'a H, key: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.key == key).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// The highest source offset already dead-lettered for `source_partition`, from the last
/// record of the dead-letter partition of the same number (-1 when there is none).
///
/// Dead letters of one source partition are written in offset order to one dead-letter
/// partition, so its last record carries the highest one.
pub fn dead_letter_fence(
    config: &KafkaConfig,
    dead_letter_topic: &str,
    source_topic: &str,
    source_partition: i32,
    timeout: Duration,
) -> Result<i64, rdkafka::error::KafkaError> {
    let mut cfg = config.client_config();
    cfg.set("group.id", "ledger-dlq-fence").set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cfg.create()?;
    let (low, high) = consumer.fetch_watermarks(dead_letter_topic, source_partition, timeout)?;
    if high <= low {
        return Ok(-1);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(dead_letter_topic, source_partition, Offset::Offset(high - 1))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                let headers = msg.headers();
                let topic = headers.and_then(|h| header_str(h, HEADER_SOURCE_TOPIC));
                let offset = headers.and_then(|h| header_str(h, HEADER_SOURCE_OFFSET)).and_then(|o| o.parse().ok());
                return Ok(match (topic, offset) {
                    (Some(t), Some(o)) if t == source_topic => o,
                    _ => -1,
                });
            }
            Some(Err(e)) => return Err(e),
            None => continue,
        }
    }
    Err(rdkafka::error::KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::OperationTimedOut))
}
