//! Windowed spend aggregation: cumulative totals per attribution key and hour bucket.
//!
//! The processor keeps one [`SpendAggregator`] per source partition and adds each row once it
//! is durable in the ledger; after every committed batch it publishes the cumulative totals of
//! the keys the batch touched ([`SpendAggregator::take_touched`]). Totals are cumulative, not
//! deltas, so a lost or repeated update heals itself.

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::event::{TokenCounts, UsageEvent, UsageEventRef};
use crate::money::{Money, MoneyOverflow};

/// Seconds in one bucket.
pub const BUCKET_SECS: i64 = 3600;

/// Start (unix seconds) of the hour bucket holding `unix_secs`.
pub fn hour_bucket(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(BUCKET_SECS) * BUCKET_SECS
}

/// The attribution dimensions a spend aggregate is kept for. Each accepted call adds to one
/// key per scope (skipping a scope whose field the call lacks), so the budget enforcer reads
/// per-scope totals directly and the number of keys stays small (a user scope, not a
/// user x key x model x ... product).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpendScope {
    /// Tenant.
    Tenant,
    /// Tenant and team.
    Team,
    /// Tenant, team and project.
    Project,
    /// Tenant and end user.
    User,
    /// Tenant and API key.
    ApiKey,
    /// Tenant and model.
    Model,
    /// Tenant, team and model.
    TeamModel,
    /// Tenant, team, project and model.
    ProjectModel,
}

impl SpendScope {
    /// Every scope.
    pub const ALL: [SpendScope; 8] = [
        SpendScope::Tenant,
        SpendScope::Team,
        SpendScope::Project,
        SpendScope::User,
        SpendScope::ApiKey,
        SpendScope::Model,
        SpendScope::TeamModel,
        SpendScope::ProjectModel,
    ];

    /// Which fields besides the tenant the scope keys on: (team, project, user, api key, model).
    pub const fn fields(self) -> (bool, bool, bool, bool, bool) {
        match self {
            SpendScope::Tenant => (false, false, false, false, false),
            SpendScope::Team => (true, false, false, false, false),
            SpendScope::Project => (true, true, false, false, false),
            SpendScope::User => (false, false, true, false, false),
            SpendScope::ApiKey => (false, false, false, true, false),
            SpendScope::Model => (false, false, false, false, true),
            SpendScope::TeamModel => (true, false, false, false, true),
            SpendScope::ProjectModel => (true, true, false, false, true),
        }
    }

    /// The scope whose fields are exactly the ones set in `key`, if any.
    pub fn of_key(key: &SpendKey) -> Option<SpendScope> {
        let f = (key.team.is_some(), key.project.is_some(), key.user_id.is_some(), key.api_key_id.is_some(), key.model.is_some());
        SpendScope::ALL.into_iter().find(|s| s.fields() == f)
    }
}

/// The attribution of one accepted call.
#[derive(Debug, Clone, Copy)]
pub struct Attribution<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// Team, when known.
    pub team: Option<&'a str>,
    /// Project, when known.
    pub project: Option<&'a str>,
    /// End user, when known.
    pub user_id: Option<&'a str>,
    /// API key, when known.
    pub api_key_id: Option<&'a str>,
    /// The priced model (catalog key).
    pub model: &'a str,
}

/// The key of one spend aggregate: a scope's fields (the others `None`) and an hour bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpendKey {
    /// Tenant.
    pub tenant_id: String,
    /// Team, when known.
    pub team: Option<String>,
    /// Project, when known.
    pub project: Option<String>,
    /// End user, when known.
    pub user_id: Option<String>,
    /// API key, when known.
    pub api_key_id: Option<String>,
    /// The priced model (catalog key), when the scope keys on it.
    pub model: Option<String>,
    /// Start of the hour bucket (unix seconds).
    pub bucket_start: i64,
}

impl SpendKey {
    /// The key of `scope` for a call, or `None` when the call lacks a field the scope needs.
    pub fn for_scope(scope: SpendScope, a: &Attribution<'_>, bucket_start: i64) -> Option<SpendKey> {
        SpendKeyRef::for_scope(scope, a, bucket_start).map(SpendKeyRef::to_owned_key)
    }

}

/// A borrowed [`SpendKey`], so a lookup allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpendKeyRef<'a> {
    tenant_id: &'a str,
    team: Option<&'a str>,
    project: Option<&'a str>,
    user_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    model: Option<&'a str>,
    bucket_start: i64,
}

impl<'a> SpendKeyRef<'a> {
    fn for_scope(scope: SpendScope, a: &Attribution<'a>, bucket_start: i64) -> Option<SpendKeyRef<'a>> {
        let (team, project, user, key, model) = scope.fields();
        fn pick(wanted: bool, v: Option<&str>) -> Result<Option<&str>, ()> {
            match (wanted, v) {
                (false, _) => Ok(None),
                (true, Some(v)) if !v.is_empty() => Ok(Some(v)),
                (true, _) => Err(()),
            }
        }
        Some(SpendKeyRef {
            tenant_id: a.tenant_id,
            team: pick(team, a.team).ok()?,
            project: pick(project, a.project).ok()?,
            user_id: pick(user, a.user_id).ok()?,
            api_key_id: pick(key, a.api_key_id).ok()?,
            model: pick(model, Some(a.model)).ok()?,
            bucket_start,
        })
    }

    fn to_owned_key(self) -> SpendKey {
        SpendKey {
            tenant_id: self.tenant_id.to_owned(),
            team: self.team.map(str::to_owned),
            project: self.project.map(str::to_owned),
            user_id: self.user_id.map(str::to_owned),
            api_key_id: self.api_key_id.map(str::to_owned),
            model: self.model.map(str::to_owned),
            bucket_start: self.bucket_start,
        }
    }
}

/// Marks an absent field in an [`IdKey`].
const NO_ID: u32 = u32::MAX;

/// A [`SpendKey`] with every string replaced by its id in the aggregator's [`Interner`], so a
/// lookup compares six integers instead of up to six strings.
#[derive(Debug, Clone, Copy, Eq)]
struct IdKey {
    /// (tenant, team), (project, user), (API key, model), low id first; [`NO_ID`] when absent.
    /// Packed in pairs so the key is written and read as whole words: built from six 4-byte
    /// stores, the hash's 8-byte loads stalled on store forwarding (17% of `add_call`, perf).
    pairs: [u64; 3],
    bucket_start: i64,
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
    fn new(ids: [u32; 6], bucket_start: i64) -> IdKey {
        let pair = |a: u32, b: u32| u64::from(a) | u64::from(b) << 32;
        IdKey { pairs: [pair(ids[0], ids[1]), pair(ids[2], ids[3]), pair(ids[4], ids[5])], bucket_start }
    }

    /// Which of team, project, user, API key and model the key has, as in
    /// [`SpendScope::fields`].
    fn shape(&self) -> (bool, bool, bool, bool, bool) {
        let ids = self.ids();
        let p = |i: usize| ids[i] != NO_ID;
        (p(1), p(2), p(3), p(4), p(5))
    }

    /// tenant, team, project, user, API key, model; [`NO_ID`] when absent.
    fn ids(&self) -> [u32; 6] {
        let [a, b, c] = self.pairs;
        [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32, c as u32, (c >> 32) as u32]
    }

    #[inline]
    fn hash(&self) -> u64 {
        // Two ids per round: four dependent multiplies instead of seven, eight times a call.
        let h = mix(0x51_7CC1_B727_220A, self.pairs[0]);
        let h = mix(h, self.pairs[1]);
        let h = mix(h, self.pairs[2]);
        mix(h, self.bucket_start as u64)
    }

    /// The ids of the fields `scope` keys on, or `None` when one of them is absent.
    #[inline]
    fn for_scope(scope: SpendScope, full: &[u32; 6], bucket_start: i64) -> Option<IdKey> {
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
struct Interner {
    table: HashTable<u32>,
    names: Vec<Box<str>>,
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
fn short_name_words(s: &str) -> Option<[u64; 3]> {
    let b = s.as_bytes();
    let n = b.len();
    let w8 = |at: usize| b.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map_or(0, u64::from_le_bytes);
    let w4 = |at: usize| b.get(at..at + 4).and_then(|w| <[u8; 4]>::try_from(w).ok()).map_or(0, |w| u64::from(u32::from_le_bytes(w)));
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
    fn intern(&mut self, state: &DefaultHashBuilder, s: &str) -> u32 {
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

    fn id_of(&self, state: &DefaultHashBuilder, s: &str) -> Option<u32> {
        self.table.find(state.hash_one(s), |&id| &*self.names[id as usize] == s).copied()
    }

    fn name(&self, id: u32) -> Option<String> {
        (id != NO_ID).then(|| self.names[id as usize].to_string())
    }
}

#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    key: IdKey,
    totals: SpendTotals,
    touched: bool,
}


impl<'a> Attribution<'a> {
    /// The attribution of an event priced as `model`.
    pub fn of(event: &'a UsageEvent, model: &'a str) -> Attribution<'a> {
        Attribution {
            tenant_id: &event.tenant_id,
            team: event.team.as_deref(),
            project: event.project.as_deref(),
            user_id: event.user_id.as_deref(),
            api_key_id: event.api_key_id.as_deref(),
            model,
        }
    }

    /// The attribution of a borrowed event priced as `model`.
    pub fn of_view(event: &UsageEventRef<'a>, model: &'a str) -> Attribution<'a> {
        Attribution {
            tenant_id: event.tenant_id,
            team: event.team,
            project: event.project,
            user_id: event.user_id,
            api_key_id: event.api_key_id,
            model,
        }
    }
}

/// Cumulative totals of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendTotals {
    /// Charged cost.
    pub cost: Money,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Calls.
    pub requests: u64,
    /// Highest source offset included.
    pub last_offset: i64,
    /// Latest event time included (unix microseconds).
    pub max_event_time_micros: i64,
}

impl SpendTotals {
    /// Adds one call.
    pub fn add(&mut self, cost: Money, tokens: &TokenCounts, offset: i64, event_micros: i64) -> Result<(), MoneyOverflow> {
        self.cost = self.cost.checked_add(cost)?;
        self.input_tokens = self.input_tokens.saturating_add(tokens.input);
        self.output_tokens = self.output_tokens.saturating_add(tokens.output);
        self.requests += 1;
        self.last_offset = self.last_offset.max(offset);
        self.max_event_time_micros = self.max_event_time_micros.max(event_micros);
        Ok(())
    }

    /// Merges another total of the same key.
    pub fn merge(&mut self, other: &SpendTotals) -> Result<(), MoneyOverflow> {
        self.cost = self.cost.checked_add(other.cost)?;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.requests += other.requests;
        self.last_offset = self.last_offset.max(other.last_offset);
        self.max_event_time_micros = self.max_event_time_micros.max(other.max_event_time_micros);
        Ok(())
    }
}

/// Cumulative totals per key, with the set of keys touched since the last publication.
///
/// A call adds to the keys of the scopes with a user or an API key directly, and to one
/// pending *cell* keyed by (tenant, team, project, model, bucket); the cells are expanded into
/// the other scopes' keys ([`SpendAggregator::settle`]) once per batch or every
/// [`CELL_LIMIT`] cells. A batch holds far fewer cells than calls, so a call costs three
/// lookups instead of eight. Every read sees the pending cells too.
#[derive(Default, Clone)]
pub struct SpendAggregator {
    /// Totals per key (hashed by [`IdKey::hash`]), and whether touched since the last publication.
    slots: HashTable<Slot>,
    /// Pending totals per cell (an [`IdKey`] without user and API key), not yet in `slots`.
    cells: HashTable<Slot>,
    /// The attribution strings of the keys held.
    names: Interner,
    state: DefaultHashBuilder,
}

impl std::fmt::Debug for SpendAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendAggregator").field("keys", &self.slots.len()).finish_non_exhaustive()
    }
}

/// Pending cells at which [`SpendAggregator::add_call`] settles them, so memory stays bounded
/// without a caller's [`SpendAggregator::settle`].
pub const CELL_LIMIT: usize = 16_384;

/// Whether a scope's keys are derived from cells: it keys on neither user nor API key.
#[inline(always)]
const fn from_cells(scope: SpendScope) -> bool {
    let (_, _, user, key, _) = scope.fields();
    !user && !key
}

/// The keys a cell (or a call, by its `ids`) adds to in the scopes derived from cells.
#[inline(always)]
fn cell_keys(ids: &[u32; 6], bucket_start: i64) -> impl Iterator<Item = IdKey> + '_ {
    SpendScope::ALL.into_iter().filter(|s| from_cells(*s)).filter_map(move |scope| IdKey::for_scope(scope, ids, bucket_start))
}

/// Adds `totals` to `key`'s slot in `table` (a new slot when absent) and marks it touched.
#[inline(always)]
fn merge_into(table: &mut HashTable<Slot>, key: IdKey, totals: &SpendTotals) -> Result<(), MoneyOverflow> {
    let hash = key.hash();
    match table.find_mut(hash, |s| s.hash == hash && s.key == key) {
        Some(slot) => {
            slot.totals.merge(totals)?;
            slot.touched = true;
        }
        None => {
            table.insert_unique(hash, Slot { hash, key, totals: *totals, touched: true }, |s| s.hash);
        }
    }
    Ok(())
}

/// Adds one call to `key`'s slot in `table` (a new slot when absent) and marks it touched.
#[inline(always)]
fn add_into(table: &mut HashTable<Slot>, key: IdKey, cost: Money, tokens: &TokenCounts, offset: i64, event_micros: i64) -> Result<(), MoneyOverflow> {
    let mut call = SpendTotals::default();
    call.add(cost, tokens, offset, event_micros)?;
    merge_into(table, key, &call)
}

impl SpendAggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    #[inline(always)]
    fn intern_opt(&mut self, s: Option<&str>) -> u32 {
        match s {
            Some(s) if !s.is_empty() => self.names.intern(&self.state, s),
            _ => NO_ID,
        }
    }

    fn intern_key(&mut self, key: &SpendKey) -> IdKey {
        let tenant = self.names.intern(&self.state, &key.tenant_id);
        let rest = [&key.team, &key.project, &key.user_id, &key.api_key_id, &key.model]
            .map(|f| f.as_deref().map_or(NO_ID, |s| self.names.intern(&self.state, s)));
        IdKey::new([tenant, rest[0], rest[1], rest[2], rest[3], rest[4]], key.bucket_start)
    }

    /// The ids of `key`, or `None` when one of its strings is unknown (so the key is too).
    fn id_key(&self, key: &SpendKey) -> Option<IdKey> {
        let id = |s: &Option<String>| match s {
            Some(s) => self.names.id_of(&self.state, s),
            None => Some(NO_ID),
        };
        Some(IdKey::new(
            [
                self.names.id_of(&self.state, &key.tenant_id)?,
                id(&key.team)?,
                id(&key.project)?,
                id(&key.user_id)?,
                id(&key.api_key_id)?,
                id(&key.model)?,
            ],
            key.bucket_start,
        ))
    }

    fn spend_key(&self, key: &IdKey) -> SpendKey {
        let ids = key.ids();
        SpendKey {
            tenant_id: self.names.name(ids[0]).unwrap_or_default(),
            team: self.names.name(ids[1]),
            project: self.names.name(ids[2]),
            user_id: self.names.name(ids[3]),
            api_key_id: self.names.name(ids[4]),
            model: self.names.name(ids[5]),
            bucket_start: key.bucket_start,
        }
    }

    /// Adds one priced call to one key.
    pub fn add(
        &mut self,
        key: SpendKey,
        cost: Money,
        tokens: &TokenCounts,
        offset: i64,
        event_micros: i64,
    ) -> Result<(), MoneyOverflow> {
        let key = self.intern_key(&key);
        add_into(&mut self.slots, key, cost, tokens, offset, event_micros)
    }

    /// Adds one priced call to the key of every scope it has the fields for.
    pub fn add_call(
        &mut self,
        attribution: &Attribution<'_>,
        bucket_start: i64,
        cost: Money,
        tokens: &TokenCounts,
        offset: i64,
        event_micros: i64,
    ) -> Result<(), MoneyOverflow> {
        let full = [
            self.names.intern(&self.state, attribution.tenant_id),
            self.intern_opt(attribution.team),
            self.intern_opt(attribution.project),
            self.intern_opt(attribution.user_id),
            self.intern_opt(attribution.api_key_id),
            self.intern_opt(Some(attribution.model)),
        ];
        for scope in SpendScope::ALL.into_iter().filter(|s| !from_cells(*s)) {
            if let Some(key) = IdKey::for_scope(scope, &full, bucket_start) {
                add_into(&mut self.slots, key, cost, tokens, offset, event_micros)?;
            }
        }
        let cell = IdKey::new([full[0], full[1], full[2], NO_ID, NO_ID, full[5]], bucket_start);
        add_into(&mut self.cells, cell, cost, tokens, offset, event_micros)?;
        if self.cells.len() >= CELL_LIMIT {
            self.settle()?;
        }
        Ok(())
    }

    /// Adds the pending cells to the keys of the scopes derived from them. Reads see the cells
    /// either way; settling once per batch keeps them few. After an overflow the cells are
    /// gone and only partly added: the aggregator is unusable, as after an overflowing
    /// [`SpendAggregator::add_call`] (the processor stops with an internal error).
    pub fn settle(&mut self) -> Result<(), MoneyOverflow> {
        let mut cells = std::mem::take(&mut self.cells);
        let mut result = Ok(());
        for cell in cells.drain() {
            if result.is_ok() {
                result = self.add_cell(&cell.key.ids(), cell.key.bucket_start, &cell.totals);
            }
        }
        // The emptied table keeps its capacity for the next batch.
        self.cells = cells;
        result
    }

    /// Adds a cell's totals (its ids from this aggregator's interner) to its scopes' keys.
    #[inline]
    fn add_cell(&mut self, ids: &[u32; 6], bucket_start: i64, totals: &SpendTotals) -> Result<(), MoneyOverflow> {
        for key in cell_keys(ids, bucket_start) {
            merge_into(&mut self.slots, key, totals)?;
        }
        Ok(())
    }

    /// Sets a key's totals (restored from the durable ledger) and marks it touched. Pending
    /// cells are settled first: the restored totals replace what they held.
    pub fn restore(&mut self, key: SpendKey, totals: SpendTotals) -> Result<(), MoneyOverflow> {
        self.settle()?;
        let key = self.intern_key(&key);
        let hash = key.hash();
        match self.slots.find_mut(hash, |s| s.hash == hash && s.key == key) {
            Some(slot) => {
                slot.totals = totals;
                slot.touched = true;
            }
            None => {
                self.slots.insert_unique(hash, Slot { hash, key, totals, touched: true }, |s| s.hash);
            }
        }
        Ok(())
    }

    /// The cumulative totals of a key (with its share of the pending cells, which it scans:
    /// for tests and tools, not a per-event path).
    pub fn get(&self, spend_key: &SpendKey) -> Result<Option<SpendTotals>, MoneyOverflow> {
        let Some(key) = self.id_key(spend_key) else { return Ok(None) };
        let hash = key.hash();
        let mut totals = self.slots.find(hash, |s| s.hash == hash && s.key == key).map(|s| s.totals);
        if let Some(scope) = SpendScope::of_key(spend_key) {
            if from_cells(scope) {
                for cell in self.cells.iter() {
                    if IdKey::for_scope(scope, &cell.key.ids(), cell.key.bucket_start) == Some(key) {
                        totals.get_or_insert_with(SpendTotals::default).merge(&cell.totals)?;
                    }
                }
            }
        }
        Ok(totals)
    }

    /// The keys touched since the last call, with their cumulative totals, in key order.
    /// Settles the pending cells first.
    pub fn take_touched(&mut self) -> Result<Vec<(SpendKey, SpendTotals)>, MoneyOverflow> {
        self.settle()?;
        let mut touched: Vec<(IdKey, SpendTotals)> = Vec::new();
        for s in self.slots.iter_mut().filter(|s| s.touched) {
            s.touched = false;
            touched.push((s.key, s.totals));
        }
        let mut out: Vec<(SpendKey, SpendTotals)> = touched.iter().map(|(k, t)| (self.spend_key(k), *t)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Forgets buckets that started before `bucket_start` (unix seconds), and the names only
    /// they used.
    pub fn evict_before(&mut self, bucket_start: i64) {
        let before = self.slots.len() + self.cells.len();
        self.slots.retain(|s| s.key.bucket_start >= bucket_start);
        self.cells.retain(|s| s.key.bucket_start >= bucket_start);
        if self.slots.len() + self.cells.len() < before {
            self.compact_names();
        }
    }

    /// Rebuilds the interner from the names the remaining keys use (after an eviction, about
    /// once an hour), so a stream of ever new users or keys does not grow it without bound.
    fn compact_names(&mut self) {
        let old = std::mem::take(&mut self.names);
        let mut remap: Vec<u32> = vec![NO_ID; old.names.len()];
        for table in [&mut self.slots, &mut self.cells] {
            let mut slots = std::mem::take(table);
            for slot in slots.iter_mut() {
                let mut ids = slot.key.ids();
                for id in ids.iter_mut().filter(|id| **id != NO_ID) {
                    let new = &mut remap[*id as usize];
                    if *new == NO_ID {
                        *new = self.names.intern(&self.state, &old.names[*id as usize]);
                    }
                    *id = *new;
                }
                slot.key = IdKey::new(ids, slot.key.bucket_start);
                slot.hash = slot.key.hash();
            }
            // Hashes changed with the ids: re-insert every slot.
            for slot in slots.drain() {
                table.insert_unique(slot.hash, slot, |s| s.hash);
            }
        }
    }

    /// Adds the totals of every key of `other` whose bucket start `keep` accepts, and marks
    /// those keys touched: the processor aggregates a batch on its own and merges it into the
    /// durable totals once the batch is in the ledger.
    pub fn merge_from(&mut self, other: &SpendAggregator, keep: impl Fn(i64) -> bool) -> Result<(), MoneyOverflow> {
        let ids_here = |this: &mut SpendAggregator, from: &IdKey| {
            let mut ids = from.ids();
            for id in ids.iter_mut().filter(|id| **id != NO_ID) {
                *id = this.names.intern(&this.state, &other.names.names[*id as usize]);
            }
            ids
        };
        for from in other.slots.iter().filter(|s| keep(s.key.bucket_start)) {
            let ids = ids_here(self, &from.key);
            merge_into(&mut self.slots, IdKey::new(ids, from.key.bucket_start), &from.totals)?;
        }
        for cell in other.cells.iter().filter(|s| keep(s.key.bucket_start)) {
            let ids = ids_here(self, &cell.key);
            self.add_cell(&ids, cell.key.bucket_start, &cell.totals)?;
        }
        Ok(())
    }

    /// The distinct bucket starts of the keys held, ascending.
    pub fn bucket_starts(&self) -> Vec<i64> {
        let mut starts: Vec<i64> = self.slots.iter().chain(self.cells.iter()).map(|s| s.key.bucket_start).collect();
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// Number of keys held (with those only the pending cells hold so far).
    pub fn len(&self) -> usize {
        let mut only_in_cells: HashTable<IdKey> = HashTable::new();
        for cell in self.cells.iter() {
            for key in cell_keys(&cell.key.ids(), cell.key.bucket_start) {
                let hash = key.hash();
                if self.slots.find(hash, |s| s.hash == hash && s.key == key).is_none() && only_in_cells.find(hash, |k| *k == key).is_none() {
                    only_in_cells.insert_unique(hash, key, IdKey::hash);
                }
            }
        }
        self.slots.len() + only_in_cells.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.cells.is_empty()
    }

    /// Sum of the cost of every key of one scope (every call counts once per scope).
    pub fn total_cost(&self, scope: SpendScope) -> Result<Money, MoneyOverflow> {
        let fields = scope.fields();
        let held = Money::checked_sum(self.slots.iter().filter(|s| s.key.shape() == fields).map(|s| s.totals.cost))?;
        let pending = if from_cells(scope) {
            let has_fields = |c: &&Slot| IdKey::for_scope(scope, &c.key.ids(), c.key.bucket_start).is_some();
            Money::checked_sum(self.cells.iter().filter(has_fields).map(|c| c.totals.cost))?
        } else {
            Money::ZERO
        };
        held.checked_add(pending)
    }

    /// Number of distinct attribution strings held (bounded by the keys held).
    pub fn names_len(&self) -> usize {
        self.names.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(tenant: &str, bucket: i64) -> SpendKey {
        SpendKey {
            tenant_id: tenant.into(),
            team: None,
            project: None,
            user_id: None,
            api_key_id: None,
            model: None,
            bucket_start: bucket,
        }
    }

    #[test]
    fn short_name_words_see_every_byte() {
        // With the length fixed, changing any one byte changes the words: the windows cover
        // every position at every length the cache takes.
        for n in 0..=24usize {
            let base: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let words = short_name_words(&base).expect("short");
            for at in 0..n {
                let mut changed = base.clone().into_bytes();
                changed[at] = b'Z';
                let changed = String::from_utf8(changed).unwrap();
                assert_ne!(short_name_words(&changed), Some(words), "length {n}, byte {at}");
            }
        }
        let long = "x".repeat(25);
        assert_eq!(short_name_words(&long), None);
    }

    proptest! {
        /// The name cache never gives two names one id, nor one name two ids: names from a
        /// two-letter alphabet collide in the cache's slots and share most of their bytes.
        #[test]
        fn interned_ids_are_equal_exactly_when_names_are(names in prop::collection::vec("[ab]{0,30}", 1..300)) {
            let state = DefaultHashBuilder::default();
            let mut interner = Interner::default();
            let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
            for _round in 0..2 {
                for name in &names {
                    let id = interner.intern(&state, name);
                    let first = *seen.entry(name.clone()).or_insert(id);
                    prop_assert_eq!(id, first, "{:?} got two ids", name);
                    let stored = interner.name(id);
                    prop_assert_eq!(stored.as_deref(), Some(name.as_str()));
                }
            }
            let distinct: std::collections::HashSet<u32> = seen.values().copied().collect();
            prop_assert_eq!(distinct.len(), seen.len());
        }
    }

    #[test]
    fn add_call_adds_to_exactly_the_keys_for_scope_gives() {
        // Every combination of present, absent and empty fields.
        let choices = [None, Some(""), Some("x")];
        let t = TokenCounts::default();
        for team in choices {
            for project in choices {
                for user_id in choices {
                    for api_key_id in choices {
                        for model in ["", "m"] {
                            let a = Attribution { tenant_id: "a", team, project, user_id, api_key_id, model };
                            let mut agg = SpendAggregator::new();
                            agg.add_call(&a, 3600, Money::from_picos(1), &t, 1, 0).unwrap();
                            let mut expected: Vec<SpendKey> =
                                SpendScope::ALL.iter().filter_map(|s| SpendKey::for_scope(*s, &a, 3600)).collect();
                            expected.sort();
                            let touched = agg.take_touched().unwrap();
                            // Each key once, and the call counted once in it.
                            assert!(touched.iter().all(|(_, totals)| totals.requests == 1), "{a:?}: {touched:?}");
                            let got: Vec<SpendKey> = touched.into_iter().map(|(k, _)| k).collect();
                            assert_eq!(got, expected, "{a:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_call_counts_once_in_every_scope_it_has_fields_for() {
        let mut agg = SpendAggregator::new();
        let t = TokenCounts::default();
        let full = Attribution {
            tenant_id: "a",
            team: Some("t"),
            project: Some("p"),
            user_id: Some("u"),
            api_key_id: Some("k"),
            model: "m",
        };
        agg.add_call(&full, 0, Money::from_picos(5), &t, 1, 0).unwrap();
        let bare = Attribution { team: None, project: None, user_id: None, api_key_id: None, ..full };
        agg.add_call(&bare, 0, Money::from_picos(7), &t, 2, 0).unwrap();
        for scope in SpendScope::ALL {
            let expected = match scope {
                SpendScope::Tenant | SpendScope::Model => 12,
                _ => 5,
            };
            assert_eq!(agg.total_cost(scope).unwrap().picos(), expected, "{scope:?}");
        }
        assert_eq!(agg.len(), 8);

        // A restored key (from the ledger) is the same slot a later call adds to.
        let mut agg = SpendAggregator::new();
        for scope in SpendScope::ALL {
            let key = SpendKey::for_scope(scope, &full, 0).unwrap();
            agg.restore(key, SpendTotals { cost: Money::from_picos(100), requests: 1, ..SpendTotals::default() }).unwrap();
        }
        agg.add_call(&full, 0, Money::from_picos(5), &t, 1, 0).unwrap();
        assert_eq!(agg.len(), 8);
        for scope in SpendScope::ALL {
            let key = SpendKey::for_scope(scope, &full, 0).unwrap();
            assert_eq!(agg.get(&key).unwrap().unwrap().cost.picos(), 105, "{scope:?}");
        }
    }

    #[test]
    fn merging_a_batch_equals_adding_its_calls() {
        let t = TokenCounts { input: 3, output: 4, ..TokenCounts::default() };
        let a = Attribution { tenant_id: "a", team: Some("t"), project: None, user_id: Some("u"), api_key_id: None, model: "m" };
        let b = Attribution { tenant_id: "b", team: None, project: Some("p"), user_id: None, api_key_id: Some("k"), model: "n" };
        let calls = [(&a, 0, 5, 1), (&b, 3600, 7, 2), (&a, 3600, 11, 3), (&b, 3600, 13, 4), (&a, 0, 17, 5)];
        let mut all = SpendAggregator::new();
        let mut durable = SpendAggregator::new();
        let mut batch = SpendAggregator::new();
        // The durable side knows other names first, so the two interners disagree on ids.
        durable.add_call(&b, 7200, Money::from_picos(1), &t, 0, 0).unwrap();
        all.add_call(&b, 7200, Money::from_picos(1), &t, 0, 0).unwrap();
        for (i, (attr, bucket, cost, offset)) in calls.into_iter().enumerate() {
            all.add_call(attr, bucket, Money::from_picos(cost), &t, offset, offset * 10).unwrap();
            let side = if i < 2 { &mut durable } else { &mut batch };
            side.add_call(attr, bucket, Money::from_picos(cost), &t, offset, offset * 10).unwrap();
        }
        durable.take_touched().unwrap();
        durable.merge_from(&batch, |_| true).unwrap();
        all.take_touched().unwrap();
        // Every key of the batch is touched, with its cumulative totals.
        let touched = durable.take_touched().unwrap();
        assert_eq!(touched.len(), batch.len());
        for (key, totals) in &touched {
            assert_eq!(all.get(key).unwrap().as_ref(), Some(totals), "{key:?}");
        }
        assert_eq!(durable.len(), all.len());

        assert_eq!(batch.bucket_starts(), vec![0, 3600]);

        // A bucket the caller restores from the ledger instead is left out.
        let mut durable = SpendAggregator::new();
        durable.merge_from(&batch, |bucket| bucket != 3600).unwrap();
        assert_eq!(durable.total_cost(SpendScope::Tenant).unwrap().picos(), 17);
    }

    #[test]
    fn pending_cells_settle_by_themselves_at_the_limit() {
        let mut agg = SpendAggregator::new();
        let t = TokenCounts::default();
        let models: Vec<String> = (0..CELL_LIMIT + 10).map(|i| format!("m{i}")).collect();
        for m in &models {
            let a = Attribution { tenant_id: "a", team: Some("t"), project: None, user_id: None, api_key_id: None, model: m };
            agg.add_call(&a, 0, Money::from_picos(2), &t, 1, 0).unwrap();
        }
        assert_eq!(agg.cells.len(), 10, "settled once, at {CELL_LIMIT} cells");
        let tenant = key("a", 0);
        assert_eq!(agg.get(&tenant).unwrap().unwrap().requests, models.len() as u64);
        assert_eq!(agg.total_cost(SpendScope::TeamModel).unwrap().picos(), 2 * models.len() as i128);
        // Tenant, team, and per model: Model and TeamModel.
        assert_eq!(agg.len(), 2 + 2 * models.len());
    }

    #[test]
    fn buckets_are_hours() {
        assert_eq!(hour_bucket(0), 0);
        assert_eq!(hour_bucket(3599), 0);
        assert_eq!(hour_bucket(3600), 3600);
        assert_eq!(hour_bucket(-1), -3600);
    }

    #[test]
    fn touched_keys_are_reported_once_with_cumulative_totals() {
        let mut agg = SpendAggregator::new();
        let t = TokenCounts { input: 10, output: 5, ..TokenCounts::default() };
        agg.add(key("a", 0), Money::from_picos(7), &t, 1, 10).unwrap();
        agg.add(key("a", 0), Money::from_picos(3), &t, 2, 5).unwrap();
        let touched = agg.take_touched().unwrap();
        assert_eq!(touched.len(), 1);
        assert_eq!(touched[0].1.cost, Money::from_picos(10));
        assert_eq!(touched[0].1.requests, 2);
        assert_eq!(touched[0].1.last_offset, 2);
        assert_eq!(touched[0].1.max_event_time_micros, 10);
        assert!(agg.take_touched().unwrap().is_empty());
        agg.add(key("a", 0), Money::from_picos(1), &t, 3, 11).unwrap();
        assert_eq!(agg.take_touched().unwrap()[0].1.cost, Money::from_picos(11), "cumulative, not a delta");
    }

    proptest! {
        #[test]
        fn aggregation_preserves_the_exact_total(costs in prop::collection::vec((0u8..4, 0i64..10_000_000_000_000), 0..200)) {
            let mut agg = SpendAggregator::new();
            let t = TokenCounts::default();
            let mut expected = 0i128;
            for (i, (tenant, picos)) in costs.iter().enumerate() {
                agg.add(key(&tenant.to_string(), (i as i64 % 3) * 3600), Money::from_picos(i128::from(*picos)), &t, i as i64, 0).unwrap();
                expected += i128::from(*picos);
            }
            prop_assert_eq!(agg.total_cost(SpendScope::Tenant).unwrap().picos(), expected);
            let published: i128 = agg.take_touched().unwrap().iter().map(|(_, t)| t.cost.picos()).sum();
            prop_assert_eq!(published, expected);
        }
    }

    #[test]
    fn eviction_keeps_the_rest_and_forgets_names_only_evicted_keys_used() {
        let mut agg = SpendAggregator::new();
        let t = TokenCounts::default();
        let users: Vec<String> = (0..110).map(|i| format!("u{i}")).collect();
        for (i, u) in users.iter().enumerate() {
            let a = Attribution { tenant_id: "a", team: Some("t"), project: None, user_id: Some(u), api_key_id: None, model: "m" };
            let bucket = if i < 100 { 0 } else { 3600 };
            agg.add_call(&a, bucket, Money::from_picos(1), &t, i as i64, 0).unwrap();
        }
        let names_before = agg.names_len();
        agg.evict_before(3600);
        // a, t, m and the ten users of the kept bucket.
        assert_eq!(agg.names_len(), 13, "was {names_before}");
        let u105 = Attribution { tenant_id: "a", team: Some("t"), project: None, user_id: Some("u105"), api_key_id: None, model: "m" };
        let key = SpendKey::for_scope(SpendScope::User, &u105, 3600).unwrap();
        assert_eq!(agg.get(&key).unwrap().unwrap().requests, 1);
        let tenant = SpendKey::for_scope(SpendScope::Tenant, &u105, 3600).unwrap();
        assert_eq!(agg.get(&tenant).unwrap().unwrap().requests, 10);
        let len = agg.len();
        agg.add_call(&u105, 3600, Money::from_picos(1), &t, 200, 0).unwrap();
        assert_eq!(agg.len(), len, "a call after compaction adds to the same keys");
        assert_eq!(agg.get(&tenant).unwrap().unwrap().requests, 11);
        let old = SpendKey::for_scope(SpendScope::Tenant, &u105, 0).unwrap();
        assert!(agg.get(&old).unwrap().is_none());
    }

    fn attribution_strategy() -> impl Strategy<Value = (u8, Option<u8>, Option<u8>, Option<u8>, Option<u8>, u8)> {
        (0u8..3, prop::option::of(0u8..3), prop::option::of(0u8..3), prop::option::of(0u8..4), prop::option::of(0u8..2), 0u8..3)
    }

    proptest! {
        /// The interned aggregator agrees with a plain map of owned keys, through evictions.
        #[test]
        fn agrees_with_a_reference_map(
            ops in prop::collection::vec((attribution_strategy(), 0i64..3, 0i64..1_000_000, 0u8..10), 0..150),
        ) {
            use std::collections::BTreeMap;
            let name = |prefix: &str, v: u8| if v == 0 { String::new() } else { format!("{prefix}{v}") };
            let mut agg = SpendAggregator::new();
            let mut reference: BTreeMap<SpendKey, (i128, u64)> = BTreeMap::new();
            let t = TokenCounts::default();
            for (i, ((tenant, team, project, user, key, model), bucket, picos, evict)) in ops.into_iter().enumerate() {
                if evict == 0 {
                    let from = bucket * 3600;
                    agg.evict_before(from);
                    reference.retain(|k, _| k.bucket_start >= from);
                    continue;
                }
                if evict == 1 {
                    agg.settle().unwrap();
                    continue;
                }
                let (team, project, user, key) =
                    (team.map(|v| name("t", v)), project.map(|v| name("p", v)), user.map(|v| name("u", v)), key.map(|v| name("k", v)));
                let (tenant, model) = (format!("a{tenant}"), name("m", model));
                let a = Attribution {
                    tenant_id: &tenant,
                    team: team.as_deref(),
                    project: project.as_deref(),
                    user_id: user.as_deref(),
                    api_key_id: key.as_deref(),
                    model: &model,
                };
                agg.add_call(&a, bucket * 3600, Money::from_picos(i128::from(picos)), &t, i as i64, 0).unwrap();
                for scope in SpendScope::ALL {
                    if let Some(k) = SpendKey::for_scope(scope, &a, bucket * 3600) {
                        let e = reference.entry(k).or_default();
                        e.0 += i128::from(picos);
                        e.1 += 1;
                    }
                }
            }
            // With the cells pending, then settled: reads agree either way.
            for settled in [false, true] {
                if settled {
                    agg.settle().unwrap();
                }
                prop_assert_eq!(agg.len(), reference.len(), "settled: {}", settled);
                for (k, (cost, requests)) in &reference {
                    let got = agg.get(k).unwrap();
                    prop_assert!(got.is_some(), "missing {:?} (settled: {})", k, settled);
                    let got = got.unwrap();
                    prop_assert_eq!(got.cost.picos(), *cost);
                    prop_assert_eq!(got.requests, *requests);
                }
                for scope in SpendScope::ALL {
                    let expected: i128 = reference.iter().filter(|(k, _)| SpendScope::of_key(k) == Some(scope)).map(|(_, (c, _))| c).sum();
                    prop_assert_eq!(agg.total_cost(scope).unwrap().picos(), expected, "{:?} settled: {}", scope, settled);
                }
            }
            let touched: BTreeMap<SpendKey, i128> = agg.take_touched().unwrap().into_iter().map(|(k, t)| (k, t.cost.picos())).collect();
            for k in touched.keys() {
                prop_assert!(reference.contains_key(k), "published a key the reference lacks: {:?}", k);
            }
        }
    }
}
