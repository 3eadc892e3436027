//! One catalog source: its priceable entries, keyed by model name, and the name rules that find
//! the entry of an event's model.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use super::forms::{OffPeak, TierRange};
use super::table::PriceTable;
use crate::event::{EventTime, RejectReason, Rejection, TokenCounts};
use crate::pricing::{FieldSet, PriceField, PriceVariants, ResolvedPrices};

/// One priceable model of a source: only the fields pricing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub(super) key: Arc<str>,
    pub(super) litellm_provider: Option<Box<str>>,
    /// The entry's own price fields (an alias: its target's), indexed by [`PriceField::index`];
    /// the reasoning field only ever has a plain price.
    pub(super) prices: FieldSet,
    /// The target of an `alias_of` entry.
    pub(super) alias_of: Option<Arc<str>>,
    /// `tiered_pricing`, ascending (empty when the entry has none).
    pub(super) tiered: Arc<[TierRange]>,
    /// `off_peak_pricing`.
    pub(super) off_peak: Option<Arc<OffPeak>>,
    /// The resolved prices: per `tiered_pricing` tier (one table when untiered), the plain
    /// prices, then (with `off_peak_pricing`) the off-peak ones.
    pub(super) tables: Arc<[PriceTable]>,
    /// The price version of a line it prices (the source's, plus `;alias_of=X`).
    pub(super) version: Arc<str>,
    /// The same with `;off_peak`, when the entry has off-peak prices.
    pub(super) version_off_peak: Option<Arc<str>>,
    /// The most tokens an event of this model may carry.
    pub(super) limits: TokenLimits,
}

/// The most input and output tokens an event of a model may carry before it is
/// `implausible_tokens`: twice the catalog's `max_input_tokens` and `max_output_tokens` (or
/// `max_tokens`), a margin for catalogs that lag behind a model's context growing. Without a
/// limit in the catalog only the acceptance rules' absolute cap applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// Most input tokens (u64::MAX: no limit).
    pub input: u64,
    /// Most output tokens (u64::MAX: no limit).
    pub output: u64,
}

/// The factor applied to a catalog limit.
pub const LIMIT_MARGIN: u64 = 2;

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits { input: u64::MAX, output: u64::MAX }
    }
}

impl TokenLimits {
    /// The limits of a catalog entry's `max_input_tokens` and output limit, with the margin.
    pub fn with_margin(max_input: Option<u64>, max_output: Option<u64>) -> Self {
        let widen = |l: Option<u64>| l.map_or(u64::MAX, |n| n.saturating_mul(LIMIT_MARGIN));
        TokenLimits { input: widen(max_input), output: widen(max_output) }
    }
}

impl CatalogEntry {
    /// The entry's key (the ledger's `model`).
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// LiteLLM's `litellm_provider`, when the entry has one.
    pub fn litellm_provider(&self) -> Option<&str> {
        self.litellm_provider.as_deref()
    }

    /// Every variant of one price field (of the entry itself: before `tiered_pricing` or
    /// `off_peak_pricing` replace any).
    pub fn field(&self, field: PriceField) -> &PriceVariants {
        &self.prices[field.index()]
    }

    /// The target of an `alias_of` entry.
    pub fn alias_of(&self) -> Option<&Arc<str>> {
        self.alias_of.as_ref()
    }

    /// The `tiered_pricing` tiers, ascending (empty when the entry has none).
    pub fn tiered(&self) -> &[TierRange] {
        &self.tiered
    }

    /// The `off_peak_pricing`, when the entry has one.
    pub fn off_peak(&self) -> Option<&OffPeak> {
        self.off_peak.as_deref()
    }

    /// The service tiers (suffixes without `_`: `batches`, `priority`, ...) for which the entry
    /// has a price of some field, in any of its tiers.
    pub fn service_tiers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.tables.iter().flat_map(|t| t.tiers()) {
            if !out.contains(&&**t) {
                out.push(t);
            }
        }
        out
    }

    /// True when the entry has an input or an output price of its own for service-tier suffix
    /// `tier` in its plain (or every `tiered_pricing`) fields; when false, docs/pricing.md charges
    /// that tier at the plain tier's prices.
    pub fn prices_tier(&self, tier: &str) -> bool {
        let has = |f: &FieldSet| {
            [PriceField::Input, PriceField::Output].iter().any(|p| f[p.index()].tiers().iter().any(|t| &*t.tier == tier))
        };
        has(&self.prices) || self.tiered.iter().any(|t| has(&t.fields))
    }

    /// The entry's token limits (with [`LIMIT_MARGIN`]).
    pub fn limits(&self) -> TokenLimits {
        self.limits
    }

    /// `implausible_tokens` when the event's tokens exceed the model's limits.
    #[inline(always)]
    pub fn check_limits(&self, tokens: &TokenCounts) -> Result<(), Rejection> {
        if tokens.input > self.limits.input || tokens.output > self.limits.output {
            return Err(self.over_limits(tokens));
        }
        Ok(())
    }

    #[cold]
    fn over_limits(&self, tokens: &TokenCounts) -> Rejection {
        let (field, n, limit) = if tokens.input > self.limits.input {
            ("input_tokens", tokens.input, self.limits.input)
        } else {
            ("output_tokens", tokens.output, self.limits.output)
        };
        Rejection::new(
            RejectReason::ImplausibleTokens,
            format!("{field} {n} is above {limit}, {LIMIT_MARGIN} times the catalog's limit for {:?}", &*self.key),
        )
    }

    /// True when the entry's long-context thresholds are inclusive (`litellm_provider` `xai`).
    pub fn inclusive_thresholds(&self) -> bool {
        self.litellm_provider.as_deref() == Some("xai")
    }

    /// The six prices for an event with service-tier suffix `tier` (see
    /// [`service_tier_suffix`](crate::pricing::service_tier_suffix)), `input_tokens` prompt
    /// tokens, at instant `at`, and whether off-peak prices applied; `implausible_tokens` when
    /// `input_tokens` is above the last `tiered_pricing` tier.
    #[inline(always)]
    pub fn prices_at(&self, tier: Option<&str>, input_tokens: u64, at: EventTime) -> Result<(&ResolvedPrices, bool), Rejection> {
        let mut index = 0;
        if !self.tiered.is_empty() {
            index = self.tier_index(input_tokens)?;
        }
        let off = match &self.off_peak {
            Some(o) if o.holds(at) => {
                index = index * 2 + 1;
                true
            }
            Some(_) => {
                index *= 2;
                false
            }
            None => false,
        };
        Ok((self.tables[index].get(tier, input_tokens), off))
    }

    /// The price version of a line priced with (or without) the off-peak prices.
    #[inline]
    pub fn version(&self, off_peak: bool) -> &Arc<str> {
        match (&self.version_off_peak, off_peak) {
            (Some(v), true) => v,
            _ => &self.version,
        }
    }

    fn tier_index(&self, input_tokens: u64) -> Result<usize, Rejection> {
        match self.tiered.iter().position(|t| input_tokens <= t.hi) {
            Some(i) => Ok(i),
            None => Err(self.implausible(input_tokens)),
        }
    }

    #[cold]
    fn implausible(&self, input_tokens: u64) -> Rejection {
        let last = self.tiered.last().map_or(0, |t| t.hi);
        Rejection::new(
            RejectReason::ImplausibleTokens,
            format!("input_tokens {input_tokens} is above the last tiered_pricing tier of {:?} (up to {last})", &*self.key),
        )
    }
}

/// A fast, unkeyed string hasher for the model-name maps (FxHash-style mixing with a murmur3
/// finalizer). The keys come from the catalog, not from events, and a lookup cannot change the
/// table, so a keyed hash buys nothing here; SipHash was a third of the time of `price`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NameHasher(u64);

const NAME_HASH_K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(NAME_HASH_K);
        }
        let rem = chunks.remainder();
        if !rem.is_empty() {
            let mut w = [0u8; 8];
            w[..rem.len()].copy_from_slice(rem);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(NAME_HASH_K);
        }
        self.0 = h;
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(NAME_HASH_K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(super) type NameMap<V> = HashMap<Arc<str>, V, BuildHasherDefault<NameHasher>>;

/// One catalog file plus the instant from which it applies.
#[derive(Debug, Clone)]
pub struct CatalogSource {
    pub(super) name: Arc<str>,
    pub(super) effective_from: DateTime<Utc>,
    /// `effective_from` rounded up to a whole microsecond: for an event time `t` in whole
    /// microseconds, `effective_from <= t` exactly when `effective_from_micros <= t`.
    pub(super) effective_from_micros: i64,
    pub(super) version: Arc<str>,
    /// The priceable entries, in file order.
    pub(super) entries: Vec<CatalogEntry>,
    /// Key -> position in `entries`.
    pub(super) index: NameMap<u32>,
    /// Step 2.7 of docs/pricing.md's name rules: an Anthropic model name -> the position of its
    /// preferred Bedrock id (`anthropic.{name}-v{N}[:{M}]`, else `global.anthropic....`).
    pub(super) bedrock_ids: NameMap<u32>,
}

/// The price version string: `{name}@{effective_from as RFC 3339 with Z}`.
pub fn price_version(name: &str, effective_from: DateTime<Utc>) -> String {
    format!("{name}@{}", effective_from.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl CatalogSource {
    /// The source name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instant from which the source applies.
    pub fn effective_from(&self) -> DateTime<Utc> {
        self.effective_from
    }

    /// Whether this source applies to an event at `at` (`effective_from <= at`).
    #[inline]
    pub fn in_effect_at(&self, at: EventTime) -> bool {
        self.effective_from_micros <= at.micros()
    }

    /// The price version, `name@effective_from` (shared with every [`PricedUsage`](crate::pricing::PricedUsage) it prices).
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// Number of priceable models.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the source prices no model.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with exactly this key.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&CatalogEntry> {
        self.index.get(key).map(|&i| &self.entries[i as usize])
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> + '_ {
        self.entries.iter()
    }
}
