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
    /// Spend publications in the order they were made, until they and every earlier one are
    /// acknowledged by Kafka ([`SpendPublications`]).
    pub(crate) spend_pending: SpendPublications,
}

/// A partition's spend publications awaiting Kafka's acknowledgement. Offsets are committed only
/// once the spend of every row below them is in the spend topic; publications go to different
/// spend partitions and may be acknowledged out of order, so a commit waits for the earlier ones.
#[derive(Debug, Default)]
pub(crate) struct SpendPublications {
    next: u64,
    /// `(sequence, offset to commit, whether delivered once acknowledged)`, oldest first.
    queue: std::collections::VecDeque<(u64, Option<i64>, Option<bool>)>,
}

impl SpendPublications {
    /// Registers a publication; its acknowledgement carries the sequence returned.
    pub(crate) fn start(&mut self, commit: Option<i64>) -> u64 {
        self.next += 1;
        self.queue.push_back((self.next, commit, None));
        self.next
    }

    /// Records an acknowledgement; returns the highest offset now safe to commit, if any: that
    /// of the last delivered publication before the first one still waiting. A publication
    /// that failed is passed over (its updates heal with the keys' next ones).
    pub(crate) fn acknowledge(&mut self, sequence: u64, delivered: bool) -> Option<i64> {
        if let Some(entry) = self.queue.iter_mut().find(|e| e.0 == sequence) {
            entry.2 = Some(delivered);
        }
        let mut commit = None;
        while let Some(&(_, offset, Some(delivered))) = self.queue.front() {
            if delivered {
                commit = offset.or(commit);
            }
            self.queue.pop_front();
        }
        commit
    }

    /// True when no publication waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
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
            spend_pending: SpendPublications::default(),
        }
    }
}

#[cfg(test)]
mod publications_tests {
    use super::SpendPublications;

    #[test]
    fn a_commit_waits_for_every_earlier_publication() {
        let mut p = SpendPublications::default();
        let (a, b, c) = (p.start(Some(100)), p.start(None), p.start(Some(300)));
        assert_eq!(p.acknowledge(c, true), None, "the later one first: nothing is safe yet");
        assert_eq!(p.acknowledge(a, true), Some(100), "the first one: up to its offset");
        assert!(!p.is_empty());
        assert_eq!(p.acknowledge(b, true), Some(300), "then all three");
        assert!(p.is_empty());
    }

    #[test]
    fn a_failed_publication_commits_nothing_of_its_own() {
        let mut p = SpendPublications::default();
        let (a, b) = (p.start(Some(10)), p.start(Some(20)));
        assert_eq!(p.acknowledge(b, false), None);
        assert_eq!(p.acknowledge(a, true), Some(10), "the delivered one before it still commits");
        assert!(p.is_empty());
    }
}
