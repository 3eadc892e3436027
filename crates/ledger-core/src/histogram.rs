//! A Prometheus histogram of integer observations (microseconds, rows) over fixed buckets:
//! updated without locks from any thread, rendered in the text exposition format. The services'
//! `/metrics` endpoints share it so every histogram reads the same way.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of a histogram's buckets (inclusive, ascending) and their `le` labels.
pub type Buckets<const N: usize> = [(u64, &'static str); N];

/// How a histogram's `_sum` is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumUnit {
    /// Observations are microseconds; the sum is printed as seconds (six decimals).
    Micros,
    /// The sum is printed as it is.
    Plain,
}

/// Counts of the observations at or below each of `N` bounds, their number and their sum.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), count: AtomicU64::new(0), sum: AtomicU64::new(0) }
    }
}

impl<const N: usize> Histogram<N> {
    /// Records `value` in the first bucket of `bounds` that holds it (above the last bound, only
    /// in `+Inf`).
    pub fn observe(&self, bounds: &Buckets<N>, value: u64) {
        if let Some(i) = bounds.iter().position(|(le, _)| value <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Appends the histogram `name` (its `HELP`, `TYPE`, cumulative buckets, sum and count).
    pub fn render(&self, out: &mut String, bounds: &Buckets<N>, name: &str, help: &str, unit: SumUnit) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bucket, (_, le)) in self.buckets.iter().zip(bounds) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        match unit {
            SumUnit::Micros => {
                let _ = writeln!(out, "{name}_sum {}.{:06}", sum / 1_000_000, sum % 1_000_000);
            }
            SumUnit::Plain => {
                let _ = writeln!(out, "{name}_sum {sum}");
            }
        }
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Buckets<2> = [(10, "0.00001"), (1_000_000, "1")];

    #[test]
    fn buckets_are_cumulative_and_a_large_value_counts_only_in_inf() {
        let h = Histogram::<2>::default();
        for v in [5, 10, 11, 3_000_001] {
            h.observe(&BOUNDS, v);
        }
        let mut out = String::new();
        h.render(&mut out, &BOUNDS, "x_seconds", "Help.", SumUnit::Micros);
        assert_eq!(
            out,
            "# HELP x_seconds Help.\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"0.00001\"} 2\n\
             x_seconds_bucket{le=\"1\"} 3\nx_seconds_bucket{le=\"+Inf\"} 4\nx_seconds_sum 3.000027\nx_seconds_count 4\n"
        );
        let mut out = String::new();
        h.render(&mut out, &BOUNDS, "x", "Help.", SumUnit::Plain);
        assert!(out.contains("\nx_sum 3000027\n"), "{out}");
    }
}
