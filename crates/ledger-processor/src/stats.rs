//! Processor counters, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ledger_core::event::RejectReason;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter of the processor.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages taken from Kafka.
    pub consumed: Counter,
    /// Messages skipped because the ledger already holds their offset.
    pub fenced: Counter,
    /// Events accepted and priced.
    pub priced: Counter,
    /// Resent events counted once.
    pub duplicates: Counter,
    /// Dead letters written.
    pub dead_lettered: Counter,
    rejected: [Counter; RejectReason::ALL.len()],
    /// Rows inserted into the ledger.
    pub rows_written: Counter,
    /// Inserts into the ledger.
    pub inserts: Counter,
    /// Spend updates published.
    pub spend_updates: Counter,
    insert_micros: Counter,
    assigned: AtomicU64,
    dedupe_ids: AtomicU64,
}

impl Stats {
    /// Counts a rejection.
    pub fn rejected(&self, reason: RejectReason) {
        let i = RejectReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.rejected[i].inc();
    }

    /// Rejections of one reason.
    pub fn rejected_count(&self, reason: RejectReason) -> u64 {
        RejectReason::ALL.iter().position(|r| *r == reason).map(|i| self.rejected[i].get()).unwrap_or(0)
    }

    /// Records one ledger insert.
    pub fn observe_insert(&self, rows: usize, took: Duration) {
        self.inserts.inc();
        self.rows_written.add(rows as u64);
        self.insert_micros.add(took.as_micros() as u64);
    }

    /// Number of partitions currently owned.
    pub fn set_assigned(&self, n: usize) {
        self.assigned.store(n as u64, Ordering::Relaxed);
    }

    /// Size of the dedupe state (ids held).
    pub fn set_dedupe_ids(&self, n: usize) {
        self.dedupe_ids.store(n as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter("ledger_events_consumed_total", "Messages taken from Kafka.", self.consumed.get());
        counter("ledger_events_fenced_total", "Messages skipped: offset already in the ledger.", self.fenced.get());
        counter("ledger_events_priced_total", "Events accepted and priced.", self.priced.get());
        counter("ledger_events_duplicate_total", "Resent events counted once.", self.duplicates.get());
        counter("ledger_dead_letters_total", "Dead letters written.", self.dead_lettered.get());
        counter("ledger_rows_written_total", "Rows inserted into usage_ledger.", self.rows_written.get());
        counter("ledger_inserts_total", "Inserts into usage_ledger.", self.inserts.get());
        counter("ledger_spend_updates_total", "Spend updates published.", self.spend_updates.get());
        counter("ledger_insert_seconds_micros_total", "Microseconds spent in ledger inserts.", self.insert_micros.get());
        let _ = writeln!(out, "# HELP ledger_events_rejected_total Events rejected, by reason.\n# TYPE ledger_events_rejected_total counter");
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            let _ = writeln!(out, "ledger_events_rejected_total{{reason=\"{}\"}} {}", r.as_str(), self.rejected[i].get());
        }
        let _ = writeln!(
            out,
            "# HELP ledger_partitions_assigned Partitions owned.\n# TYPE ledger_partitions_assigned gauge\nledger_partitions_assigned {}",
            self.assigned.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ledger_dedupe_ids Event ids held for deduplication.\n# TYPE ledger_dedupe_ids gauge\nledger_dedupe_ids {}",
            self.dedupe_ids.load(Ordering::Relaxed)
        );
        out
    }
}
