//! What the processor holds for each partition it owns.

use std::collections::HashSet;
use std::time::Instant;

use ledger_clickhouse::{BatchCapacity, LedgerBatch};
use ledger_core::aggregate::SpendAggregator;
use ledger_core::dedupe::DedupeWindow;
use ledger_kafka::dead_letter::DeadLetter;

/// What the processor holds for one partition it owns.
pub(crate) struct PartitionState {
    /// The highest offset in the ledger: messages at or below it are skipped.
    pub(crate) fence_ledger: i64,
    /// The highest source offset in the dead-letter topic: rejections at or below it are not
    /// written again.
    pub(crate) fence_dead_letter: i64,
    pub(crate) dedupe: DedupeWindow,
    /// The rows not yet sent, encoded (opened by the first message after a flush).
    pub(crate) batch: Option<LedgerBatch>,
    /// What the partition's last batch held: the next one reserves as much.
    pub(crate) batch_capacity: BatchCapacity,
    /// The spend of `batch`, merged into `spend` once the batch is durable.
    pub(crate) batch_spend: SpendAggregator,
    pub(crate) dead_letters: Vec<DeadLetter>,
    pub(crate) first_pending_at: Option<Instant>,
    /// Offset of the last message handled (skipped, deduplicated, accepted or rejected).
    pub(crate) last_seen: Option<i64>,
    /// The last offset committed to the group (advisory: for lag and a shorter re-read).
    pub(crate) last_committed: Option<i64>,
    /// Cumulative spend per attribution key and hour, of the rows durable in the ledger.
    pub(crate) spend: SpendAggregator,
    /// Hour buckets whose totals reflect the whole ledger (restored or owned from the start).
    pub(crate) loaded_buckets: HashSet<i64>,
    /// Buckets starting at or after this instant (unix seconds) hold only rows we write.
    pub(crate) owned_from_bucket: i64,
    /// Tells this assignment of the partition from an earlier one (revoked, then assigned
    /// again) when an insert that began before completes.
    pub(crate) generation: u64,
    /// The lane whose inserts carry this partition's rows (see `Core::relane`).
    pub(crate) lane: usize,
    /// Spend publications not yet acknowledged by Kafka: the partition's offsets are committed
    /// only once the spend of the rows below them is in the spend topic.
    pub(crate) spend_unacked: u32,
}

impl PartitionState {
    /// True when rows or dead letters wait to be written.
    pub(crate) fn pending(&self) -> bool {
        self.batch_rows() > 0 || !self.dead_letters.is_empty()
    }

    /// Rows in the open batch.
    pub(crate) fn batch_rows(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.span().len())
    }
}

#[cfg(test)]
impl PartitionState {
    /// A state with nothing pending, for tests of the loop's decisions.
    pub(crate) fn for_test(last_seen: Option<i64>, last_committed: Option<i64>) -> Self {
        PartitionState {
            fence_ledger: -1,
            fence_dead_letter: -1,
            dedupe: DedupeWindow::new(1000, 10),
            batch: None,
            batch_capacity: BatchCapacity::default(),
            batch_spend: SpendAggregator::new(),
            dead_letters: Vec::new(),
            first_pending_at: None,
            last_seen,
            last_committed,
            spend: SpendAggregator::new(),
            loaded_buckets: HashSet::new(),
            owned_from_bucket: 0,
            generation: 1,
            lane: 0,
            spend_unacked: 0,
        }
    }
}
