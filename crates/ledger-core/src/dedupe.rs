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
//!
//! Times are kept per slice of arrivals, not per id: an id's slice spans at most
//! `horizon / 4096` (at least 1 ms), and a slice expires when its newest id does. An id may so
//! be held up to one slice width past the horizon (under a second for the default hour), never
//! less than the horizon, and it costs 8 fewer bytes.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use siphasher::sip128::{Hasher128, SipHasher13};

/// Slices of the horizon that ids' first-seen times are rounded to (see the module docs).
const SLICES_PER_HORIZON: i64 = 4096;

/// Ids first seen close together: those with sequence numbers below `end_seq` and not in an
/// earlier slice.
#[derive(Debug, Clone, Copy)]
struct Slice {
    /// When the slice's first id arrived; later arrivals within the slice width join it.
    start_ms: i64,
    /// When its newest id arrived: the slice expires `horizon` after this.
    newest_ms: i64,
    /// One past the sequence number of its last id.
    end_seq: u64,
}

/// A set of recently accepted event ids with time- and size-based eviction.
///
/// Each id's fingerprint is stored once, in arrival order; the index holds only the low 32
/// bits of its sequence number (the window never holds 2^32 ids), so an entry costs 16 bytes
/// plus 5 per index slot: about 22 bytes in a full window, 28 once evictions have doubled the
/// index (the processor holds millions).
#[derive(Clone)]
pub struct DedupeWindow {
    horizon_ms: i64,
    slice_ms: i64,
    capacity: usize,
    /// Sequence numbers (mod 2^32) of the ids in `order`, hashed by the fingerprint's low half.
    index: HashTable<u32>,
    /// Id fingerprints in arrival order; `order[i]` has sequence `first_seq + i`.
    order: VecDeque<[u64; 2]>,
    /// When the ids in `order` arrived, oldest slice first.
    slices: VecDeque<Slice>,
    first_seq: u64,
    key: (u64, u64),
}

impl std::fmt::Debug for DedupeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupeWindow")
            .field("horizon_ms", &self.horizon_ms)
            .field("capacity", &self.capacity)
            .field("ids", &self.order.len())
            .field("slices", &self.slices.len())
            .finish()
    }
}

impl DedupeWindow {
    /// An empty window keeping ids for `horizon_ms`, at most `capacity` of them (and never
    /// more than 2^31).
    pub fn new(horizon_ms: i64, capacity: usize) -> Self {
        DedupeWindow {
            horizon_ms,
            slice_ms: (horizon_ms / SLICES_PER_HORIZON).max(1),
            capacity: capacity.clamp(1, 1 << 31),
            index: HashTable::new(),
            order: VecDeque::new(),
            slices: VecDeque::new(),
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

    fn fingerprint_at(order: &VecDeque<[u64; 2]>, first_seq: u64, seq: u32) -> [u64; 2] {
        order[seq.wrapping_sub(first_seq as u32) as usize]
    }

    fn find(&self, fp: [u64; 2]) -> Option<u32> {
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
        self.order.push_back(fp);
        match self.slices.back_mut() {
            // A clock that stepped back joins the current slice, which keeps its newest time.
            Some(last) if now_ms < last.start_ms.saturating_add(self.slice_ms) => {
                last.newest_ms = last.newest_ms.max(now_ms);
                last.end_seq = seq + 1;
            }
            _ => self.slices.push_back(Slice { start_ms: now_ms, newest_ms: now_ms, end_seq: seq + 1 }),
        }
        let DedupeWindow { index, order, first_seq, .. } = self;
        let first = *first_seq;
        index.insert_unique(fp[0], seq as u32, |&s| Self::fingerprint_at(order, first, s)[0]);
        true
    }

    fn pop_oldest(&mut self) {
        let Some(old) = self.order.pop_front() else { return };
        let seq = self.first_seq as u32;
        if let Ok(entry) = self.index.find_entry(old[0], |&s| s == seq) {
            entry.remove();
        }
        self.first_seq += 1;
        while self.slices.front().is_some_and(|s| s.end_seq <= self.first_seq) {
            self.slices.pop_front();
        }
    }

    /// Drops the ids whose slice's newest id was first seen more than the horizon before `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(oldest) = self.slices.front() {
            if now_ms - oldest.newest_ms <= self.horizon_ms {
                break;
            }
            let end = oldest.end_seq;
            while self.first_seq < end {
                self.pop_oldest();
            }
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

    /// Bytes of memory the window holds: its index, fingerprints and slices at their capacity.
    pub fn heap_bytes(&self) -> usize {
        self.index.allocation_size()
            + self.order.capacity() * std::mem::size_of::<[u64; 2]>()
            + self.slices.capacity() * std::mem::size_of::<Slice>()
    }
}

/// An event id as a [`DedupeWindow`] holds it (valid for that window only: the key is per window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdFingerprint([u64; 2]);

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
    fn ids_are_held_for_the_horizon_and_at_most_one_slice_longer() {
        // One hour: slices are 878 ms wide.
        let mut w = DedupeWindow::new(3_600_000, 10);
        assert!(w.insert("a", 1_000));
        assert!(w.insert("b", 1_500));
        assert!(w.insert("c", 1_878));
        w.expire(3_601_000);
        assert!(w.contains("a"), "expired before its horizon");
        w.expire(3_601_500);
        assert!(w.contains("a") && w.contains("b"), "a slice expires with its newest id");
        w.expire(3_601_501);
        assert!(!w.contains("a") && !w.contains("b"), "held past horizon + one slice");
        assert!(w.contains("c"), "the next slice starts at 1,878 ms");
        w.expire(3_601_879);
        assert!(w.is_empty());
        assert_eq!(w.slices.len(), 0);
    }

    #[test]
    fn a_clock_stepping_back_never_shortens_the_horizon() {
        let mut w = DedupeWindow::new(1_000, 10);
        assert!(w.insert("late", 5_000));
        assert!(w.insert("early", 4_000));
        w.expire(6_000);
        assert!(w.contains("early") && w.contains("late"));
        w.expire(6_001);
        assert!(!w.contains("early") && !w.contains("late"));
        // The end of the clock's range joins a slice without overflowing.
        let mut w = DedupeWindow::new(3_600_000, 10);
        assert!(w.insert("a", i64::MAX) && w.insert("b", i64::MAX - 1) && !w.insert("a", i64::MAX));
    }

    #[test]
    fn a_full_window_in_steady_use_stays_under_48_mib() {
        let mut w = DedupeWindow::new(3_600_000, 1_800_000);
        let key = w.clone();
        let fp = |i: u64| key.fingerprint(&i.to_string());
        for i in 0..1_800_000u64 {
            w.insert_fingerprint(fp(i), (i / 100) as i64);
        }
        assert_eq!(w.len(), 1_800_000);
        let filled = w.heap_bytes();
        assert!(filled < 38 << 20, "{filled} bytes");
        assert!(filled > 1_800_000 * 20, "{filled} bytes cannot hold the fingerprints and index");
        // Evicting the oldest leaves deleted slots in the index; once they use up its room,
        // hashbrown doubles it (the ids are more than half of what it holds): 2^22 slots,
        // 47.5 MiB in all, where it stays.
        for i in 1_800_000..3_600_000u64 {
            w.insert_fingerprint(fp(i), (i / 100) as i64);
        }
        assert_eq!(w.len(), 1_800_000);
        let steady = w.heap_bytes();
        assert!(steady < 48 << 20, "{steady} bytes");
        assert!(w.contains_fingerprint(fp(3_599_999)) && w.contains_fingerprint(fp(1_800_000)));
        assert!(!w.contains_fingerprint(fp(1_799_999)));
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

    proptest::proptest! {
        /// With slices wider than a millisecond, every id is held at least the horizon and
        /// dropped once its slice's width past it, under any mix of arrivals.
        #[test]
        fn coarse_slices_hold_ids_between_horizon_and_one_slice_more(
            steps in proptest::collection::vec(0i64..3_000, 1..300),
            horizon in 4_096i64..100_000,
        ) {
            let mut w = DedupeWindow::new(horizon, usize::MAX);
            let slice = horizon / SLICES_PER_HORIZON;
            let mut now = 0i64;
            let mut seen = Vec::new();
            for (i, step) in steps.into_iter().enumerate() {
                now += step;
                let id = format!("id-{i}");
                w.insert(&id, now);
                seen.push((now, id));
                for (at, id) in &seen {
                    let age = now - at;
                    if age <= horizon {
                        proptest::prop_assert!(w.contains(id), "{} dropped at age {}", id, age);
                    } else if age > horizon + slice {
                        proptest::prop_assert!(!w.contains(id), "{} held at age {}", id, age);
                    }
                }
            }
        }

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
