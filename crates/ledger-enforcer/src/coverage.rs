//! When a closed lease may settle: the instant up to which the enforcer's ledger spend is known
//! to include every usage event (docs/budgets.md, "Settlement").
//!
//! A [`Probe`] taken at `t` records the usage topic's high watermarks `H(t)` (after reading the
//! clock, so every event produced before `t` is below them), the offsets the processor's group
//! has committed, and the spend topic's high watermarks. The instant `t` is covered once a
//! later probe finds every usage partition committed at or past `H(t)` (the processor commits
//! an offset only after the rows below it are in ClickHouse and Kafka acknowledged their spend
//! updates)
//! and the enforcer has read the spend topic up to the high watermarks of the probe after
//! that one. [`Coverage`] is the pure bookkeeping; [`Prober`] takes probes on a thread.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use ledger_kafka::{KafkaConfig, KafkaError};

/// One reading of the processor's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    /// The clock, read before the watermarks.
    pub(crate) at: DateTime<Utc>,
    /// Usage topic: `(partition, low, high)`.
    pub(crate) usage: Vec<(i32, i64, i64)>,
    /// Usage topic: the processor group's committed offset per partition (absent: none).
    pub(crate) committed: HashMap<i32, i64>,
    /// Spend topic: `(partition, high)`.
    pub(crate) spend_high: Vec<(i32, i64)>,
}

/// Most probes kept waiting for the processor: older ones are dropped (a later probe covers a
/// later instant, so dropping one only delays nothing but its own, earlier instant).
const MAX_WAITING: usize = 2_000;

/// `(partition, offset)` pairs of one topic.
type Offsets = Vec<(i32, i64)>;

/// The bookkeeping of probes (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    /// Probes whose usage watermarks the processor has not committed yet, oldest first.
    #[allow(clippy::type_complexity)]
    waiting_commit: VecDeque<(DateTime<Utc>, Vec<(i32, i64, i64)>)>,
    /// Committed; waiting for the spend topic to be read up to the watermarks of the probe
    /// after the one that saw the commit (`None` until that probe).
    waiting_spend: VecDeque<(DateTime<Utc>, Option<Offsets>)>,
    covered: Option<DateTime<Utc>>,
}

impl Coverage {
    /// Takes a new probe into account.
    pub(crate) fn on_probe(&mut self, probe: &Probe) {
        for entry in self.waiting_spend.iter_mut().filter(|e| e.1.is_none()) {
            entry.1 = Some(probe.spend_high.clone());
        }
        // Watermarks and commits only grow, so the oldest probes are committed first.
        while let Some((at, usage)) = self.waiting_commit.front() {
            let done = usage.iter().all(|(p, low, high)| high <= low || probe.committed.get(p).is_some_and(|c| c >= high));
            if !done {
                break;
            }
            self.waiting_spend.push_back((*at, None));
            self.waiting_commit.pop_front();
        }
        self.waiting_commit.push_back((probe.at, probe.usage.clone()));
        while self.waiting_commit.len() > MAX_WAITING {
            self.waiting_commit.pop_front();
        }
    }

    /// The covered instant, given how far the enforcer has read the spend topic (next offset
    /// per partition).
    pub(crate) fn covered(&mut self, spend_read: &HashMap<i32, i64>) -> Option<DateTime<Utc>> {
        while let Some((at, Some(high))) = self.waiting_spend.front() {
            if !high.iter().all(|(p, h)| spend_read.get(p).is_some_and(|r| r >= h)) {
                break;
            }
            self.covered = Some(*at);
            self.waiting_spend.pop_front();
        }
        self.covered
    }

    /// Probes not yet covered.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting_commit.len() + self.waiting_spend.len()
    }
}

/// Takes probes on its own thread every `interval` while `wanted` is set, and sends them on
/// `probes`; stops when the receiver is dropped.
pub(crate) struct Prober {
    consumer: BaseConsumer,
    usage_topic: String,
    spend_topic: String,
}

impl Prober {
    /// A prober reading the committed offsets of the processor's group `processor_group`.
    pub(crate) fn new(
        kafka: &KafkaConfig,
        processor_group: &str,
        usage_topic: &str,
        spend_topic: &str,
    ) -> Result<Prober, KafkaError> {
        // Never subscribes or commits: it only asks the group coordinator for the group's
        // committed offsets, which changes nothing the processor sees.
        let consumer: BaseConsumer = kafka
            .consumer_config(&[("group.id", processor_group), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| KafkaError::client("creating the settlement prober", e))?;
        Ok(Prober { consumer, usage_topic: usage_topic.to_owned(), spend_topic: spend_topic.to_owned() })
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| KafkaError::client(format!("fetching the metadata of {topic}"), e))?;
        Ok(md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect())
    }

    /// One probe (blocking).
    pub(crate) fn probe(&self, usage_partitions: &[i32], spend_partitions: &[i32]) -> Result<Probe, KafkaError> {
        let at = Utc::now();
        let timeout = Duration::from_secs(5);
        let mut usage = Vec::with_capacity(usage_partitions.len());
        let mut tpl = TopicPartitionList::new();
        for &p in usage_partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.usage_topic, p, timeout)
                .map_err(|e| KafkaError::client(format!("reading the watermarks of {}/{p}", self.usage_topic), e))?;
            usage.push((p, low, high));
            tpl.add_partition(&self.usage_topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, timeout)
            .map_err(|e| KafkaError::client("reading the processor's committed offsets", e))?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        let mut spend_high = Vec::with_capacity(spend_partitions.len());
        for &p in spend_partitions {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.spend_topic, p, timeout)
                .map_err(|e| KafkaError::client(format!("reading the watermarks of {}/{p}", self.spend_topic), e))?;
            spend_high.push((p, high));
        }
        Ok(Probe { at, usage, committed, spend_high })
    }

    /// One probe of every partition (blocking), for a one-off read such as the budget status.
    pub(crate) fn probe_once(&self) -> Result<Probe, KafkaError> {
        self.probe(&self.partitions(&self.usage_topic)?, &self.partitions(&self.spend_topic)?)
    }

    /// True when the processor has committed every usage partition up to the probe's high
    /// watermarks (everything produced before the probe is in the ledger).
    pub(crate) fn committed(probe: &Probe) -> bool {
        probe.usage.iter().all(|(p, low, high)| high <= low || probe.committed.get(p).is_some_and(|c| c >= high))
    }

    /// Runs the probe loop on a thread of its own.
    pub(crate) fn spawn(
        self,
        interval: Duration,
        wanted: Arc<AtomicBool>,
        probes: tokio::sync::mpsc::UnboundedSender<Probe>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("lease-prober".into()).spawn(move || {
            let mut partitions: Option<(Vec<i32>, Vec<i32>)> = None;
            let mut failures = 0u32;
            while !probes.is_closed() {
                if wanted.load(Ordering::Relaxed) {
                    let parts = match &partitions {
                        Some(p) => Ok(p.clone()),
                        None => self.partitions(&self.usage_topic).and_then(|u| Ok((u, self.partitions(&self.spend_topic)?))),
                    };
                    match parts.and_then(|(u, s)| {
                        let probe = self.probe(&u, &s)?;
                        partitions = Some((u, s));
                        Ok(probe)
                    }) {
                        Ok(probe) => {
                            failures = 0;
                            if probes.send(probe).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            partitions = None;
                            if failures == 1 || failures.is_multiple_of(100) {
                                tracing::warn!(error = %e, "reading the processor's progress failed; closed leases wait to settle");
                            }
                        }
                    }
                }
                std::thread::sleep(interval);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(ms: i64, high: i64, committed: Option<i64>, spend: i64) -> Probe {
        Probe {
            at: DateTime::<Utc>::from_timestamp_millis(ms).unwrap(),
            usage: vec![(0, 0, high), (1, 5, 5)],
            committed: committed.map(|c| (0, c)).into_iter().collect(),
            spend_high: vec![(0, spend)],
        }
    }

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        DateTime::<Utc>::from_timestamp_millis(ms)
    }

    #[test]
    fn an_instant_is_covered_once_committed_and_the_spend_after_it_is_read() {
        let mut c = Coverage::default();
        let read = |n: i64| HashMap::from([(0, n)]);
        c.on_probe(&probe(100, 10, None, 3)); // H = 10 at 100 ms; an empty partition 1 needs no commit
        c.on_probe(&probe(200, 12, Some(9), 3));
        assert_eq!(c.covered(&read(100)), None, "10 not committed yet");
        c.on_probe(&probe(300, 12, Some(10), 4)); // 100 ms committed (not 200: 12 > 10)
        assert_eq!(c.covered(&read(100)), None, "the spend watermark comes with the next probe");
        c.on_probe(&probe(400, 13, Some(12), 6)); // spend high 6 for 100 ms; 200 and 300 committed
        assert_eq!(c.covered(&read(5)), None, "spend read only to 5 of 6");
        assert_eq!(c.covered(&read(6)), at(100));
        c.on_probe(&probe(500, 13, Some(12), 7));
        assert_eq!(c.covered(&read(7)), at(300));
        assert_eq!(c.waiting(), 2, "400 and 500 wait for 13 to be committed");
    }

    #[test]
    fn a_group_that_never_committed_covers_nothing() {
        let mut c = Coverage::default();
        for i in 0..5 {
            c.on_probe(&probe(i * 100, 1, None, 0));
        }
        assert_eq!(c.covered(&HashMap::from([(0, 0)])), None);
    }
}
