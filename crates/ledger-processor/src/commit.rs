//! Completing inserts: moving the fences, publishing spend and committing offsets once rows
//! are durable, and keeping the group membership alive while an insert waits.
//!
//! Kafka commits are advisory (lag and a shorter re-read): the fence in the ledger decides what
//! is counted. An offset is committed only once everything up to it is durable: its rows in
//! ClickHouse, its dead letters written, and the spend of its rows acknowledged in the spend
//! topic (the enforcer settles quota leases on committed offsets).

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use ledger_kafka::consumer::RecordingContext;

use crate::core::Core;
use crate::insert::GroupInsert;
use crate::state::PartitionState;
use crate::ProcessorError;

/// The partitions to commit at `last_seen` because nothing of theirs waits: no rows or dead
/// letters pending, no rows in an insert in flight, no spend unacknowledged, and news since
/// their last commit.
pub(crate) fn idle_partitions<'a>(
    partitions: impl IntoIterator<Item = (i32, &'a PartitionState)>,
    in_flight: &[i32],
) -> Vec<(i32, i64)> {
    partitions
        .into_iter()
        .filter(|(p, s)| !s.pending() && !in_flight.contains(p) && s.spend_pending.is_empty())
        .filter_map(|(p, s)| s.last_seen.filter(|&seen| s.last_committed.is_none_or(|c| c < seen)).map(|seen| (p, seen)))
        .collect()
}

/// Where a partition's reading stands: after the last message handled, else at the committed
/// offset, else at the low watermark.
pub(crate) fn position(last_seen: Option<i64>, committed: Option<i64>, low: i64) -> i64 {
    last_seen.map(|o| o + 1).or(committed).unwrap_or(low)
}

impl Core {
    /// Completes the inserts in flight that are done, without waiting for the others.
    pub(crate) async fn complete_finished(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<(), ProcessorError> {
        while let Some(i) = self.inserts.iter().position(|insert| insert.handle.is_finished()) {
            self.complete_insert(consumer, i).await?;
        }
        Ok(())
    }

    /// Waits for the `index`th insert in flight (keeping the group membership alive), then, for
    /// each partition still assigned, moves the fence, publishes the spend it adds and commits
    /// the offsets it covers.
    pub(crate) async fn complete_insert(
        &mut self,
        consumer: &StreamConsumer<RecordingContext>,
        index: usize,
    ) -> Result<(), ProcessorError> {
        if index >= self.inserts.len() {
            return Ok(());
        }
        let GroupInsert { mut handle, parts } = self.inserts.remove(index);
        let mut paused = false;
        let result = loop {
            tokio::select! {
                r = &mut handle => break r,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    paused = true;
                    self.pause_and_poll(consumer, Duration::from_millis(300)).await?;
                }
            }
        };
        if paused {
            resume_all(consumer);
        }
        let (rows, took) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(ProcessorError::Internal(format!("insert task failed: {e}"))),
        };
        self.stats.observe_insert(rows, took);
        let (ids, bytes) = self.partitions.values().fold((0, 0), |(n, b), s| (n + s.dedupe.len(), b + s.dedupe.heap_bytes()));
        self.stats.set_dedupe_size(ids, bytes);
        for part in parts {
            let Some(state) = self.partitions.get_mut(&part.partition).filter(|s| s.generation == part.generation) else {
                // Revoked meanwhile: the new owner republishes the spend of recent buckets.
                continue;
            };
            state.fence_ledger = state.fence_ledger.max(part.last_offset);
            // Committed once the spend updates are acknowledged ([`Core::commit_acknowledged`]).
            self.publish_spend(part.partition, &part.spend, part.last_seen).await?;
        }
        self.commit_acknowledged(consumer);
        Ok(())
    }

    /// After the producer is flushed: waits (briefly) for the delivery tasks to report, then
    /// commits what they acknowledged, so shutdown commits everything durable.
    pub(crate) async fn commit_delivered(&mut self, consumer: &StreamConsumer<RecordingContext>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.partitions.values().any(|s| !s.spend_pending.is_empty()) && tokio::time::Instant::now() < deadline {
            self.commit_acknowledged(consumer);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.commit_acknowledged(consumer);
    }

    /// The partitions whose rows are in an insert in flight.
    pub(crate) fn partitions_in_flight(&self) -> Vec<i32> {
        self.inserts.iter().flat_map(|i| i.parts.iter().map(|p| p.partition)).collect()
    }

    /// Commits the offsets whose spend updates Kafka has acknowledged since the last call (the
    /// enforcer settles leases on committed offsets, so spend must be readable before them).
    pub(crate) fn commit_acknowledged(&mut self, consumer: &StreamConsumer<RecordingContext>) {
        while let Ok(ack) = self.acks.1.try_recv() {
            let Some(state) = self.partitions.get_mut(&ack.partition).filter(|s| s.generation == ack.generation) else {
                continue;
            };
            if let Some(offset) = state.spend_pending.acknowledge(ack.sequence, ack.delivered) {
                self.commit(consumer, ack.partition, offset);
            }
        }
    }

    /// Commits the partitions that have nothing waiting ([`idle_partitions`]), so everything up
    /// to `last_seen` is durable (dead letters written, rows in the ledger, duplicates skipped).
    /// Without it a partition ending in duplicates would keep a lag above zero.
    pub(crate) fn commit_idle(&mut self, consumer: &StreamConsumer<RecordingContext>) {
        let in_flight = self.partitions_in_flight();
        for (partition, last_seen) in idle_partitions(self.partitions.iter().map(|(p, s)| (*p, s)), &in_flight) {
            self.commit(consumer, partition, last_seen);
        }
    }

    pub(crate) fn commit(&mut self, consumer: &StreamConsumer<RecordingContext>, partition: i32, last_seen: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.last_committed = Some(last_seen);
        }
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&self.config.topics.usage, partition, Offset::Offset(last_seen + 1)).is_ok() {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "advisory offset commit failed");
            }
        }
    }

    /// Keeps the group membership alive during a retry: poll with every partition paused, so
    /// rebalances are served but no message is taken.
    async fn pause_and_poll(
        &mut self,
        consumer: &StreamConsumer<RecordingContext>,
        wait: Duration,
    ) -> Result<(), ProcessorError> {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.pause(&assignment);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(m)) => {
                    // Only a partition assigned during the pause delivers here: rewind it so
                    // the message is read again after resume. If the rewind fails while the
                    // partition is still ours, going on would leave a hole; stopping makes the
                    // restart resume from the fence. A partition being taken away is read by
                    // its next owner from the committed offset.
                    let (t, p, o) = (m.topic().to_owned(), m.partition(), m.offset());
                    drop(m);
                    tracing::info!(partition = p, offset = o, "message delivered during a pause; rewinding to it");
                    if let Err(e) = consumer.seek(&t, p, Offset::Offset(o), Duration::from_secs(5)) {
                        let still_ours = consumer.assignment().map_or(true, |a| a.find_partition(&t, p).is_some());
                        if still_ours {
                            return Err(ProcessorError::kafka(format!("rewinding {t}/{p} to offset {o} after a pause"), e));
                        }
                        tracing::info!(partition = p, error = %e, "rewind failed for a partition being revoked; its next owner reads it");
                    }
                }
                Ok(Err(_)) => {}
            }
            self.handle_rebalances().await?;
        }
        Ok(())
    }

    /// True when nothing is pending or in flight and every assigned partition is read up to
    /// its high watermark.
    pub(crate) async fn drained(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<bool, ProcessorError> {
        let assignment = match consumer.assignment() {
            Ok(a) if a.count() > 0 => a,
            _ => return Ok(false),
        };
        if !self.inserts.is_empty() || self.partitions.values().any(PartitionState::pending) {
            return Ok(false);
        }
        let committed = consumer.committed(Duration::from_secs(5)).ok();
        for elem in assignment.elements() {
            let (low, high) = match consumer.fetch_watermarks(elem.topic(), elem.partition(), Duration::from_secs(5)) {
                Ok(w) => w,
                Err(_) => return Ok(false),
            };
            if high <= low {
                continue;
            }
            let last_seen = self.partitions.get(&elem.partition()).and_then(|s| s.last_seen);
            let committed_next = committed.as_ref().and_then(|c| {
                c.find_partition(elem.topic(), elem.partition()).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
            });
            if position(last_seen, committed_next, low) < high {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn resume_all(consumer: &StreamConsumer<RecordingContext>) {
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.resume(&assignment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_prefers_what_was_handled_then_what_was_committed() {
        assert_eq!(position(Some(9), Some(4), 0), 10);
        assert_eq!(position(None, Some(4), 0), 4);
        assert_eq!(position(None, None, 3), 3);
    }

    #[test]
    fn only_partitions_with_nothing_waiting_and_news_are_committed() {
        use ledger_core::event::{RejectReason, Rejection};
        let fresh = PartitionState::for_test(Some(10), Some(4));
        let committed = PartitionState::for_test(Some(10), Some(10));
        let untouched = PartitionState::for_test(None, None);
        let in_flight = PartitionState::for_test(Some(7), None);
        let mut waiting = PartitionState::for_test(Some(12), None);
        waiting.dead_letters.push(ledger_kafka::dead_letter::DeadLetter {
            partition: 4,
            offset: 12,
            key: None,
            payload: Vec::new(),
            rejection: Rejection::new(RejectReason::DecodeError, "x"),
            event_id: None,
        });
        let all = [(0, &fresh), (1, &committed), (2, &untouched), (3, &in_flight), (4, &waiting)];
        assert_eq!(idle_partitions(all, &[3]), vec![(0, 10)]);
    }
}
