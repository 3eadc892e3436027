//! A manual-offset consumer whose rebalances are reported to the owner.
//!
//! Offsets are never auto-committed or auto-stored: the processor fences by the offsets stored
//! in its sink, and commits to Kafka only for lag monitoring, after the data is durable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use crate::{KafkaConfig, KafkaError};

/// A rebalance as the owner of the consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Partitions now assigned to this member.
    Assigned(Vec<(String, i32)>),
    /// Partitions taken away from this member.
    Revoked(Vec<(String, i32)>),
}

/// Consumer context that records rebalances for the processing loop.
///
/// `pre_rebalance` runs inside `poll`, before the partitions are taken away: the loop flushes
/// the revoked partitions' in-flight data on its next turn, and the fence makes any late write
/// harmless (a new owner skips offsets already in the sink).
#[derive(Default, Clone)]
pub struct RecordingContext {
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    revoke_barrier: Option<Arc<dyn Fn() + Send + Sync>>,
    lag: Arc<Mutex<BTreeMap<(String, i32), PartitionLag>>>,
}

/// Consumer lag of one partition, from librdkafka's periodic statistics
/// (`statistics.interval.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// High watermark: the offset the next produced message gets.
    pub high_watermark: i64,
    /// Last committed offset (the processor commits only after the ledger insert is durable).
    pub committed: i64,
    /// `high_watermark - committed`: messages not yet durable in the sink.
    pub lag: i64,
}

impl std::fmt::Debug for RecordingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingContext").field("barrier", &self.revoke_barrier.is_some()).finish_non_exhaustive()
    }
}

impl RecordingContext {
    /// A context that runs `barrier` before partitions are taken away, inside the rebalance:
    /// the owner blocks there until its writes of those partitions are done, so the next
    /// owner never reads a fence that an in-flight write is about to move.
    pub fn with_revoke_barrier(barrier: Arc<dyn Fn() + Send + Sync>) -> Self {
        RecordingContext { events: Arc::default(), revoke_barrier: Some(barrier), lag: Arc::default() }
    }

    /// The lag of every assigned partition at the last statistics report (empty until the
    /// first report, or when statistics are disabled).
    pub fn lag(&self) -> BTreeMap<(String, i32), PartitionLag> {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the rebalances seen since the last call.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, e: RebalanceEvent) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

impl ClientContext for RecordingContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                // librdkafka reports the internal UA partition as -1, and -1 offsets before the
                // first fetch or commit.
                if partition < 0
                    || p.hi_offset < 0
                    || !matches!(p.fetch_state.as_str(), "active" | "offset-query" | "offset-wait")
                {
                    continue;
                }
                let committed = p.committed_offset.max(0);
                lag.insert(
                    (topic.clone(), partition),
                    PartitionLag { high_watermark: p.hi_offset, committed, lag: (p.hi_offset - committed).max(0) },
                );
            }
        }
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }
}

impl ConsumerContext for RecordingContext {
    fn pre_rebalance(&self, _base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
            if let Some(barrier) = &self.revoke_barrier {
                barrier();
            }
            self.push(RebalanceEvent::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned");
                self.push(RebalanceEvent::Assigned(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A consumer in `group` with manual offsets and the recording context.
/// With `instance_id`, the member is static (`group.instance.id`): a restart with the same id
/// resumes its partitions without a rebalance.
pub fn manual_offset_consumer(
    config: &KafkaConfig,
    group: &str,
    instance_id: Option<&str>,
    context: RecordingContext,
) -> Result<(StreamConsumer<RecordingContext>, RecordingContext), KafkaError> {
    let mut properties = vec![
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "10000"),
        ("max.poll.interval.ms", "300000"),
        ("heartbeat.interval.ms", "1000"),
        ("fetch.min.bytes", "1"),
        ("fetch.wait.max.ms", "100"),
        ("queued.max.messages.kbytes", "65536"),
        ("statistics.interval.ms", "2000"),
    ];
    if let Some(id) = instance_id {
        properties.push(("group.instance.id", id));
    }
    let cfg = config.consumer_config(&properties);
    let consumer = cfg
        .create_with_context(context.clone())
        .map_err(|e| KafkaError::client(format!("creating consumer in group {group}"), e))?;
    Ok((consumer, context))
}
