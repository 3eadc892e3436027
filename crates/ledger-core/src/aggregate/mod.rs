//! Windowed spend aggregation: cumulative totals per attribution key and hour bucket.
//!
//! The processor keeps one [`SpendAggregator`] per source partition and adds each row once it
//! is durable in the ledger; after every committed batch it publishes the cumulative totals of
//! the keys the batch touched ([`SpendAggregator::take_touched`]). Totals are cumulative, not
//! deltas, so a lost or repeated update heals itself.

use hashbrown::{DefaultHashBuilder, HashTable};

mod interner;

use interner::{IdKey, Interner, NO_ID};

use crate::attribution::{Attribution, AttributionKey};
use crate::event::TokenCounts;
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
    pub fn of_key<S: AsRef<str>>(key: &AttributionKey<S>) -> Option<SpendScope> {
        let f = key.set_fields();
        SpendScope::ALL.into_iter().find(|s| s.fields() == f)
    }
}

/// The key of one spend aggregate: a scope's fields (the others `None`) and an hour bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpendKey {
    /// The attribution fields the scope keys on.
    pub key: AttributionKey,
    /// Start of the hour bucket (unix seconds).
    pub bucket_start: i64,
}

impl SpendKey {
    /// The key of `scope` for a call, or `None` when the call lacks a field the scope needs.
    pub fn for_scope(scope: SpendScope, call: &AttributionKey<&str>, bucket_start: i64) -> Option<SpendKey> {
        scope_of(scope, call).map(|key| SpendKey { key: key.to_owned_key(), bucket_start })
    }
}

/// The fields of `call` that `scope` keys on, or `None` when the call lacks one of them.
fn scope_of<'a>(scope: SpendScope, call: &AttributionKey<&'a str>) -> Option<AttributionKey<&'a str>> {
    let (team, project, user, key, model) = scope.fields();
    fn pick(wanted: bool, v: Option<&str>) -> Result<Option<&str>, ()> {
        match (wanted, v) {
            (false, _) => Ok(None),
            (true, Some(v)) if !v.is_empty() => Ok(Some(v)),
            (true, _) => Err(()),
        }
    }
    let a = &call.attribution;
    Some(AttributionKey {
        attribution: Attribution {
            tenant_id: a.tenant_id,
            team: pick(team, a.team).ok()?,
            project: pick(project, a.project).ok()?,
            user_id: pick(user, a.user_id).ok()?,
            api_key_id: pick(key, a.api_key_id).ok()?,
        },
        model: pick(model, call.model).ok()?,
    })
}

#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    key: IdKey,
    totals: SpendTotals,
    touched: bool,
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
fn add_into(
    table: &mut HashTable<Slot>,
    key: IdKey,
    cost: Money,
    tokens: &TokenCounts,
    offset: i64,
    event_micros: i64,
) -> Result<(), MoneyOverflow> {
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
        let ids = key.key.values().map(|f| f.map_or(NO_ID, |s| self.names.intern(&self.state, s)));
        IdKey::new(ids, key.bucket_start)
    }

    /// The ids of `key`, or `None` when one of its strings is unknown (so the key is too).
    fn id_key(&self, key: &SpendKey) -> Option<IdKey> {
        let mut ids = [NO_ID; 6];
        for (id, value) in ids.iter_mut().zip(key.key.values()) {
            if let Some(s) = value {
                *id = self.names.id_of(&self.state, s)?;
            }
        }
        Some(IdKey::new(ids, key.bucket_start))
    }

    fn spend_key(&self, key: &IdKey) -> SpendKey {
        let ids = key.ids();
        SpendKey {
            key: AttributionKey {
                attribution: Attribution {
                    tenant_id: self.names.name(ids[0]).unwrap_or_default(),
                    team: self.names.name(ids[1]),
                    project: self.names.name(ids[2]),
                    user_id: self.names.name(ids[3]),
                    api_key_id: self.names.name(ids[4]),
                },
                model: self.names.name(ids[5]),
            },
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
        call: &AttributionKey<&str>,
        bucket_start: i64,
        cost: Money,
        tokens: &TokenCounts,
        offset: i64,
        event_micros: i64,
    ) -> Result<(), MoneyOverflow> {
        let a = &call.attribution;
        let full = [
            self.names.intern(&self.state, a.tenant_id),
            self.intern_opt(a.team),
            self.intern_opt(a.project),
            self.intern_opt(a.user_id),
            self.intern_opt(a.api_key_id),
            self.intern_opt(call.model),
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
        if let Some(scope) = SpendScope::of_key(&spend_key.key) {
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
                if self.slots.find(hash, |s| s.hash == hash && s.key == key).is_none()
                    && only_in_cells.find(hash, |k| *k == key).is_none()
                {
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
mod tests;
