//! Per-key rate limits: a token bucket per API key, counted in events.
//!
//! A key with a limit of `r` events per second and a burst of `b` events has a bucket that holds
//! up to `b` tokens and gains `r` per second. A request of `n` events takes `n` tokens, all or
//! none: with fewer than `n` in the bucket it is refused (429) with the time until `n` will be
//! there, and nothing of it is written. A request of more than `b` events could never pass and
//! is refused as too large (413). Requests that fail validation take nothing.
//!
//! Tokens are integers (billionths of an event) and time is a [`Duration`] since the limiter's
//! start, passed in by the caller: the arithmetic is exact and the tests choose the clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::IngestSettings;
use crate::keys::KeyRecord;

/// Billionths of an event per event: a bucket gains `per_second` of them per nanosecond.
const UNIT: u128 = 1_000_000_000;

/// A key's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events per second, at least 1.
    pub per_second: u32,
    /// Most events the bucket holds, at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// The limit in force for a key: its own `rate_limit`, else `ingest.rate_limit`; 0 or
    /// neither means none. The burst: the key's, else `ingest.burst`, else the larger of the
    /// rate and `ingest.max_events` (so that every request the server takes can pass).
    pub fn for_key(record: &KeyRecord, settings: &IngestSettings) -> Option<RateLimit> {
        let per_second = record.rate_limit.or(settings.rate_limit).filter(|&r| r > 0)?;
        let default_burst = per_second.max(u32::try_from(settings.max_events).unwrap_or(u32::MAX));
        let burst = record.burst.or(settings.burst).unwrap_or(default_burst).max(1);
        Some(RateLimit { per_second, burst })
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request has more events than the burst: it can never pass; split it.
    OverBurst {
        /// The key's limit.
        limit: RateLimit,
    },
    /// Not enough tokens now; they will be there after `wait`.
    Limited {
        /// The key's limit.
        limit: RateLimit,
        /// Until the request's events fit.
        wait: Duration,
    },
}

impl Refusal {
    /// `Retry-After` in whole seconds: the wait rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::OverBurst { .. } => 1,
            Refusal::Limited { wait, .. } => wait.as_nanos().div_ceil(UNIT).max(1).try_into().unwrap_or(u64::MAX),
        }
    }
}

/// One key's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    limit: RateLimit,
    /// Billionths of an event.
    tokens: u128,
    /// When `tokens` was last brought up to date.
    at: Duration,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Duration) -> TokenBucket {
        TokenBucket { limit, tokens: capacity(limit), at: now }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_nanos();
        self.tokens =
            self.tokens.saturating_add(elapsed.saturating_mul(u128::from(self.limit.per_second))).min(capacity(self.limit));
        self.at = self.at.max(now);
    }

    /// Takes `events` tokens at `now`, or none and says why.
    pub fn take(&mut self, events: u64, now: Duration) -> Result<(), Refusal> {
        self.refill(now);
        let limit = self.limit;
        if events > u64::from(limit.burst) {
            return Err(Refusal::OverBurst { limit });
        }
        let needed = u128::from(events) * UNIT;
        if self.tokens >= needed {
            self.tokens -= needed;
            return Ok(());
        }
        let nanos = (needed - self.tokens).div_ceil(u128::from(limit.per_second));
        Err(Refusal::Limited { limit, wait: Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)) })
    }

    /// Applies a changed limit (after a keys reload), keeping what the bucket holds up to the
    /// new burst.
    pub fn set_limit(&mut self, limit: RateLimit, now: Duration) {
        if limit != self.limit {
            self.refill(now);
            self.limit = limit;
            self.tokens = self.tokens.min(capacity(limit));
        }
    }

    /// Whole events in the bucket at `now`.
    pub fn available(&mut self, now: Duration) -> u64 {
        self.refill(now);
        u64::try_from(self.tokens / UNIT).unwrap_or(u64::MAX)
    }
}

fn capacity(limit: RateLimit) -> u128 {
    u128::from(limit.burst) * UNIT
}

/// The buckets of every key that has a limit, by key id. Only authenticated keys get a bucket,
/// so their number is bounded by the keys file.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// Takes `events` tokens from the bucket of `key_id` (created full on first use); no
    /// limit always passes.
    pub fn take(&self, key_id: &str, limit: Option<RateLimit>, events: u64, now: Duration) -> Result<(), Refusal> {
        let Some(limit) = limit else { return Ok(()) };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match buckets.get_mut(key_id) {
            Some(bucket) => {
                bucket.set_limit(limit, now);
                bucket.take(events, now)
            }
            None => {
                let mut bucket = TokenBucket::new(limit, now);
                let taken = bucket.take(events, now);
                buckets.insert(key_id.to_owned(), bucket);
                taken
            }
        }
    }

    /// Forgets the buckets of keys no longer in the file.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| keep(id));
    }

    /// Number of buckets held.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key has a bucket yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_takes_the_burst_then_refills_at_the_rate() {
        let mut b = TokenBucket::new(limit(10, 50), ms(0));
        assert_eq!(b.take(50, ms(0)), Ok(()));
        // Empty: one event needs 100 ms.
        assert_eq!(b.take(1, ms(0)), Err(Refusal::Limited { limit: limit(10, 50), wait: ms(100) }));
        assert_eq!(b.take(1, ms(99)), Err(Refusal::Limited { limit: limit(10, 50), wait: ms(1) }));
        assert_eq!(b.take(1, ms(100)), Ok(()));
        // After 10 s the bucket is full again, never fuller.
        assert_eq!(b.available(ms(100_000)), 50);
        assert_eq!(b.take(51, ms(100_000)), Err(Refusal::OverBurst { limit: limit(10, 50) }));
        assert_eq!(b.available(ms(100_000)), 50, "a refusal takes nothing");
    }

    #[test]
    fn a_refused_request_takes_nothing_and_the_wait_is_exact() {
        let mut b = TokenBucket::new(limit(3, 10), ms(0));
        assert_eq!(b.take(8, ms(0)), Ok(()));
        // 2 left; 5 more need 3 more tokens at 3/s: exactly 1 s.
        let refusal = b.take(5, ms(0)).unwrap_err();
        assert_eq!(refusal, Refusal::Limited { limit: limit(3, 10), wait: ms(1000) });
        assert_eq!(refusal.retry_after_secs(), 1);
        assert_eq!(b.available(ms(0)), 2);
        assert_eq!(b.take(5, ms(1000)), Ok(()));
        // A third of a second per token: 1 token after 334 ms, not 333.
        assert!(b.take(1, ms(1333)).is_err());
        assert_eq!(b.take(1, ms(1334)), Ok(()));
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let l = limit(1, 1);
        let wait = |ns| Refusal::Limited { limit: l, wait: Duration::from_nanos(ns) }.retry_after_secs();
        assert_eq!(wait(1), 1);
        assert_eq!(wait(1_000_000_000), 1);
        assert_eq!(wait(1_000_000_001), 2);
        assert_eq!(wait(2_500_000_000), 3);
        assert_eq!(Refusal::OverBurst { limit: l }.retry_after_secs(), 1);
    }

    #[test]
    fn over_a_long_run_the_rate_holds_exactly() {
        // A client that sends 7 events whenever it may, for 100 s at 1 ms steps.
        let mut b = TokenBucket::new(limit(100, 20), ms(0));
        let mut sent = 0u64;
        for t in 0..=100_000 {
            if b.take(7, ms(t)).is_ok() {
                sent += 7;
            }
        }
        // The burst plus 100 s at 100/s, less what is left in the bucket (under 7).
        assert!((10_014..=10_020).contains(&sent), "{sent}");
    }

    #[test]
    fn the_limiter_keeps_one_bucket_per_key_and_follows_limit_changes() {
        let limiter = RateLimiter::default();
        assert_eq!(limiter.take("aaaaaaaaaaaa", None, 1_000_000, ms(0)), Ok(()), "no limit, no bucket");
        assert!(limiter.is_empty());
        assert_eq!(limiter.take("aaaaaaaaaaaa", Some(limit(1, 5)), 5, ms(0)), Ok(()));
        assert!(limiter.take("aaaaaaaaaaaa", Some(limit(1, 5)), 1, ms(0)).is_err());
        assert_eq!(limiter.take("bbbbbbbbbbbb", Some(limit(1, 5)), 5, ms(0)), Ok(()), "another key, another bucket");
        // A reload raises the limit: the bucket refills at the new rate from its first use on.
        let raised = limiter.take("aaaaaaaaaaaa", Some(limit(1000, 5)), 1, ms(1));
        assert_eq!(raised, Err(Refusal::Limited { limit: limit(1000, 5), wait: Duration::from_micros(999) }));
        assert_eq!(limiter.take("aaaaaaaaaaaa", Some(limit(1000, 5)), 1, ms(2)), Ok(()));
        // A lower burst caps what the bucket holds.
        assert_eq!(
            limiter.take("bbbbbbbbbbbb", Some(limit(1, 2)), 3, ms(60_000)),
            Err(Refusal::OverBurst { limit: limit(1, 2) })
        );
        assert_eq!(limiter.take("bbbbbbbbbbbb", Some(limit(1, 2)), 2, ms(60_000)), Ok(()));
        limiter.retain(|id| id == "bbbbbbbbbbbb");
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn the_limit_of_a_key_comes_from_the_key_then_the_settings() {
        let record = |rate_limit, burst| KeyRecord {
            id: "0123456789ab".into(),
            tenant_id: "acme".into(),
            name: None,
            sha256: crate::keys::KeyHash::of("x"),
            created_at: chrono::DateTime::UNIX_EPOCH,
            revoked_at: None,
            rate_limit,
            burst,
            imported: false,
        };
        let none = IngestSettings::default();
        assert_eq!(RateLimit::for_key(&record(None, None), &none), None);
        assert_eq!(RateLimit::for_key(&record(Some(5), None), &none), Some(limit(5, 1000)), "burst: max_events");
        assert_eq!(RateLimit::for_key(&record(Some(5000), None), &none), Some(limit(5000, 5000)), "burst: the rate");
        assert_eq!(RateLimit::for_key(&record(Some(5), Some(7)), &none), Some(limit(5, 7)));
        let defaults = IngestSettings { rate_limit: Some(100), burst: Some(200), ..IngestSettings::default() };
        assert_eq!(RateLimit::for_key(&record(None, None), &defaults), Some(limit(100, 200)));
        assert_eq!(RateLimit::for_key(&record(Some(0), None), &defaults), None, "0: this key has no limit");
        assert_eq!(RateLimit::for_key(&record(Some(10), Some(20)), &defaults), Some(limit(10, 20)));
    }
}
