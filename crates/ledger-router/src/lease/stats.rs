//! Counters of the router's lease side, and the histogram of `estimated − actual` per reported
//! call (so the bound of docs/budgets.md can be watched).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ledger_core::Money;

/// Upper bounds (USD, as exact decimal text) of the estimate-error buckets; the last bucket is
/// `+Inf`. Negative values are calls that cost more than their estimate.
pub const ESTIMATE_ERROR_BUCKETS_USD: [&str; 11] =
    ["-1", "-0.1", "-0.01", "-0.001", "-0.0001", "0", "0.0001", "0.001", "0.01", "0.1", "1"];

/// A histogram of `estimated − actual` (exact pico-dollars).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EstimateErrorHistogram {
    /// Calls per bucket of [`ESTIMATE_ERROR_BUCKETS_USD`] (not cumulative), then `+Inf`.
    pub buckets: [u64; ESTIMATE_ERROR_BUCKETS_USD.len() + 1],
    /// Calls recorded.
    pub count: u64,
    /// Sum of `estimated − actual`.
    pub sum: Money,
    /// The most negative error seen (the worst underestimate), zero when none.
    pub min: Money,
}

impl EstimateErrorHistogram {
    fn record(&mut self, error: Money) {
        let i = ESTIMATE_ERROR_BUCKETS_USD
            .iter()
            .position(|le| le.parse::<Money>().is_ok_and(|le| error <= le))
            .unwrap_or(ESTIMATE_ERROR_BUCKETS_USD.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum = Money::from_picos(self.sum.picos().saturating_add(error.picos()));
        self.min = self.min.min(error);
    }
}

/// A snapshot of the lease counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Calls admitted under a lease.
    pub reserved: u64,
    /// Calls refused because no open lease covered them (a grant on its way, or `WAIT`).
    pub refused_empty: u64,
    /// Calls refused because the budget is exhausted.
    pub refused_exhausted: u64,
    /// Calls refused because the estimate failed or the enforcer is unreachable (fail closed).
    pub refused_other: u64,
    /// Calls allowed without a lease (fail open, or the enforcer said `NOT_LEASED`).
    pub unleased: u64,
    /// Lease requests sent (returns-only ones included).
    pub requests_sent: u64,
    /// Grants received for this instance.
    pub grants_received: u64,
    /// Requests that went unanswered past the grant timeout.
    pub timeouts: u64,
    /// `estimated − actual` of every completed call.
    pub estimate_error: EstimateErrorHistogram,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reserved: AtomicU64,
    pub(crate) refused_empty: AtomicU64,
    pub(crate) refused_exhausted: AtomicU64,
    pub(crate) refused_other: AtomicU64,
    pub(crate) unleased: AtomicU64,
    pub(crate) requests_sent: AtomicU64,
    pub(crate) grants_received: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    histogram: Mutex<EstimateErrorHistogram>,
}

impl Counters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn estimate_error(&self, error: Money) {
        self.histogram.lock().unwrap_or_else(|p| p.into_inner()).record(error);
    }

    pub(crate) fn snapshot(&self) -> LeaseStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LeaseStats {
            reserved: get(&self.reserved),
            refused_empty: get(&self.refused_empty),
            refused_exhausted: get(&self.refused_exhausted),
            refused_other: get(&self.refused_other),
            unleased: get(&self.unleased),
            requests_sent: get(&self.requests_sent),
            grants_received: get(&self.grants_received),
            timeouts: get(&self.timeouts),
            estimate_error: self.histogram.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fall_in_their_bucket_exactly() {
        let c = Counters::default();
        for e in ["0.0025", "0", "-0.000000000001", "-0.5", "2"] {
            c.estimate_error(e.parse().unwrap());
        }
        let h = c.snapshot().estimate_error;
        assert_eq!(h.count, 5);
        assert_eq!(h.buckets[5], 2, "0 and one pico over the estimate are in le=0");
        assert_eq!(h.buckets[4], 0, "nothing within (-0.001, -0.0001]");
        assert_eq!(h.buckets[1], 1, "-0.5 is in le=-0.1");
        assert_eq!(h.buckets[8], 1, "0.0025 is in le=0.01");
        assert_eq!(h.buckets[11], 1, "2 is over the last bound");
        assert_eq!(h.sum, "1.502499999999".parse().unwrap());
        assert_eq!(h.min, "-0.5".parse().unwrap());
    }
}
