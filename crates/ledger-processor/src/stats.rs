//! Processor counters, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ledger_core::event::RejectReason;
use ledger_core::histogram::{Buckets, Histogram, SumUnit};
use ledger_kafka::consumer::RecordingContext;

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
    insert_latency: Histogram<12>,
    batch_rows: Histogram<12>,
    assigned: AtomicU64,
    dedupe_ids: AtomicU64,
    dedupe_bytes: AtomicU64,
    lag_source: Mutex<Option<RecordingContext>>,
}

/// Upper bounds (microseconds) of the insert latency buckets, and their `le` labels (seconds).
const INSERT_SECONDS: Buckets<12> = [
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
];

/// Upper bounds of the batch size buckets (rows per insert), and their `le` labels.
const BATCH_ROWS: Buckets<12> = [
    (1, "1"),
    (10, "10"),
    (100, "100"),
    (500, "500"),
    (1_000, "1000"),
    (2_500, "2500"),
    (5_000, "5000"),
    (10_000, "10000"),
    (20_000, "20000"),
    (50_000, "50000"),
    (100_000, "100000"),
    (1_000_000, "1000000"),
];

impl Stats {
    /// What a run did, in one line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} consumed, {} priced, {} duplicates, {} dead-lettered, {} skipped (already in ledger), {} rows in {} inserts",
            self.consumed.get(),
            self.priced.get(),
            self.duplicates.get(),
            self.dead_lettered.get(),
            self.fenced.get(),
            self.rows_written.get(),
            self.inserts.get(),
        )
    }

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
        // The histogram first: a scrape that sees the rows sees their insert's latency.
        self.insert_latency.observe(&INSERT_SECONDS, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        self.batch_rows.observe(&BATCH_ROWS, rows as u64);
        self.inserts.inc();
        self.rows_written.add(rows as u64);
    }

    /// Where the consumer lag comes from: the consumer's context (its librdkafka statistics).
    pub fn set_lag_source(&self, context: RecordingContext) {
        *self.lag_source.lock().unwrap_or_else(|p| p.into_inner()) = Some(context);
    }

    /// Total consumer lag over the assigned partitions (messages not yet durable in the ledger),
    /// as of librdkafka's last statistics report; `None` before the first report.
    pub fn total_lag(&self) -> Option<i64> {
        let guard = self.lag_source.lock().unwrap_or_else(|p| p.into_inner());
        let lag = guard.as_ref()?.lag();
        (!lag.is_empty()).then(|| lag.values().map(|l| l.lag).sum())
    }

    /// Number of partitions currently owned.
    pub fn set_assigned(&self, n: usize) {
        self.assigned.store(n as u64, Ordering::Relaxed);
    }

    /// Size of the dedupe state: ids held and the bytes of memory holding them.
    pub fn set_dedupe_size(&self, ids: usize, bytes: usize) {
        self.dedupe_ids.store(ids as u64, Ordering::Relaxed);
        self.dedupe_bytes.store(bytes as u64, Ordering::Relaxed);
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
        self.insert_latency.render(
            &mut out,
            &INSERT_SECONDS,
            "ledger_insert_duration_seconds",
            "Duration of one ledger insert (the rows of every partition), including retries.",
            SumUnit::Micros,
        );
        self.batch_rows.render(
            &mut out,
            &BATCH_ROWS,
            "ledger_batch_rows",
            "Rows per ledger insert (the rows of every partition).",
            SumUnit::Plain,
        );
        let lag = self.lag_source.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|c| c.lag()).unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP ledger_consumer_lag Messages of a partition not yet durable in the ledger (high watermark - committed offset), from librdkafka statistics every 2 s.\n# TYPE ledger_consumer_lag gauge"
        );
        for ((topic, partition), l) in &lag {
            let _ = writeln!(out, "ledger_consumer_lag{{topic=\"{topic}\",partition=\"{partition}\"}} {}", l.lag);
        }
        let _ = writeln!(
            out,
            "# HELP ledger_events_rejected_total Events rejected, by reason.\n# TYPE ledger_events_rejected_total counter"
        );
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
        let _ = writeln!(
            out,
            "# HELP ledger_dedupe_bytes Memory of the deduplication state.\n# TYPE ledger_dedupe_bytes gauge\nledger_dedupe_bytes {}",
            self.dedupe_bytes.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_count_every_observation() {
        let stats = Stats::default();
        stats.observe_insert(3, Duration::from_millis(7));
        stats.observe_insert(20_000, Duration::from_secs(40));
        let text = stats.render_prometheus();
        for line in [
            "ledger_insert_duration_seconds_bucket{le=\"0.005\"} 0",
            "ledger_insert_duration_seconds_bucket{le=\"0.01\"} 1",
            "ledger_insert_duration_seconds_bucket{le=\"30\"} 1",
            "ledger_insert_duration_seconds_bucket{le=\"+Inf\"} 2",
            "ledger_insert_duration_seconds_sum 40.007000",
            "ledger_insert_duration_seconds_count 2",
            "ledger_batch_rows_bucket{le=\"1\"} 0",
            "ledger_batch_rows_bucket{le=\"10\"} 1",
            "ledger_batch_rows_bucket{le=\"20000\"} 2",
            "ledger_batch_rows_sum 20003",
            "ledger_rows_written_total 20003",
            "ledger_inserts_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
