//! Price catalog: LiteLLM-format sources with an `effective_from` instant (see docs/pricing.md).
//!
//! A [`CatalogSource`] is one LiteLLM `model_prices_and_context_window.json` text plus the
//! instant from which it applies; [`CatalogSource::from_litellm_json`] reads it exactly (prices
//! from the *text* of each number, never through a float) and returns a [`LoadReport`] of what
//! it priced, skipped, rounded and ignored. A [`Catalog`] is the price history: several sources,
//! and [`Catalog::price`] applies docs/pricing.md to one event.
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

mod litellm;
mod report;
mod source;

use std::collections::HashSet;

use chrono::SecondsFormat;

use crate::event::{EventTime, RejectReason, Rejection, TokenCounts, UsageEvent, UsageEventRef};
use crate::money::Money;
use crate::pricing::{in_cost_range, service_tier_suffix, PricedRef, PricedUsage, RoutedFromCost};
use source::tried_names;

pub use litellm::SAMPLE_SPEC_KEY;
pub use report::{CatalogError, IgnoredField, LoadReport, RoundedPrice, SkipReason, SkippedEntry};
pub use source::{price_version, CatalogEntry, CatalogSource};

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
    /// Source first (docs/pricing.md: "the newest source whose `effective_from <= event_time` that
    /// contains the model"): the sources in effect at `at` are tried newest first, and within
    /// each the name rules of [`CatalogSource::lookup`] (`model`, `provider/model`, `rest`)
    /// decide whether it contains the model. Allocates only for a `provider/model` name longer
    /// than 192 bytes.
    #[inline]
    pub fn find(&self, model: &str, provider: &str, at: EventTime) -> Option<(&CatalogSource, &CatalogEntry)> {
        self.sources.iter().rev().filter(|s| s.in_effect_at(at)).find_map(|s| s.lookup(model, provider).map(|e| (s, e)))
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

    /// Prices an event with validated token counts, following docs/pricing.md exactly.
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
        let routed_from =
            event.routed_from_model.filter(|m| !m.is_empty()).and_then(|m| self.find(m, provider, at)).and_then(|(_, orig)| {
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
        Rejection::new(RejectReason::UnknownModel, format!("catalog entry {:?} has no input or output price", &*entry.key))
    })?;
    prices.cost(tokens)
}
