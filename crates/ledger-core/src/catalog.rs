//! Price catalog: LiteLLM-format sources with an `effective_from` instant (see PRICING.md).
//!
//! A [`CatalogSource`] is one LiteLLM `model_prices_and_context_window.json` text plus the
//! instant from which it applies; [`CatalogSource::from_litellm_json`] reads it exactly (prices
//! from the *text* of each number, never through a float) and returns a [`LoadReport`] of what
//! it priced, skipped, rounded and ignored. A [`Catalog`] is the price history: several sources,
//! and [`Catalog::price`] applies PRICING.md to one event.
//!
//! ```
//! use ledger_core::catalog::{Catalog, CatalogSource};
//! use chrono::{TimeZone, Utc};
//!
//! let json = r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06,
//!                      "output_cost_per_token": "1e-05"}}"#;
//! let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
//! let (source, report) = CatalogSource::from_litellm_json("prices", from, json).unwrap();
//! assert_eq!(report.priced, 1);
//! assert_eq!(source.version().as_ref(), "prices@2026-01-01T00:00:00Z");
//! let catalog = Catalog::new(vec![source]).unwrap();
//! # let _ = catalog;
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal::Decimal;
use crate::event::{EventTime, RejectReason, Rejection, TokenCounts, UsageEvent, UsageEventRef};
use crate::money::{Money, SCALE};
use crate::pricing::{
    in_cost_range, service_tier_suffix, PriceField, PriceVariants, PricedRef, PricedUsage, ResolvedPrices, RoutedFromCost,
};

/// The key of LiteLLM's documentation entry, which is not a model.
pub const SAMPLE_SPEC_KEY: &str = "sample_spec";

/// A catalog could not be loaded or assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The text is not valid JSON.
    #[error("catalog source `{source_name}`: not valid JSON: {message}")]
    Json {
        /// Source name.
        source_name: String,
        /// serde_json's message (with line and column).
        message: String,
    },
    /// The JSON is not an object of model name -> entry.
    #[error("catalog source `{source_name}`: the top level is not a JSON object of model name -> entry")]
    NotAnObject {
        /// Source name.
        source_name: String,
    },
    /// A model name appears twice at the top level.
    #[error("catalog source `{source_name}`: model `{key}` appears more than once")]
    DuplicateKey {
        /// Source name.
        source_name: String,
        /// The repeated key.
        key: String,
    },
    /// No entry of the source is priceable (wrong file?).
    #[error("catalog source `{source_name}`: no priceable model among {entries} entries (each needs input_cost_per_token and output_cost_per_token)")]
    NoPriceableModel {
        /// Source name.
        source_name: String,
        /// Number of entries read.
        entries: usize,
    },
    /// The source name is empty or contains `@` (which separates name and instant in a price version).
    #[error("invalid catalog source name {0:?}: it must be non-empty and must not contain '@'")]
    InvalidName(String),
    /// A catalog needs at least one source.
    #[error("a catalog needs at least one source")]
    NoSources,
    /// Two sources have the same name and `effective_from` (the same price version).
    #[error("price version `{0}` is given twice: give each source of the same name a distinct effective_from")]
    DuplicateVersion(String),
    /// Two sources take effect at the same instant and both price the same model, so which one
    /// applies would be ambiguous.
    #[error(
        "catalog sources `{first}` and `{second}` take effect at the same instant and both contain model `{key}`: \
         give them distinct effective_from instants"
    )]
    AmbiguousSources {
        /// Price version of one source.
        first: String,
        /// Price version of the other.
        second: String,
        /// A model both contain.
        key: String,
    },
}

/// Why an entry of a source is not a priceable model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// LiteLLM's documentation entry `sample_spec`.
    SampleSpec,
    /// The entry is not a JSON object.
    NotAnObject,
    /// No `input_cost_per_token`.
    MissingInputCost,
    /// No `output_cost_per_token`.
    MissingOutputCost,
    /// Neither `input_cost_per_token` nor `output_cost_per_token` (e.g. priced per image or second).
    MissingInputAndOutputCost,
    /// `input_cost_per_token` or `output_cost_per_token` is present but not a usable price.
    InvalidPrice {
        /// The field.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl SkipReason {
    /// A stable snake_case code, for counting.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::SampleSpec => "sample_spec",
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::MissingInputCost => "missing_input_cost_per_token",
            SkipReason::MissingOutputCost => "missing_output_cost_per_token",
            SkipReason::MissingInputAndOutputCost => "missing_input_and_output_cost_per_token",
            SkipReason::InvalidPrice { .. } => "invalid_price",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::SampleSpec => f.write_str("LiteLLM's documentation entry, not a model"),
            SkipReason::NotAnObject => f.write_str("not a JSON object"),
            SkipReason::MissingInputCost => f.write_str("no input_cost_per_token"),
            SkipReason::MissingOutputCost => f.write_str("no output_cost_per_token"),
            SkipReason::MissingInputAndOutputCost => {
                f.write_str("no input_cost_per_token and no output_cost_per_token (not priced per token)")
            }
            SkipReason::InvalidPrice { field, detail } => write!(f, "{field}: {detail}"),
        }
    }
}

/// An entry that is not a priceable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The entry's key.
    pub model: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// A price whose text had digits below the pico-dollar, rounded half to even.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundedPrice {
    /// The entry's key.
    pub model: String,
    /// The full field name as in the file (e.g. `input_cost_per_token_above_200k_tokens`).
    pub field: String,
    /// The number text as written in the file.
    pub text: String,
    /// The price used, per token.
    pub rounded: Money,
}

/// A price-like field of a priced entry that the catalog does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredField {
    /// The entry's key.
    pub model: String,
    /// The field name.
    pub field: String,
    /// The value text as written in the file.
    pub text: String,
    /// Why it is not used.
    pub reason: String,
}

/// What loading one source did: every model priced, every entry skipped (with the reason),
/// every price rounded and every price field ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Source name.
    pub source: String,
    /// The instant from which the source applies.
    pub effective_from: DateTime<Utc>,
    /// The price version (`name@effective_from`).
    pub version: String,
    /// Number of top-level entries in the file (priced + skipped).
    pub entries: usize,
    /// Number of priceable models.
    pub priced: usize,
    /// Entries that are not priceable models, in file order.
    pub skipped: Vec<SkippedEntry>,
    /// Prices of priced models that were rounded to 12 fractional digits, in file order.
    pub rounded: Vec<RoundedPrice>,
    /// Price fields of priced models that are not used (unrecognized variant, not a number,
    /// negative, out of range), in file order.
    pub ignored: Vec<IgnoredField>,
}

impl LoadReport {
    /// Number of skipped entries per [`SkipReason::code`].
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for s in &self.skipped {
            *m.entry(s.reason.code()).or_insert(0) += 1;
        }
        m
    }
}

/// One priceable model of a source: only the fields pricing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    key: Arc<str>,
    litellm_provider: Option<Box<str>>,
    /// Indexed by [`PriceField::index`]; the reasoning field only ever has a plain price.
    prices: [PriceVariants; 6],
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
    /// [`service_tier_suffix`]) and `input_tokens` prompt tokens, fallbacks applied.
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
struct NameHasher(u64);

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

type NameMap = HashMap<Arc<str>, CatalogEntry, BuildHasherDefault<NameHasher>>;

/// One catalog file plus the instant from which it applies.
#[derive(Debug, Clone)]
pub struct CatalogSource {
    name: Arc<str>,
    effective_from: DateTime<Utc>,
    /// `effective_from` rounded up to a whole microsecond: for an event time `t` in whole
    /// microseconds, `effective_from <= t` exactly when `effective_from_micros <= t`.
    effective_from_micros: i64,
    version: Arc<str>,
    entries: NameMap,
}

/// The price version string: `{name}@{effective_from as RFC 3339 with Z}`.
pub fn price_version(name: &str, effective_from: DateTime<Utc>) -> String {
    format!("{name}@{}", effective_from.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl CatalogSource {
    /// Reads a LiteLLM `model_prices_and_context_window.json` text.
    ///
    /// Prices are read from the number text (JSON numbers, or JSON strings holding a number) and
    /// rounded half to even to 12 fractional digits; the report lists every rounding. Entries
    /// without both `input_cost_per_token` and `output_cost_per_token` are skipped with a reason.
    pub fn from_litellm_json(
        name: &str,
        effective_from: DateTime<Utc>,
        json_text: &str,
    ) -> Result<(CatalogSource, LoadReport), CatalogError> {
        if name.is_empty() || name.contains('@') {
            return Err(CatalogError::InvalidName(name.to_owned()));
        }
        let top: OrderedRaw<'_> = match serde_json::from_str(json_text) {
            Ok(t) => t,
            Err(e) => {
                let trimmed = json_text.trim_start();
                if e.is_data() && !trimmed.starts_with('{') {
                    return Err(CatalogError::NotAnObject { source_name: name.to_owned() });
                }
                return Err(CatalogError::Json { source_name: name.to_owned(), message: e.to_string() });
            }
        };
        let version = price_version(name, effective_from);
        let mut report = LoadReport {
            source: name.to_owned(),
            effective_from,
            version: version.clone(),
            entries: top.0.len(),
            priced: 0,
            skipped: Vec::new(),
            rounded: Vec::new(),
            ignored: Vec::new(),
        };
        let mut entries: NameMap = HashMap::with_capacity_and_hasher(top.0.len(), Default::default());
        let mut seen: HashSet<&str> = HashSet::with_capacity(top.0.len());
        for (key, raw) in &top.0 {
            if !seen.insert(key.as_str()) {
                return Err(CatalogError::DuplicateKey { source_name: name.to_owned(), key: key.clone() });
            }
            match read_entry(key, raw) {
                Ok((entry, rounded, ignored)) => {
                    report.rounded.extend(rounded);
                    report.ignored.extend(ignored);
                    entries.insert(entry.key.clone(), entry);
                }
                Err(reason) => report.skipped.push(SkippedEntry { model: key.clone(), reason }),
            }
        }
        report.priced = entries.len();
        if entries.is_empty() {
            return Err(CatalogError::NoPriceableModel { source_name: name.to_owned(), entries: report.entries });
        }
        let sub_micro = i64::from(effective_from.timestamp_subsec_nanos() % 1_000 != 0);
        let effective_from_micros = effective_from.timestamp_micros() + sub_micro;
        let source =
            CatalogSource { name: name.into(), effective_from, effective_from_micros, version: version.into(), entries };
        Ok((source, report))
    }

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

    /// The price version, `name@effective_from` (shared with every [`PricedUsage`] it prices).
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

    /// The entry that prices model `model` of provider `provider` (PRICING.md "Which entry
    /// prices an event", step 2): `model`, then `provider/model`, then `rest` when `model` is
    /// `x/rest`, within this source only (see [`Catalog::find`] for the price history).
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
fn tried_names(model: &str, provider: &str, out: &mut Vec<String>) {
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

/// The price history: sources ordered by `effective_from`.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Ascending by `effective_from`; sources with equal instants keep the given order.
    sources: Vec<CatalogSource>,
}

impl Catalog {
    /// Assembles the price history.
    ///
    /// Rejects an empty list, two sources with the same price version (same name and
    /// `effective_from`), and two sources with the same `effective_from` that both contain a
    /// model (which one applies would be ambiguous).
    pub fn new(sources: Vec<CatalogSource>) -> Result<Catalog, CatalogError> {
        if sources.is_empty() {
            return Err(CatalogError::NoSources);
        }
        let mut sources = sources;
        sources.sort_by_key(|s| s.effective_from);
        let mut versions = HashSet::new();
        for s in &sources {
            if !versions.insert(s.version.clone()) {
                return Err(CatalogError::DuplicateVersion(s.version.to_string()));
            }
        }
        for (i, a) in sources.iter().enumerate() {
            for b in sources[i + 1..].iter().take_while(|b| b.effective_from == a.effective_from) {
                let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
                let mut shared: Vec<&str> =
                    small.entries.keys().filter(|k| large.entries.contains_key(&***k)).map(|k| &**k).collect();
                if !shared.is_empty() {
                    shared.sort_unstable();
                    return Err(CatalogError::AmbiguousSources {
                        first: a.version.to_string(),
                        second: b.version.to_string(),
                        key: shared[0].to_owned(),
                    });
                }
            }
        }
        Ok(Catalog { sources })
    }

    /// The sources, oldest first.
    pub fn sources(&self) -> &[CatalogSource] {
        &self.sources
    }

    /// The entry that prices `model` of `provider` at instant `at`.
    ///
    /// Source first (PRICING.md: "the newest source whose `effective_from <= event_time` that
    /// contains the model"): the sources in effect at `at` are tried newest first, and within
    /// each the name rules of [`CatalogSource::lookup`] (`model`, `provider/model`, `rest`)
    /// decide whether it contains the model. Allocates only for a `provider/model` name longer
    /// than 192 bytes.
    #[inline]
    pub fn find(&self, model: &str, provider: &str, at: EventTime) -> Option<(&CatalogSource, &CatalogEntry)> {
        self.sources
            .iter()
            .rev()
            .filter(|s| s.in_effect_at(at))
            .find_map(|s| s.lookup(model, provider).map(|e| (s, e)))
    }

    /// The newest source in effect at `at` that has exactly this key.
    #[inline]
    pub fn find_key(&self, key: &str, at: EventTime) -> Option<(&CatalogSource, &CatalogEntry)> {
        self.sources.iter().rev().filter(|s| s.in_effect_at(at)).find_map(|s| s.get(key).map(|e| (s, e)))
    }

    /// Validates the event ([`UsageEvent::validate`]) and prices it ([`Catalog::price`]).
    /// This is the one code path of the stream processor and `ledger price`.
    pub fn price_event(&self, event: &UsageEvent) -> Result<PricedUsage, Rejection> {
        let tokens = event.validate()?;
        self.price(event, &tokens)
    }

    /// Prices an event with validated token counts, following PRICING.md exactly.
    ///
    /// The entry is found for `response_model`, else (absent or unknown) for `request_model`;
    /// see [`Catalog::find`]. A `routed_from_model` that the catalog knows is priced by the same
    /// rules (same provider, instant, service tier and tokens) into [`PricedUsage::routed_from`];
    /// an unknown one, or one whose cost or savings would leave `Decimal(38, 12)`, leaves it
    /// `None`. Any term or total outside `Decimal(38, 12)` rejects the event as `overflow`.
    pub fn price(&self, event: &UsageEvent, tokens: &TokenCounts) -> Result<PricedUsage, Rejection> {
        self.price_view(&event.as_view(), tokens).map(|p| p.to_owned_priced())
    }

    /// [`Catalog::price`] of a borrowed event, with the names borrowed from the catalog: the
    /// processor's path, which neither allocates nor touches a reference count.
    pub fn price_view(&self, event: &UsageEventRef<'_>, tokens: &TokenCounts) -> Result<PricedRef<'_>, Rejection> {
        let at = event.event_time;
        let provider = event.provider;
        let response = event.response_model.filter(|m| !m.is_empty());
        let found = match response {
            Some(m) => self.find(m, provider, at),
            None => None,
        };
        let found = match found {
            Some(f) => Some(f),
            None if response == Some(event.request_model) => None,
            None => self.find(event.request_model, provider, at),
        };
        let Some((source, entry)) = found else {
            return Err(self.unknown_model(event));
        };
        let tier = service_tier_suffix(event.service_tier);
        let (terms, cost) = price_entry(entry, tier, tokens)?;
        // Savings are informational: an unknown routed-from model, or one whose cost would
        // leave the Decimal(38, 12) range, leaves them out rather than rejecting the event.
        let routed_from = event
            .routed_from_model
            .filter(|m| !m.is_empty())
            .and_then(|m| self.find(m, provider, at))
            .and_then(|(_, orig)| {
                let (_, orig_cost) = price_entry(orig, tier, tokens).ok()?;
                let savings = orig_cost.checked_sub(cost).ok().filter(|s| in_cost_range(*s))?;
                Some(RoutedFromCost { model: &orig.key, cost: orig_cost, savings })
            });
        Ok(PricedUsage { model: &entry.key, price_version: &source.version, terms, cost, routed_from })
    }

    #[cold]
    fn unknown_model(&self, event: &UsageEventRef<'_>) -> Rejection {
        let provider = event.provider;
        let mut tried = Vec::new();
        let mut named = Vec::new();
        if let Some(m) = event.response_model.filter(|m| !m.is_empty()) {
            named.push(format!("response_model {m:?}"));
            tried_names(m, provider, &mut tried);
        }
        if !named.is_empty() && event.response_model == Some(event.request_model) {
            named[0] = format!("response_model and request_model {:?}", event.request_model);
        } else {
            named.push(format!("request_model {:?}", event.request_model));
            tried_names(event.request_model, provider, &mut tried);
        }
        let applicable = self.sources.iter().filter(|s| s.in_effect_at(event.event_time)).count();
        let sources = if applicable == 0 {
            format!(
                "no catalog source is in effect at event_time {} (the oldest takes effect at {})",
                event.event_time,
                self.sources[0].effective_from.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )
        } else {
            format!("{applicable} catalog source(s) in effect at the event_time")
        };
        Rejection::new(
            RejectReason::UnknownModel,
            format!(
                "no catalog entry for {} with provider {provider:?}; tried {}; {sources}",
                named.join(" or "),
                tried.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
            ),
        )
    }
}

#[inline]
fn price_entry(
    entry: &CatalogEntry,
    tier: Option<&str>,
    tokens: &TokenCounts,
) -> Result<(crate::pricing::CostTerms, Money), Rejection> {
    let prices = entry.resolve(tier, tokens.input).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownModel,
            format!("catalog entry {:?} has no input or output price", &*entry.key),
        )
    })?;
    prices.cost(tokens)
}

// ---------------------------------------------------------------------------------------------
// Reading LiteLLM JSON.

/// A JSON object as its members in order, values unparsed.
struct OrderedRaw<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for OrderedRaw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedRaw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, raw)) = map.next_entry::<String, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(OrderedRaw(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// What a field name of an entry means to the catalog.
enum FieldKind<'a> {
    Price { field: PriceField, tier: Option<&'a str>, above: Option<u64> },
    Ignored(&'static str),
    Other,
}

/// Bases in match order: the longer `..._above_1hr` before its prefix.
const BASES: [PriceField; 5] = [
    PriceField::CacheCreation1h,
    PriceField::CacheCreation,
    PriceField::CacheRead,
    PriceField::Input,
    PriceField::Output,
];

fn classify(name: &str) -> FieldKind<'_> {
    let reasoning = PriceField::Reasoning.litellm_name();
    if name == reasoning {
        return FieldKind::Price { field: PriceField::Reasoning, tier: None, above: None };
    }
    if name.strip_prefix(reasoning).is_some_and(|r| r.starts_with('_')) {
        return FieldKind::Ignored("output_cost_per_reasoning_token has no variants in PRICING.md");
    }
    for field in BASES {
        let Some(rest) = name.strip_prefix(field.litellm_name()) else { continue };
        if rest.is_empty() {
            return FieldKind::Price { field, tier: None, above: None };
        }
        let Some(rest) = rest.strip_prefix('_') else { continue };
        return classify_variant(field, rest);
    }
    FieldKind::Other
}

fn classify_variant(field: PriceField, rest: &str) -> FieldKind<'_> {
    const UNRECOGNIZED: &str = "unrecognized variant (neither _above_{N}k_tokens nor a service tier)";
    if let Some(r) = rest.strip_prefix("above_") {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let Some(after) = r[digits..].strip_prefix("k_tokens") else { return FieldKind::Ignored(UNRECOGNIZED) };
        let Some(threshold) = r[..digits].parse::<u64>().ok().and_then(|n| n.checked_mul(1000)) else {
            return FieldKind::Ignored(UNRECOGNIZED);
        };
        if after.is_empty() {
            return FieldKind::Price { field, tier: None, above: Some(threshold) };
        }
        return match after.strip_prefix('_') {
            Some(tier) if valid_tier(tier) => FieldKind::Price { field, tier: Some(tier), above: Some(threshold) },
            _ => FieldKind::Ignored(UNRECOGNIZED),
        };
    }
    if valid_tier(rest) {
        FieldKind::Price { field, tier: Some(rest), above: None }
    } else {
        FieldKind::Ignored(UNRECOGNIZED)
    }
}

fn valid_tier(tier: &str) -> bool {
    !tier.is_empty()
        && !tier.starts_with("above_")
        && tier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A price read from its text: the value per token and whether it was rounded.
fn read_price(raw: &RawValue) -> Result<(Money, bool), String> {
    let text = raw.get();
    let owned;
    let number = if text.starts_with('"') {
        owned = serde_json::from_str::<String>(text).map_err(|e| e.to_string())?;
        owned.as_str()
    } else if text == "null" {
        return Err("null".to_owned());
    } else {
        text
    };
    let d = Decimal::parse(number).map_err(|_| "not a number".to_owned())?;
    if d.is_negative() {
        return Err("negative price".to_owned());
    }
    let s = d.to_scale_half_even(SCALE).map_err(|_| "out of range".to_owned())?;
    Ok((Money::from_picos(s.value), s.rounded))
}

type EntryRead = (CatalogEntry, Vec<RoundedPrice>, Vec<IgnoredField>);

fn read_entry(key: &str, raw: &RawValue) -> Result<EntryRead, SkipReason> {
    if key == SAMPLE_SPEC_KEY {
        return Err(SkipReason::SampleSpec);
    }
    if !raw.get().starts_with('{') {
        return Err(SkipReason::NotAnObject);
    }
    let fields: OrderedRaw<'_> = serde_json::from_str(raw.get()).map_err(|_| SkipReason::NotAnObject)?;
    let mut prices: [PriceVariants; 6] = Default::default();
    let mut provider = None;
    let mut rounded = Vec::new();
    let mut ignored = Vec::new();
    let mut invalid_required: Option<SkipReason> = None;
    for (name, value) in &fields.0 {
        if name == "litellm_provider" {
            provider = serde_json::from_str::<String>(value.get()).ok().map(String::into_boxed_str);
            continue;
        }
        match classify(name) {
            FieldKind::Other => {}
            FieldKind::Ignored(reason) => ignored.push(IgnoredField {
                model: key.to_owned(),
                field: name.clone(),
                text: value.get().to_owned(),
                reason: reason.to_owned(),
            }),
            FieldKind::Price { field, tier, above } => match read_price(value) {
                Ok((price, was_rounded)) => {
                    if was_rounded {
                        rounded.push(RoundedPrice {
                            model: key.to_owned(),
                            field: name.clone(),
                            text: value.get().to_owned(),
                            rounded: price,
                        });
                    }
                    prices[field.index()].set(tier, above, price);
                }
                Err(detail) => {
                    let required =
                        matches!(field, PriceField::Input | PriceField::Output) && tier.is_none() && above.is_none();
                    if required && invalid_required.is_none() {
                        invalid_required =
                            Some(SkipReason::InvalidPrice { field: name.clone(), detail: detail.clone() });
                    }
                    ignored.push(IgnoredField {
                        model: key.to_owned(),
                        field: name.clone(),
                        text: value.get().to_owned(),
                        reason: detail,
                    });
                }
            },
        }
    }
    let has_in = prices[PriceField::Input.index()].plain().is_some();
    let has_out = prices[PriceField::Output.index()].plain().is_some();
    if !(has_in && has_out) {
        return Err(invalid_required.unwrap_or(match (has_in, has_out) {
            (false, false) => SkipReason::MissingInputAndOutputCost,
            (false, true) => SkipReason::MissingInputCost,
            _ => SkipReason::MissingOutputCost,
        }));
    }
    let entry = CatalogEntry { key: key.into(), litellm_provider: provider, prices };
    Ok((entry, rounded, ignored))
}
