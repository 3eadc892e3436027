//! Reading a (compacted) topic from its beginning to the high watermarks taken at the start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use ledger_core::signal::BudgetSignal;
use ledger_kafka::{KafkaConfig, KafkaError};
use ledger_schema::BudgetSignalCodec;

/// `(partition, high watermark)` of every partition read: where following the topic resumes.
pub type EndOffsets = Vec<(i32, i64)>;

/// Reads every partition of `topic` from its low watermark up to the high watermark it had when
/// the read started, calling `on_message(partition, offset, key, payload)` for each record, and
/// returns the high watermarks. Blocking: run it on a blocking thread. `stop` is checked between
/// polls; when it returns true the read ends early (with an error).
pub fn read_to_end(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    stop: &dyn Fn() -> bool,
    mut on_message: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<EndOffsets, KafkaError> {
    let marks = ledger_kafka::admin::watermarks(kafka, topic, Duration::from_secs(30))?;
    let end: EndOffsets = marks.iter().map(|(p, _, hi)| (*p, *hi)).collect();
    let cfg = kafka.consumer_config(&[("group.id", group), ("enable.auto.commit", "false"), ("enable.partition.eof", "false")]);
    let consumer: BaseConsumer = cfg.create().map_err(|e| client("creating a reader", e))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, lo, hi) in &marks {
        if hi > lo {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*lo)).map_err(|e| client("assigning", e))?;
            remaining.insert(*p, *hi);
        }
    }
    if remaining.is_empty() {
        return Ok(end);
    }
    consumer.assign(&tpl).map_err(|e| client(&format!("assigning {topic}"), e))?;
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        if stop() {
            return Err(KafkaError::Topic { topic: topic.to_owned(), problem: "read interrupted by shutdown".into() });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let (p, o) = (m.partition(), m.offset());
                if let Some(&hi) = remaining.get(&p) {
                    if o < hi {
                        on_message(p, o, m.key(), m.payload());
                    }
                    if o + 1 >= hi {
                        remaining.remove(&p);
                    }
                }
            }
            Some(Err(e)) => return Err(client(&format!("reading {topic}"), e)),
            None => {
                // Compaction can leave gaps: ask where the consumer stands.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements_for_topic(topic) {
                        if let (Offset::Offset(o), Some(&hi)) = (e.offset(), remaining.get(&e.partition())) {
                            if o >= hi {
                                remaining.remove(&e.partition());
                            }
                        }
                    }
                }
                if last_progress.elapsed() > Duration::from_secs(60) {
                    return Err(KafkaError::Topic {
                        topic: topic.to_owned(),
                        problem: format!("no progress for 60 s while reading partitions {:?} to their end", remaining.keys()),
                    });
                }
            }
        }
    }
    Ok(end)
}

fn client(context: &str, e: rdkafka::error::KafkaError) -> KafkaError {
    KafkaError::Client { context: context.to_owned(), source: e }
}

/// The last signal of every key on the signals topic (the compacted state routers see).
/// Records that do not decode are skipped with a warning.
pub fn latest_signals(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<BTreeMap<String, BudgetSignal>, KafkaError> {
    let codec = BudgetSignalCodec::new().map_err(|e| KafkaError::Topic { topic: topic.to_owned(), problem: e.to_string() })?;
    let mut latest: BTreeMap<String, BudgetSignal> = BTreeMap::new();
    read_to_end(kafka, group, topic, &|| false, |p, o, _key, payload| {
        let Some(payload) = payload else { return };
        match codec.decode(payload) {
            Ok(s) => {
                // Sequences only grow per key; keep the highest (robust to any replay order).
                if latest.get(&s.scope).is_none_or(|old| old.sequence <= s.sequence) {
                    latest.insert(s.scope.clone(), s);
                }
            }
            Err(e) => tracing::warn!(topic, partition = p, offset = o, error = %e, "skipping a signal that does not decode"),
        }
    })?;
    Ok(latest)
}
