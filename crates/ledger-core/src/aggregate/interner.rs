//! Interned attribution strings and the integer keys built from them, so the per-event path
//! compares and hashes integers instead of strings.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::SpendScope;

/// Marks an absent field in an [`IdKey`].
pub(super) const NO_ID: u32 = u32::MAX;

/// A [`SpendKey`] with every string replaced by its id in the aggregator's [`Interner`], so a
/// lookup compares six integers instead of up to six strings.
#[derive(Debug, Clone, Copy, Eq)]
pub(super) struct IdKey {
    /// (tenant, team), (project, user), (API key, model), low id first; [`NO_ID`] when absent.
    /// Packed in pairs so the key is written and read as whole words: built from six 4-byte
    /// stores, the hash's 8-byte loads stalled on store forwarding (17% of `add_call`, perf).
    pairs: [u64; 3],
    pub(super) bucket_start: i64,
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

impl PartialEq for IdKey {
    /// Word by word: a derived compare loaded the probe key as 16-byte vectors, which stall
    /// on store forwarding from the 8-byte stores that built it (a tenth of `add_call`, perf).
    #[inline(always)]
    fn eq(&self, other: &IdKey) -> bool {
        let [a0, a1, a2] = self.pairs;
        let [b0, b1, b2] = other.pairs;
        (a0 ^ b0) | (a1 ^ b1) | (a2 ^ b2) | (self.bucket_start ^ other.bucket_start) as u64 == 0
    }
}

impl IdKey {
    #[inline(always)]
    pub(super) fn new(ids: [u32; 6], bucket_start: i64) -> IdKey {
        let pair = |a: u32, b: u32| u64::from(a) | u64::from(b) << 32;
        IdKey { pairs: [pair(ids[0], ids[1]), pair(ids[2], ids[3]), pair(ids[4], ids[5])], bucket_start }
    }

    /// Which of team, project, user, API key and model the key has, as in
    /// [`SpendScope::fields`].
    pub(super) fn shape(&self) -> (bool, bool, bool, bool, bool) {
        let ids = self.ids();
        let p = |i: usize| ids[i] != NO_ID;
        (p(1), p(2), p(3), p(4), p(5))
    }

    /// tenant, team, project, user, API key, model; [`NO_ID`] when absent.
    pub(super) fn ids(&self) -> [u32; 6] {
        let [a, b, c] = self.pairs;
        [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32, c as u32, (c >> 32) as u32]
    }

    #[inline]
    pub(super) fn hash(&self) -> u64 {
        // Two ids per round: four dependent multiplies instead of seven, eight times a call.
        let h = mix(0x51_7CC1_B727_220A, self.pairs[0]);
        let h = mix(h, self.pairs[1]);
        let h = mix(h, self.pairs[2]);
        mix(h, self.bucket_start as u64)
    }

    /// The ids of the fields `scope` keys on, or `None` when one of them is absent.
    #[inline]
    pub(super) fn for_scope(scope: SpendScope, full: &[u32; 6], bucket_start: i64) -> Option<IdKey> {
        let (team, project, user, key, model) = scope.fields();
        let mut ids = [full[0], NO_ID, NO_ID, NO_ID, NO_ID, NO_ID];
        for (i, wanted) in [team, project, user, key, model].into_iter().enumerate() {
            if wanted {
                if full[i + 1] == NO_ID {
                    return None;
                }
                ids[i + 1] = full[i + 1];
            }
        }
        Some(IdKey::new(ids, bucket_start))
    }
}

/// Attribution strings, each stored once and named by a dense id.
#[derive(Debug, Default, Clone)]
pub(super) struct Interner {
    table: HashTable<u32>,
    pub(super) names: Vec<Box<str>>,
    hashes: Vec<u64>,
    /// Recently interned short names by their bytes, direct-mapped ([`NAME_CACHE_SLOTS`]
    /// entries, allocated on first use). Every call interns six names, nearly all seen before:
    /// a hit costs a few word compares instead of hashing the string, probing the table and
    /// comparing the name.
    cache: Vec<CachedName>,
}

/// Entries of [`Interner::cache`].
const NAME_CACHE_SLOTS: usize = 1024;

/// A name of at most 24 bytes as three words ([`short_name_words`]), and its id.
#[derive(Debug, Clone, Copy)]
struct CachedName {
    words: [u64; 3],
    len: u32,
    id: u32,
}

/// Three words that, with the length, determine a name of at most 24 bytes: windows of 8
/// bytes at the start, middle and end (4 bytes at the start and end below 8, single bytes
/// below 4) that together cover every byte. Read in place, without copying the name.
#[inline(always)]
pub(super) fn short_name_words(s: &str) -> Option<[u64; 3]> {
    let b = s.as_bytes();
    let n = b.len();
    let w8 = |at: usize| b.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map_or(0, u64::from_le_bytes);
    let w4 =
        |at: usize| b.get(at..at + 4).and_then(|w| <[u8; 4]>::try_from(w).ok()).map_or(0, |w| u64::from(u32::from_le_bytes(w)));
    match n {
        25.. => None,
        8.. => Some([w8(0), w8((n - 8) / 2), w8(n - 8)]),
        4.. => Some([w4(0), w4(n - 4), 0]),
        1.. => Some([u64::from(b[0]), u64::from(b[n / 2]), u64::from(b[n - 1])]),
        0 => Some([0; 3]),
    }
}

#[inline(always)]
fn name_cache_slot(words: &[u64; 3], len: usize) -> usize {
    let h = (words[0] ^ words[1].rotate_left(21) ^ words[2].rotate_left(42) ^ len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - NAME_CACHE_SLOTS.trailing_zeros())) as usize
}

impl Interner {
    // Always inlined: six calls per event, and the call itself was a quarter of a cache hit.
    #[inline(always)]
    pub(super) fn intern(&mut self, state: &DefaultHashBuilder, s: &str) -> u32 {
        let words = short_name_words(s);
        if let Some(words) = &words {
            if let Some(e) = self.cache.get(name_cache_slot(words, s.len())) {
                // Word by word: a 16-byte compare of the words, which were just written as
                // 8-byte values, stalled on store forwarding (a third of `intern`, perf).
                let differ = (e.words[0] ^ words[0]) | (e.words[1] ^ words[1]) | (e.words[2] ^ words[2]);
                if e.id != NO_ID && e.len as usize == s.len() && differ == 0 {
                    return e.id;
                }
            }
        }
        let id = self.intern_uncached(state, s);
        if let Some(words) = words {
            if self.cache.is_empty() {
                self.cache = vec![CachedName { words: [0; 3], len: 0, id: NO_ID }; NAME_CACHE_SLOTS];
            }
            self.cache[name_cache_slot(&words, s.len())] = CachedName { words, len: s.len() as u32, id };
        }
        id
    }

    #[inline(never)]
    fn intern_uncached(&mut self, state: &DefaultHashBuilder, s: &str) -> u32 {
        let hash = state.hash_one(s);
        let names = &self.names;
        if let Some(&id) = self.table.find(hash, |&id| &*names[id as usize] == s) {
            return id;
        }
        let id = u32::try_from(self.names.len()).ok().filter(|id| *id != NO_ID).expect("fewer than 2^32 - 1 distinct names");
        self.names.push(s.into());
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.table.insert_unique(hash, id, |&id| hashes[id as usize]);
        id
    }

    pub(super) fn id_of(&self, state: &DefaultHashBuilder, s: &str) -> Option<u32> {
        self.table.find(state.hash_one(s), |&id| &*self.names[id as usize] == s).copied()
    }

    pub(super) fn name(&self, id: u32) -> Option<String> {
        (id != NO_ID).then(|| self.names[id as usize].to_string())
    }
}
