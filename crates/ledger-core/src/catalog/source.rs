//! One catalog source: its priceable entries, keyed by model name, and the name rules that find
//! the entry of an event's model.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::event::EventTime;
use crate::pricing::{PriceField, PriceVariants, ResolvedPrices};

/// One priceable model of a source: only the fields pricing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub(super) key: Arc<str>,
    pub(super) litellm_provider: Option<Box<str>>,
    /// Indexed by [`PriceField::index`]; the reasoning field only ever has a plain price.
    pub(super) prices: [PriceVariants; 6],
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

    /// Every variant of one price field.
    pub fn field(&self, field: PriceField) -> &PriceVariants {
        &self.prices[field.index()]
    }

    /// The six prices for an event with service-tier suffix `tier` (see
    /// [`service_tier_suffix`](crate::pricing::service_tier_suffix)) and `input_tokens` prompt tokens, fallbacks applied.
    /// `None` only if the entry lacks an input or output price (never for loaded entries).
    #[inline]
    pub fn resolve(&self, tier: Option<&str>, input_tokens: u64) -> Option<ResolvedPrices> {
        let get = |f: PriceField| self.prices[f.index()].resolve(tier, input_tokens);
        let input = get(PriceField::Input)?;
        let output = get(PriceField::Output)?;
        let cache_write = get(PriceField::CacheCreation).unwrap_or(input);
        Some(ResolvedPrices {
            input,
            output,
            cache_read: get(PriceField::CacheRead).unwrap_or(input),
            cache_write,
            cache_write_1h: get(PriceField::CacheCreation1h).unwrap_or(cache_write),
            reasoning: self.prices[PriceField::Reasoning.index()].plain().unwrap_or(output),
        })
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

pub(super) type NameMap = HashMap<Arc<str>, CatalogEntry, BuildHasherDefault<NameHasher>>;

/// One catalog file plus the instant from which it applies.
#[derive(Debug, Clone)]
pub struct CatalogSource {
    pub(super) name: Arc<str>,
    pub(super) effective_from: DateTime<Utc>,
    /// `effective_from` rounded up to a whole microsecond: for an event time `t` in whole
    /// microseconds, `effective_from <= t` exactly when `effective_from_micros <= t`.
    pub(super) effective_from_micros: i64,
    pub(super) version: Arc<str>,
    pub(super) entries: NameMap,
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
    pub fn get(&self, key: &str) -> Option<&CatalogEntry> {
        self.entries.get(key)
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> + '_ {
        self.entries.values()
    }

    /// The entry that prices model `model` of provider `provider` (docs/pricing.md "Which entry
    /// prices an event", step 2): `model`, then `provider/model`, then `rest` when `model` is
    /// `x/rest`, within this source only (see [`Catalog::find`](super::Catalog::find) for the price history).
    #[inline]
    pub fn lookup(&self, model: &str, provider: &str) -> Option<&CatalogEntry> {
        if let Some(e) = self.entries.get(model) {
            return Some(e);
        }
        if !provider.is_empty() {
            let found = with_joined(provider, model, |joined| self.entries.get(joined));
            if found.is_some() {
                return found;
            }
        }
        match model.split_once('/') {
            Some((_, rest)) => self.entries.get(rest),
            None => None,
        }
    }
}

/// Calls `f` with `"{provider}/{model}"`, built on the stack when short.
#[inline]
fn with_joined<R>(provider: &str, model: &str, f: impl FnOnce(&str) -> R) -> R {
    const CAP: usize = 192;
    let len = provider.len() + 1 + model.len();
    if len <= CAP {
        let mut buf = [0u8; CAP];
        buf[..provider.len()].copy_from_slice(provider.as_bytes());
        buf[provider.len()] = b'/';
        buf[provider.len() + 1..len].copy_from_slice(model.as_bytes());
        // Concatenating two `str`s and '/' is always valid UTF-8.
        match std::str::from_utf8(&buf[..len]) {
            Ok(s) => f(s),
            Err(_) => f(&format!("{provider}/{model}")),
        }
    } else {
        f(&format!("{provider}/{model}"))
    }
}

/// The names tried for a model (for the `unknown_model` detail).
pub(super) fn tried_names(model: &str, provider: &str, out: &mut Vec<String>) {
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    push(model.to_owned());
    if !provider.is_empty() {
        push(format!("{provider}/{model}"));
    }
    if let Some((_, rest)) = model.split_once('/') {
        push(rest.to_owned());
    }
}
