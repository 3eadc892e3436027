//! Bounded reads: the one reader of every tool that reads a topic up to a known end (the
//! enforcer's replay of the spend and signals topics, dead-letter inspect and replay,
//! reconcile's read-back of offsets), and the one watermarks helper.
//!
//! A bounded read assigns partitions directly: it never joins a consumer group and never
//! commits, so running it beside the services changes nothing they see. It is blocking; run
//! it on a blocking thread (`tokio::task::spawn_blocking`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError};

/// Low and high watermark of one partition: its records are at offsets `low..high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionMarks {
    /// Partition.
    pub partition: i32,
    /// Offset of the oldest record still held.
    pub low: i64,
    /// Offset the next record will get.
    pub high: i64,
}

impl PartitionMarks {
    /// Records held (`high - low`, never negative).
    pub fn records(&self) -> i64 {
        (self.high - self.low).max(0)
    }

    /// The inclusive range of the records held, or `None` when there are none.
    pub fn range(&self) -> Option<OffsetRange> {
        (self.high > self.low).then(|| OffsetRange { partition: self.partition, first: self.low, last: self.high - 1 })
    }
}

/// An inclusive range of offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OffsetRange {
    /// Partition.
    pub partition: i32,
    /// First offset wanted.
    pub first: i64,
    /// Last offset wanted.
    pub last: i64,
}

/// The watermarks of every partition of `topic`, by partition; `None` when the topic does not
/// exist. Asks for the whole cluster's metadata, so that asking never auto-creates the topic.
pub fn topic_watermarks(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Option<Vec<PartitionMarks>>, KafkaError> {
    crate::check_connection(config, timeout)?;
    let consumer: BaseConsumer = config.client_config().create().map_err(|e| KafkaError::client("creating a Kafka client", e))?;
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| KafkaError::client(format!("fetching metadata from {} (is Kafka running?)", config.brokers), e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    if let Some(err) = t.error() {
        return Err(KafkaError::Topic { topic: topic.to_owned(), problem: format!("{err:?}") });
    }
    let mut marks = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(|e| KafkaError::client(format!("reading the watermarks of {topic}/{}", p.id()), e))?;
        marks.push(PartitionMarks { partition: p.id(), low, high });
    }
    marks.sort_unstable();
    Ok(Some(marks))
}

/// A bounded read of one topic. Build it with [`BoundedRead::new`], then read
/// [`ranges`](BoundedRead::ranges) or everything up to the end ([`to_end`](BoundedRead::to_end)).
pub struct BoundedRead<'a> {
    config: &'a KafkaConfig,
    topic: &'a str,
    group: &'a str,
    stall: Duration,
    stop: Option<&'a (dyn Fn() -> bool + Sync)>,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for BoundedRead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedRead").field("topic", &self.topic).field("group", &self.group).finish_non_exhaustive()
    }
}

/// How long a read may go without a record before it fails, by default.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

impl<'a> BoundedRead<'a> {
    /// A read of `topic`; fails after [`DEFAULT_STALL_TIMEOUT`] without progress.
    pub fn new(config: &'a KafkaConfig, topic: &'a str) -> Self {
        BoundedRead { config, topic, group: "ledger-reader", stall: DEFAULT_STALL_TIMEOUT, stop: None, progress: None }
    }

    /// The `group.id` the client reports (nothing is joined or committed under it).
    pub fn group(mut self, group: &'a str) -> Self {
        self.group = group;
        self
    }

    /// Fails when no record arrives for this long.
    pub fn stall_timeout(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// Checked between polls: the read ends with an error once it returns true (shutdown).
    pub fn stop_when(mut self, stop: &'a (dyn Fn() -> bool + Sync)) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Called with the number of records read so far, as the read goes (a progress bar).
    pub fn on_progress(mut self, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Reads every partition from its low watermark up to the high watermark it had when the
    /// read started, handing each record to `visit`; returns those watermarks, or `None` when
    /// the topic does not exist.
    pub fn to_end(&self, visit: impl FnMut(&BorrowedMessage<'_>)) -> Result<Option<Vec<PartitionMarks>>, KafkaError> {
        let Some(marks) = topic_watermarks(self.config, self.topic, Duration::from_secs(30))? else { return Ok(None) };
        let ranges: Vec<OffsetRange> = marks.iter().filter_map(PartitionMarks::range).collect();
        self.ranges(&ranges, visit)?;
        Ok(Some(marks))
    }

    /// Reads every record appended at or after `since_ms` (Kafka timestamps, milliseconds since
    /// the Unix epoch) up to the high watermarks at the start, handing each to `visit`; returns
    /// those watermarks, or `None` when the topic does not exist.
    pub fn since(
        &self,
        since_ms: i64,
        visit: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<Option<Vec<PartitionMarks>>, KafkaError> {
        let Some(marks) = topic_watermarks(self.config, self.topic, Duration::from_secs(30))? else { return Ok(None) };
        let mut tpl = TopicPartitionList::new();
        for m in &marks {
            tpl.add_partition_offset(self.topic, m.partition, Offset::Offset(since_ms))
                .map_err(|e| KafkaError::client("building the time query", e))?;
        }
        let consumer: BaseConsumer = self
            .config
            .consumer_config(&[("group.id", self.group), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| KafkaError::client("creating a reader", e))?;
        let found = consumer
            .offsets_for_times(tpl, Duration::from_secs(30))
            .map_err(|e| KafkaError::client(format!("finding the offsets of {} at {since_ms} ms", self.topic), e))?;
        let ranges: Vec<OffsetRange> = marks
            .iter()
            .filter_map(|m| {
                let first = match found.find_partition(self.topic, m.partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o.max(m.low),
                    // No record at or after the time: nothing to read in this partition.
                    _ => m.high,
                };
                (first < m.high).then_some(OffsetRange { partition: m.partition, first, last: m.high - 1 })
            })
            .collect();
        self.ranges(&ranges, visit)?;
        Ok(Some(marks))
    }

    /// Reads the inclusive `ranges` (at most one per partition; all partitions at once),
    /// handing each record inside them to `visit`, and returns how many it visited. A range
    /// whose records are partly gone (retention, compaction) ends where the partition does.
    pub fn ranges(&self, ranges: &[OffsetRange], mut visit: impl FnMut(&BorrowedMessage<'_>)) -> Result<u64, KafkaError> {
        let topic = self.topic;
        let mut pending: BTreeMap<i32, OffsetRange> = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for r in ranges.iter().filter(|r| r.last >= r.first) {
            if pending.insert(r.partition, *r).is_some() {
                return Err(KafkaError::Topic {
                    topic: topic.to_owned(),
                    problem: format!("two ranges of partition {} in one read", r.partition),
                });
            }
            tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.first))
                .map_err(|e| KafkaError::client("building the assignment", e))?;
        }
        if pending.is_empty() {
            return Ok(0);
        }
        let cfg = self.config.consumer_config(&[
            ("group.id", self.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
        ]);
        let consumer: BaseConsumer = cfg.create().map_err(|e| KafkaError::client("creating a reader", e))?;
        consumer.assign(&tpl).map_err(|e| KafkaError::client(format!("assigning the partitions of {topic}"), e))?;
        let mut read = 0u64;
        let mut last_progress = Instant::now();
        while !pending.is_empty() {
            if self.stop.is_some_and(|stop| stop()) {
                return Err(KafkaError::Topic { topic: topic.to_owned(), problem: "read interrupted by shutdown".into() });
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    let (p, o) = (m.partition(), m.offset());
                    let Some(r) = pending.get(&p).copied() else { continue };
                    if (r.first..=r.last).contains(&o) {
                        visit(&m);
                        read += 1;
                        if let Some(progress) = self.progress {
                            progress(read);
                        }
                    }
                    if o >= r.last {
                        pending.remove(&p);
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    // Everything up to the partition's current end is read: its range is done.
                    pending.remove(&p);
                }
                Some(Err(e)) => {
                    // A lost connection to one broker of a cluster heals (leaders move, librdkafka
                    // reconnects); only the stall timeout ends the read then.
                    let e = KafkaError::client(format!("reading {topic}"), e);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "transient error while reading; going on");
                    if last_progress.elapsed() > self.stall {
                        return Err(e);
                    }
                }
                None => {
                    // Compaction can leave gaps past a range's last record: ask where we stand.
                    if let Ok(pos) = consumer.position() {
                        for e in pos.elements_for_topic(topic) {
                            if let (Offset::Offset(o), Some(r)) = (e.offset(), pending.get(&e.partition())) {
                                if o > r.last {
                                    pending.remove(&e.partition());
                                }
                            }
                        }
                    }
                    if last_progress.elapsed() > self.stall {
                        let left: Vec<String> = pending.keys().map(|p| format!("{topic}/{p}")).collect();
                        return Err(KafkaError::Topic {
                            topic: topic.to_owned(),
                            problem: format!(
                                "no progress for {:?} reading {} (read {read} records); is the broker healthy?",
                                self.stall,
                                left.join(", ")
                            ),
                        });
                    }
                }
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_give_the_range_of_the_records_held() {
        let m = PartitionMarks { partition: 2, low: 5, high: 9 };
        assert_eq!(m.records(), 4);
        assert_eq!(m.range(), Some(OffsetRange { partition: 2, first: 5, last: 8 }));
        let empty = PartitionMarks { partition: 0, low: 7, high: 7 };
        assert_eq!((empty.records(), empty.range()), (0, None));
    }

    #[test]
    fn an_empty_read_needs_no_broker() {
        let config = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
        let read = BoundedRead::new(&config, "t").ranges(&[OffsetRange { partition: 0, first: 3, last: 2 }], |_| {});
        assert_eq!(read.unwrap(), 0);
    }
}
