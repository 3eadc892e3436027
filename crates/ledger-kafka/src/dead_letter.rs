//! The dead-letter record contract: a rejected usage event is kept as its original key and
//! bytes, untouched, with headers naming the reason and the source. The processor is the only
//! writer ([`DeadLetter`]); the tools read records back as [`DeadLetterRecord`]. Source
//! partition N dead-letters into partition N of the dead-letter topic, in source-offset order,
//! so the last record of a dead-letter partition fences its source partition
//! ([`dead_letter_fence`]).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaConfig;
use ledger_core::event::Rejection;

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
    let consumer: BaseConsumer =
        config.consumer_config(&[("group.id", "ledger-dlq-fence"), ("enable.auto.commit", "false")]).create()?;
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
            // One broker of a cluster gone: librdkafka reconnects to the partition's new leader.
            Some(Err(e)) if is_transient(&e) => continue,
            Some(Err(e)) => return Err(e),
            None => continue,
        }
    }
    Err(rdkafka::error::KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::OperationTimedOut))
}

fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::NotLeaderForPartition | C::LeaderNotAvailable)
    )
}

/// A dead letter read back from the dead-letter topic: where it sits, what the processor wrote
/// in its headers, and the original key and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Dead-letter topic.
    pub topic: String,
    /// Dead-letter partition (the source partition's number).
    pub partition: i32,
    /// Offset in the dead-letter partition.
    pub offset: i64,
    /// The original key (the tenant id for usage events).
    pub key: Option<Vec<u8>>,
    /// The original bytes, untouched.
    pub payload: Vec<u8>,
    /// [`HEADER_REASON`] (`"unknown"` when the header is missing).
    pub reason: String,
    /// [`HEADER_DETAIL`] (empty when missing).
    pub detail: String,
    /// [`HEADER_SOURCE_TOPIC`], when present.
    pub source_topic: Option<String>,
    /// [`HEADER_SOURCE_PARTITION`], when present and numeric.
    pub source_partition: Option<i32>,
    /// [`HEADER_SOURCE_OFFSET`], when present and numeric.
    pub source_offset: Option<i64>,
    /// [`HEADER_EVENT_ID`], when the bytes decoded far enough to have one.
    pub event_id: Option<String>,
    /// [`HEADER_REJECTED_AT`] (RFC 3339 text), when present.
    pub rejected_at: Option<String>,
}

impl DeadLetterRecord {
    /// Parses a record of the dead-letter topic (headers that are missing or not UTF-8 become
    /// `None`, so a foreign record in the topic is listed rather than refused).
    pub fn from_message<M: Message>(msg: &M) -> DeadLetterRecord {
        let text = |key: &str| msg.headers().and_then(|h| header_str(h, key)).map(str::to_owned);
        DeadLetterRecord {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            reason: text(HEADER_REASON).unwrap_or_else(|| "unknown".to_owned()),
            detail: text(HEADER_DETAIL).unwrap_or_default(),
            source_topic: text(HEADER_SOURCE_TOPIC),
            source_partition: text(HEADER_SOURCE_PARTITION).and_then(|p| p.parse().ok()),
            source_offset: text(HEADER_SOURCE_OFFSET).and_then(|o| o.parse().ok()),
            event_id: text(HEADER_EVENT_ID).filter(|id| !id.is_empty()),
            rejected_at: text(HEADER_REJECTED_AT),
        }
    }

    /// `topic/partition/offset` of this dead letter (the value of the replay lineage header).
    pub fn position(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// Header a replayed event carries on the usage topic: the dead letter it came from, as
/// `dead-letter-topic/partition/offset`.
pub const HEADER_REPLAYED_FROM: &str = "ledger.replayed_from";

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::event::RejectReason;
    use rdkafka::message::{OwnedMessage, Timestamp};

    #[test]
    fn a_dead_letter_reads_back_from_its_headers() {
        let dl = DeadLetter {
            partition: 3,
            offset: 41,
            key: Some(b"acme".to_vec()),
            payload: b"\xC3\x01bytes".to_vec(),
            rejection: Rejection::new(RejectReason::UnknownModel, "no price for brand-new-model".to_owned()),
            event_id: Some("e-1".to_owned()),
        };
        let msg = OwnedMessage::new(
            Some(dl.payload.clone()),
            dl.key.clone(),
            "llm.usage.dlq.v1".to_owned(),
            Timestamp::NotAvailable,
            3,
            7,
            Some(dl.headers("llm.usage.v1")),
        );
        let r = DeadLetterRecord::from_message(&msg);
        assert_eq!(r.position(), "llm.usage.dlq.v1/3/7");
        assert_eq!(r.reason, "unknown_model");
        assert_eq!(r.detail, "no price for brand-new-model");
        assert_eq!(r.source_topic.as_deref(), Some("llm.usage.v1"));
        assert_eq!((r.source_partition, r.source_offset), (Some(3), Some(41)));
        assert_eq!(r.event_id.as_deref(), Some("e-1"));
        assert_eq!((r.key, r.payload), (dl.key, dl.payload));
        assert!(r.rejected_at.is_some_and(|t| chrono::DateTime::parse_from_rfc3339(&t).is_ok()));

        let bare = OwnedMessage::new(None, None, "t".to_owned(), Timestamp::NotAvailable, 0, 0, None);
        let r = DeadLetterRecord::from_message(&bare);
        assert_eq!((r.reason.as_str(), r.event_id, r.source_partition), ("unknown", None, None));
    }
}
