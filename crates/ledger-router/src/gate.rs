//! Admission gates of a throttled scope: a deterministic fraction and a rate (GCRA).
//!
//! Both are lock-free (one atomic read-modify-write per call) so that many threads can ask the
//! router at once without a lock on the hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use ledger_core::signal::BudgetSignal;

const PPM: u128 = BudgetSignal::PPM as u128;

/// Admits exactly `floor(n * ppm / 1e6)` of the first `n` calls, spread evenly: call number `n`
/// (from 0) is admitted when `floor((n+1) * ppm / 1e6) > floor(n * ppm / 1e6)`.
///
/// Deterministic rather than random, so that a test (or an auditor) can predict exactly which
/// calls went through, and so that a small fraction is never starved by bad luck.
#[derive(Debug)]
pub(crate) struct FractionGate {
    ppm: u32,
    offered: AtomicU64,
}

impl FractionGate {
    pub(crate) fn new(ppm: u32) -> Self {
        FractionGate { ppm, offered: AtomicU64::new(0) }
    }

    /// True when this call is admitted. Counts the call as offered.
    pub(crate) fn admit(&self) -> bool {
        if u128::from(self.ppm) >= PPM {
            return true;
        }
        if self.ppm == 0 {
            return false;
        }
        let n = u128::from(self.offered.fetch_add(1, Ordering::Relaxed));
        let ppm = u128::from(self.ppm);
        (n + 1) * ppm / PPM > n * ppm / PPM
    }
}

/// Generic cell rate algorithm: admits `rate` calls per second on average, with a burst of up
/// to `rate` calls (one second's worth), and says how long a refused caller should wait.
///
/// Times are microseconds on any clock that does not run backwards by much (a step back only
/// makes the gate stricter for that long).
#[derive(Debug)]
pub(crate) struct RateGate {
    interval_us: i64,
    tolerance_us: i64,
    /// Theoretical arrival time of the next call.
    next_us: AtomicI64,
}

impl RateGate {
    /// A gate for `rate_per_sec` calls per second; `None` when the rate is zero (use a
    /// fraction of 0 for "admit nothing").
    pub(crate) fn new(rate_per_sec: u32) -> Option<Self> {
        if rate_per_sec == 0 {
            return None;
        }
        let interval_us = (1_000_000 / i64::from(rate_per_sec)).max(1);
        let tolerance_us = interval_us * (i64::from(rate_per_sec) - 1);
        Some(RateGate { interval_us, tolerance_us, next_us: AtomicI64::new(i64::MIN) })
    }

    /// `Ok` when the call at `now_us` is admitted, else how long until one would be.
    pub(crate) fn admit(&self, now_us: i64) -> Result<(), Duration> {
        let mut next = self.next_us.load(Ordering::Relaxed);
        loop {
            let base = next.max(now_us);
            let ahead = base.saturating_sub(now_us);
            if ahead > self.tolerance_us {
                let wait = ahead - self.tolerance_us;
                return Err(Duration::from_micros(u64::try_from(wait).unwrap_or(0)));
            }
            match self.next_us.compare_exchange_weak(
                next,
                base.saturating_add(self.interval_us),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => next = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fraction_extremes() {
        let all = FractionGate::new(1_000_000);
        let none = FractionGate::new(0);
        for _ in 0..100 {
            assert!(all.admit());
            assert!(!none.admit());
        }
    }

    #[test]
    fn half_admits_every_other_call() {
        let g = FractionGate::new(500_000);
        let admitted: Vec<bool> = (0..6).map(|_| g.admit()).collect();
        assert_eq!(admitted, [false, true, false, true, false, true]);
    }

    proptest! {
        #[test]
        fn fraction_admits_exactly_floor_n_ppm(ppm in 0u32..=1_000_000, n in 0u64..5_000) {
            let g = FractionGate::new(ppm);
            let admitted = (0..n).filter(|_| g.admit()).count() as u128;
            prop_assert_eq!(admitted, u128::from(n) * u128::from(ppm) / PPM);
        }

        #[test]
        fn fraction_is_evenly_spread(ppm in 1u32..=1_000_000, n in 1u64..3_000, start in 0u64..3_000) {
            // In any window of n consecutive calls the count differs from n*ppm/1e6 by < 1.
            let g = FractionGate::new(ppm);
            for _ in 0..start { g.admit(); }
            let admitted = (0..n).filter(|_| g.admit()).count() as i128;
            let exact_times_ppm = i128::from(n) * i128::from(ppm);
            prop_assert!((admitted * 1_000_000 - exact_times_ppm).abs() < 1_000_000);
        }

        #[test]
        fn rate_never_exceeds_burst_plus_rate_times_elapsed(rate in 1u32..2_000, calls in 1usize..4_000, step_us in 0i64..5_000) {
            let g = RateGate::new(rate).unwrap();
            let mut now = 1_000_000_000i64;
            let start = now;
            let mut admitted = 0i64;
            for _ in 0..calls {
                match g.admit(now) {
                    Ok(()) => admitted += 1,
                    Err(wait) => prop_assert!(wait > Duration::ZERO),
                }
                now += step_us;
            }
            let elapsed = now - start;
            let interval = (1_000_000 / i64::from(rate)).max(1);
            // burst of `rate`, then one per interval
            prop_assert!(admitted <= i64::from(rate) + elapsed / interval + 1);
        }
    }

    #[test]
    fn rate_refuses_past_the_burst_and_says_how_long_to_wait() {
        let g = RateGate::new(2).unwrap();
        let t = 10_000_000;
        assert!(g.admit(t).is_ok());
        assert!(g.admit(t).is_ok());
        let wait = g.admit(t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(g.admit(t + 500_000).is_ok());
        assert!(g.admit(t + 500_000).is_err());
        assert!(RateGate::new(0).is_none());
    }
}
