//! Bounded idempotency state: which `event_id`s were accepted recently.
//!
//! Entries expire `horizon` after they were first seen (by the caller's clock, in
//! milliseconds), and the set never holds more than `capacity` ids: past that the oldest are
//! evicted first. A resend that arrives after its id was evicted is counted again, which is
//! why the horizon is a documented contract (default one hour).
//!
//! Ids are held as 128-bit fingerprints (SipHash-1-3 under a key drawn per window), not as
//! text: a third of the memory, and no allocation per event. Two distinct ids share a
//! fingerprint with probability 2^-128, so across a full window of 2 million ids the chance that
//! any new event is mistaken for a resend is about 10^-26 — far below the rate of undetected
//! memory errors — and the random key keeps anyone from crafting such a pair.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use siphasher::sip128::{Hasher128, SipHasher13};

/// A set of recently accepted event ids with time- and size-based eviction.
///
/// Each id's fingerprint is stored once, in arrival order; the index holds only its sequence
/// number, so an entry costs about 35 bytes (the processor holds millions).
#[derive(Clone)]
pub struct DedupeWindow {
    horizon_ms: i64,
    capacity: usize,
    /// Sequence numbers of the ids in `order`, hashed by the fingerprint's low half.
    index: HashTable<u64>,
    /// Id fingerprints in arrival order with when they were first seen; `order[i]` has
    /// sequence `first_seq + i`.
    order: VecDeque<(i64, [u64; 2])>,
    first_seq: u64,
    key: (u64, u64),
}

impl std::fmt::Debug for DedupeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupeWindow")
            .field("horizon_ms", &self.horizon_ms)
            .field("capacity", &self.capacity)
            .field("ids", &self.order.len())
            .finish()
    }
}

impl DedupeWindow {
    /// An empty window keeping ids for `horizon_ms`, at most `capacity` of them.
    pub fn new(horizon_ms: i64, capacity: usize) -> Self {
        DedupeWindow {
            horizon_ms,
            capacity: capacity.max(1),
            index: HashTable::new(),
            order: VecDeque::new(),
            first_seq: 0,
            key: {
                let random = std::collections::hash_map::RandomState::new();
                (random.hash_one(0x5EED_u64), random.hash_one(0xD00D_u64))
            },
        }
    }

    /// The fingerprint `id` is held as in this window: computed once, it serves both
    /// [`DedupeWindow::contains_fingerprint`] and [`DedupeWindow::insert_fingerprint`].
    pub fn fingerprint(&self, id: &str) -> IdFingerprint {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(id.as_bytes());
        let h = h.finish128();
        IdFingerprint([h.h1, h.h2])
    }

    fn fingerprint_at(order: &VecDeque<(i64, [u64; 2])>, first_seq: u64, seq: u64) -> [u64; 2] {
        order[(seq - first_seq) as usize].1
    }

    fn find(&self, fp: [u64; 2]) -> Option<u64> {
        self.index.find(fp[0], |&seq| Self::fingerprint_at(&self.order, self.first_seq, seq) == fp).copied()
    }

    /// True when `id` was accepted within the horizon.
    pub fn contains(&self, id: &str) -> bool {
        self.contains_fingerprint(self.fingerprint(id))
    }

    /// True when the id of `fp` (from [`DedupeWindow::fingerprint`]) was accepted within the horizon.
    pub fn contains_fingerprint(&self, fp: IdFingerprint) -> bool {
        self.find(fp.0).is_some()
    }

    /// Records `id` as accepted at `now_ms`; returns false when it was already present.
    pub fn insert(&mut self, id: &str, now_ms: i64) -> bool {
        self.insert_fingerprint(self.fingerprint(id), now_ms)
    }

    /// [`DedupeWindow::insert`] of the id of `fp` (from [`DedupeWindow::fingerprint`]).
    pub fn insert_fingerprint(&mut self, fp: IdFingerprint, now_ms: i64) -> bool {
        let IdFingerprint(fp) = fp;
        if self.find(fp).is_some() {
            return false;
        }
        self.expire(now_ms);
        while self.order.len() >= self.capacity {
            self.pop_oldest();
        }
        if self.order.len() == self.order.capacity() {
            // Double, but never past `capacity`: a full window holds exactly that many entries
            // instead of up to twice as many slots (a processor holds millions per partition).
            let room = self.capacity - self.order.len();
            self.order.reserve_exact(self.order.len().max(1024).min(room));
        }
        let seq = self.first_seq + self.order.len() as u64;
        self.order.push_back((now_ms, fp));
        let DedupeWindow { index, order, first_seq, .. } = self;
        let first = *first_seq;
        index.insert_unique(fp[0], seq, |&s| Self::fingerprint_at(order, first, s)[0]);
        true
    }

    fn pop_oldest(&mut self) {
        let Some((_, old)) = self.order.pop_front() else { return };
        let seq = self.first_seq;
        if let Ok(entry) = self.index.find_entry(old[0], |&s| s == seq) {
            entry.remove();
        }
        self.first_seq += 1;
    }

    /// Drops ids first seen more than the horizon before `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some((seen, _)) = self.order.front() {
            if now_ms - *seen <= self.horizon_ms {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// An event id as a [`DedupeWindow`] holds it (valid for that window only: the key is per window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdFingerprint([u64; 2]);

/// Where an event's time stands against the acceptance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    /// Inside the window.
    Accepted,
    /// Older than `now - max_age`.
    TooOld,
    /// Later than `now + max_future`.
    InFuture,
}

/// Checks `event_ms` against `[now - max_age, now + max_future]` (all in milliseconds).
pub fn check_event_time(event_ms: i64, now_ms: i64, max_age_ms: i64, max_future_ms: i64) -> TimeCheck {
    if event_ms < now_ms.saturating_sub(max_age_ms) {
        TimeCheck::TooOld
    } else if event_ms > now_ms.saturating_add(max_future_ms) {
        TimeCheck::InFuture
    } else {
        TimeCheck::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_horizon_are_seen() {
        let mut w = DedupeWindow::new(1_000, 10);
        assert!(w.insert("a", 0));
        assert!(!w.insert("a", 999));
        assert!(w.contains("a"));
        w.expire(1_001);
        assert!(!w.contains("a"));
        assert!(w.insert("a", 1_002));
    }

    #[test]
    fn a_full_window_allocates_no_more_slots_than_its_capacity() {
        let mut w = DedupeWindow::new(3_600_000, 5_000);
        for i in 0..6_000 {
            w.insert(&format!("id-{i}"), 1);
            assert!(w.order.capacity() <= 5_000, "{} slots", w.order.capacity());
        }
        assert_eq!(w.len(), 5_000);
        assert_eq!(w.order.capacity(), 5_000);
        assert!(!w.contains("id-999") && w.contains("id-1000") && w.contains("id-5999"));
    }

    #[test]
    fn capacity_evicts_oldest() {
        let mut w = DedupeWindow::new(i64::MAX, 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            w.insert(id, i as i64);
        }
        assert_eq!(w.len(), 3);
        assert!(!w.contains("a"));
        assert!(w.contains("d"));
    }

    #[test]
    fn time_window_bounds() {
        assert_eq!(check_event_time(100, 100, 10, 5), TimeCheck::Accepted);
        assert_eq!(check_event_time(90, 100, 10, 5), TimeCheck::Accepted);
        assert_eq!(check_event_time(89, 100, 10, 5), TimeCheck::TooOld);
        assert_eq!(check_event_time(105, 100, 10, 5), TimeCheck::Accepted);
        assert_eq!(check_event_time(106, 100, 10, 5), TimeCheck::InFuture);
    }

    proptest::proptest! {
        /// The window agrees with a plain list of (first seen, id) under any mix of inserts,
        /// clock steps, expiry and the size cap.
        #[test]
        fn agrees_with_a_reference_list(
            ops in proptest::collection::vec((0u8..40, 0i64..300, proptest::bool::ANY), 0..400),
            horizon in 1i64..2_000,
            capacity in 1usize..30,
        ) {
            let mut w = DedupeWindow::new(horizon, capacity);
            let mut reference: std::collections::VecDeque<(i64, String)> = Default::default();
            let mut now = 0i64;
            for (id, step, expire_only) in ops {
                now += step;
                let id = format!("id-{id}");
                if expire_only {
                    w.expire(now);
                    reference.retain(|(seen, _)| now - seen <= horizon);
                } else {
                    let fresh = !reference.iter().any(|(_, x)| *x == id);
                    proptest::prop_assert_eq!(w.insert(&id, now), fresh);
                    if fresh {
                        reference.retain(|(seen, _)| now - seen <= horizon);
                        while reference.len() >= capacity {
                            reference.pop_front();
                        }
                        reference.push_back((now, id));
                    }
                }
                proptest::prop_assert_eq!(w.len(), reference.len());
                for n in 0..40u8 {
                    let x = format!("id-{n}");
                    proptest::prop_assert_eq!(w.contains(&x), reference.iter().any(|(_, r)| *r == x), "{}", x);
                }
            }
        }
    }
}
