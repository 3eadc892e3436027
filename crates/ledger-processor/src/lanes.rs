//! Lanes and flushes: when the pending rows are written, and in which insert.
//!
//! The assigned partitions are dealt over `batch.concurrent_inserts` lanes. One `INSERT`
//! carries the batches of every partition of a lane, and a lane has at most one insert in
//! flight, so a partition's rows land in offset order while the lanes' inserts overlap.

use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureRecord;

use ledger_kafka::consumer::RecordingContext;
use ledger_kafka::dead_letter::DeadLetter;

use crate::config::MAX_CONCURRENT_INSERTS;
use crate::core::Core;
use crate::insert::{insert_with_retry, GroupInsert, PartInsert};
use crate::ProcessorError;

/// The lane of each partition: ascending partition order dealt round-robin, so every lane gets
/// a share whichever partitions this member holds.
pub(crate) fn deal(mut partitions: Vec<i32>, lanes: usize) -> Vec<(i32, usize)> {
    partitions.sort_unstable();
    partitions.into_iter().enumerate().map(|(rank, p)| (p, rank % lanes.max(1))).collect()
}

/// The lanes whose waiting rows and dead letters, `(lane, count)` per partition, reach `max_rows`.
pub(crate) fn full_lanes(waiting: impl IntoIterator<Item = (usize, usize)>, max_rows: usize) -> Vec<usize> {
    let mut per_lane = [0usize; MAX_CONCURRENT_INSERTS];
    for (lane, n) in waiting {
        per_lane[lane.min(MAX_CONCURRENT_INSERTS - 1)] += n;
    }
    per_lane.iter().enumerate().filter(|(_, &n)| n >= max_rows).map(|(lane, _)| lane).collect()
}

impl Core {
    /// Number of lanes: `batch.concurrent_inserts`, at most one per partition.
    pub(crate) fn lane_count(&self) -> usize {
        let wanted = self.config.settings.batch.concurrent_inserts.clamp(1, MAX_CONCURRENT_INSERTS);
        wanted.min(self.partitions.len()).max(1)
    }

    /// Deals the partitions over the lanes ([`deal`]). A partition that changes lane while its
    /// rows are in flight stays safe: a lane is flushed only once none of its partitions is in
    /// flight.
    pub(crate) fn relane(&mut self) {
        let lanes = self.lane_count();
        for (p, lane) in deal(self.partitions.keys().copied().collect(), lanes) {
            if let Some(state) = self.partitions.get_mut(&p) {
                state.lane = lane;
            }
        }
    }

    /// The index of an insert in flight that carries rows of a partition now in `lane`.
    pub(crate) fn lane_in_flight(&self, lane: usize) -> Option<usize> {
        self.inserts.iter().position(|insert| {
            insert.parts.iter().any(|part| self.partitions.get(&part.partition).is_some_and(|s| s.lane == lane))
        })
    }

    /// Flushes every lane whose waiting rows reach `max_rows` (waiting for its insert in flight).
    pub(crate) async fn flush_full(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<(), ProcessorError> {
        let waiting = self.partitions.values().map(|s| (s.lane, s.batch_rows() + s.dead_letters.len()));
        for lane in full_lanes(waiting, self.config.settings.batch.max_rows) {
            self.flush_lane(consumer, lane).await?;
        }
        Ok(())
    }

    /// Flushes every lane whose oldest waiting row has waited `max_delay`, unless the lane's
    /// insert is still in flight: then its rows keep gathering and go as soon as it completes
    /// (group commit).
    pub(crate) async fn flush_due(
        &mut self,
        consumer: &StreamConsumer<RecordingContext>,
        max_delay: std::time::Duration,
    ) -> Result<(), ProcessorError> {
        for lane in 0..self.lane_count() {
            if self.lane_in_flight(lane).is_some() {
                continue;
            }
            let due =
                self.partitions.values().any(|s| s.lane == lane && s.first_pending_at.is_some_and(|t| t.elapsed() >= max_delay));
            if due {
                self.flush_lane(consumer, lane).await?;
            }
        }
        Ok(())
    }

    /// Writes everything pending and waits for every insert.
    pub(crate) async fn flush_all(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<(), ProcessorError> {
        // Every possible lane: a rebalance served while an insert completes can add lanes.
        for lane in 0..MAX_CONCURRENT_INSERTS {
            self.flush_lane(consumer, lane).await?;
        }
        while !self.inserts.is_empty() {
            self.complete_insert(consumer, 0).await?;
        }
        Ok(())
    }

    /// Once no partition of `lane` is in an insert in flight: writes the lane's pending dead
    /// letters, then starts one insert of its partitions' rows beside consumption.
    pub(crate) async fn flush_lane(
        &mut self,
        consumer: &StreamConsumer<RecordingContext>,
        lane: usize,
    ) -> Result<(), ProcessorError> {
        // Completing an insert can serve a rebalance and so deal the lanes anew: ask again each time.
        while let Some(i) = self.lane_in_flight(lane) {
            self.complete_insert(consumer, i).await?;
        }
        while self.inserts.len() >= self.lane_count() {
            self.complete_insert(consumer, 0).await?;
        }
        let mut batches = Vec::new();
        let mut parts = Vec::new();
        let mut dead_letters = Vec::new();
        for (&partition, state) in &mut self.partitions {
            if state.lane != lane {
                continue;
            }
            let Some(last_seen) = state.last_seen else { continue };
            if state.batch_rows() == 0 && state.dead_letters.is_empty() {
                continue;
            }
            dead_letters.append(&mut state.dead_letters);
            state.first_pending_at = None;
            if let Some(batch) = state.batch.take().filter(|b| !b.span().is_empty()) {
                state.batch_capacity = batch.capacity();
                let batch = batch.seal();
                parts.push(PartInsert {
                    partition,
                    generation: state.generation,
                    last_seen,
                    last_offset: batch.span().last_offset(),
                    spend: std::mem::take(&mut state.batch_spend),
                });
                batches.push(batch);
            }
        }
        // Dead letters first: the dead-letter fence then never runs ahead of rows that are
        // not yet in the ledger (rows above the ledger fence are always re-processed).
        self.write_dead_letters(&dead_letters).await?;
        if batches.is_empty() {
            // Partitions that had only dead letters: those are written, so commit them.
            self.commit_idle(consumer);
            return Ok(());
        }
        let guard = self.inflight.start();
        let writer = self.writer.clone();
        let done = self.insert_done.clone();
        let handle = tokio::spawn(async move {
            let _guard = guard;
            let result = insert_with_retry(writer, batches).await;
            done.notify_one();
            result
        });
        self.inserts.push(GroupInsert { handle, parts });
        self.commit_idle(consumer);
        Ok(())
    }

    /// Writes dead letters to the partition of their source's number and waits for Kafka's
    /// acknowledgement of every one.
    async fn write_dead_letters(&mut self, dead_letters: &[DeadLetter]) -> Result<(), ProcessorError> {
        if dead_letters.is_empty() {
            return Ok(());
        }
        let source_topic = &self.config.topics.usage;
        let mut deliveries = Vec::with_capacity(dead_letters.len());
        for dl in dead_letters {
            let mut record = FutureRecord::to(&self.config.topics.dead_letter)
                .partition(dl.partition)
                .payload(&dl.payload)
                .headers(dl.headers(source_topic));
            if let Some(k) = &dl.key {
                record = record.key(k);
            }
            deliveries.push(ledger_kafka::producer::enqueue(&self.producer, record).await?);
        }
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(ProcessorError::kafka("writing a dead letter", e)),
                Err(_) => return Err(ProcessorError::Internal("dead-letter delivery cancelled".into())),
            }
        }
        self.stats.dead_lettered.add(dead_letters.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_in_ascending_order() {
        assert_eq!(deal(vec![7, 1, 4, 9], 2), vec![(1, 0), (4, 1), (7, 0), (9, 1)]);
        assert_eq!(deal(vec![3, 2], 1), vec![(2, 0), (3, 0)]);
        assert_eq!(deal(vec![5], 0), vec![(5, 0)], "no lanes means one");
    }

    #[test]
    fn a_lane_is_full_when_its_partitions_together_reach_max_rows() {
        assert_eq!(full_lanes([(0, 60), (1, 10), (0, 40)], 100), vec![0]);
        assert_eq!(full_lanes([(0, 99), (1, 99)], 100), Vec::<usize>::new());
        assert_eq!(full_lanes([(1, 100), (0, 100)], 100), vec![0, 1]);
    }
}
