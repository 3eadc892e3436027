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

mod assemble;
mod forms;
mod litellm;
mod lookup;
mod report;
mod rules;
mod source;
mod table;

use std::collections::HashSet;

use chrono::SecondsFormat;

use crate::event::{EventTime, RejectReason, Rejection, TokenCounts, UsageEvent, UsageEventRef};
use crate::money::Money;
use crate::pricing::{in_cost_range, service_tier_suffix, CostTerms, PricedRef, PricedUsage, ResolvedPrices, RoutedFromCost};
use lookup::tried_names;

pub use forms::{OffPeak, OffPeakWindow, TierRange};
pub use litellm::SAMPLE_SPEC_KEY;
pub use lookup::{provider_prefixes, undated, LookupStep, BEDROCK_REGION_PREFIXES, PROVIDER_PREFIXES};
pub use report::{CatalogError, IgnoredField, LoadReport, RoundedPrice, SkipReason, SkippedEntry};
pub use rules::{OverrideKind, PriceOverride, PricingRules};
pub use source::{price_version, CatalogEntry, CatalogSource, TokenLimits, LIMIT_MARGIN};

/// The price history: sources ordered by `effective_from`, and the local pricing rules.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Ascending by `effective_from`; sources with equal instants keep the given order.
    sources: Vec<CatalogSource>,
    /// Aliases and overrides (none by default).
    rules: PricingRules,
}

/// What the name rules found for a model name: the source, the entry and the step.
#[derive(Debug, Clone, Copy)]
pub struct Found<'c> {
    /// The source that contains the model.
    pub source: &'c CatalogSource,
    /// Its entry.
    pub entry: &'c CatalogEntry,
    /// The step of docs/pricing.md's name rules that found it.
    pub step: LookupStep,
}

/// One model's pricing of an event (the charged model, or the routed-from one).
struct Pricing<'c> {
    model: &'c std::sync::Arc<str>,
    version: &'c std::sync::Arc<str>,
    override_version: Option<&'c std::sync::Arc<str>>,
    alias_of: Option<&'c std::sync::Arc<str>>,
    terms: CostTerms,
    cost: Money,
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
                let mut shared: Vec<&str> = small.entries().map(|e| &*e.key).filter(|k| large.get(k).is_some()).collect();
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
        Ok(Catalog { sources, rules: PricingRules::default() })
    }

    /// The same price history with local pricing rules (aliases and overrides).
    pub fn with_rules(mut self, rules: PricingRules) -> Catalog {
        self.rules = rules;
        self
    }

    /// The sources, oldest first.
    pub fn sources(&self) -> &[CatalogSource] {
        &self.sources
    }

    /// The local pricing rules.
    pub fn rules(&self) -> &PricingRules {
        &self.rules
    }

    /// The entry that prices `model` of `provider` at instant `at`.
    ///
    /// Source first (docs/pricing.md: "the newest source whose `effective_from <= event_time` that
    /// contains the model"): the sources in effect at `at` are tried newest first, and within
    /// each the name rules of [`CatalogSource::lookup`] (`model`, `provider/model`, `rest`, then
    /// the aliases) decide whether it contains the model. Allocates only for a name longer than
    /// 192 bytes.
    #[inline]
    pub fn find(&self, model: &str, provider: &str, at: EventTime) -> Option<Found<'_>> {
        self.sources
            .iter()
            .rev()
            .filter(|s| s.in_effect_at(at))
            .find_map(|s| s.lookup(model, provider, &self.rules).map(|(entry, step)| Found { source: s, entry, step }))
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
    /// see [`Catalog::find`]; then the local overrides apply. A `routed_from_model` that the
    /// catalog prices is priced by the same rules (same tenant, provider, instant, service tier
    /// and tokens) into [`PricedUsage::routed_from`]; one it cannot price, or whose cost or
    /// savings would leave `Decimal(38, 12)`, leaves it `None`. Any term or total outside
    /// `Decimal(38, 12)` rejects the event as `overflow`.
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
        let tier = service_tier_suffix(event.service_tier);
        let p = match self.price_found(found, [response, Some(event.request_model)], event, tier, tokens)? {
            Some(p) => p,
            None => return Err(self.unknown_model(event)),
        };
        // Savings are informational: a routed-from model the catalog cannot price, or one whose
        // cost would leave the Decimal(38, 12) range, leaves them out rather than rejecting.
        let routed_from = event.routed_from_model.filter(|m| !m.is_empty()).and_then(|m| {
            let orig = self.price_found(self.find(m, provider, at), [Some(m), None], event, tier, tokens).ok()??;
            let savings = orig.cost.checked_sub(p.cost).ok().filter(|s| in_cost_range(*s))?;
            Some(RoutedFromCost { model: orig.model, cost: orig.cost, savings })
        });
        Ok(PricedUsage {
            model: p.model,
            price_version: p.version,
            override_version: p.override_version,
            alias_of: p.alias_of,
            terms: p.terms,
            cost: p.cost,
            routed_from,
        })
    }

    /// Prices what the name rules found (or, for nothing found, what a `prices` override of one
    /// of `names` prices); `Ok(None)` when nothing prices the event.
    #[inline(always)]
    fn price_found<'c>(
        &'c self,
        found: Option<Found<'c>>,
        names: [Option<&str>; 2],
        event: &UsageEventRef<'_>,
        tier: Option<&str>,
        tokens: &TokenCounts,
    ) -> Result<Option<Pricing<'c>>, Rejection> {
        let ov = if self.rules.has_overrides() { self.override_for(found.as_ref(), names, event) } else { None };
        if let Some((o, model)) = ov {
            if let Some(table) = o.table() {
                let (terms, cost) = table.get(tier, tokens.input).cost(tokens)?;
                return Ok(Some(Pricing { model, version: &o.version, override_version: None, alias_of: None, terms, cost }));
            }
        }
        let Some(f) = found else { return Ok(None) };
        f.entry.check_limits(tokens)?;
        let (prices, off_peak) = f.entry.prices_at(tier, tokens.input, event.event_time)?;
        let (override_version, scaled): (_, Option<ResolvedPrices>) = match ov {
            Some((o, _)) => match &o.kind {
                OverrideKind::Multiplier { num, den, .. } => (Some(&o.version), Some(prices.scaled(*num, *den))),
                OverrideKind::Prices(_) => (None, None),
            },
            None => (None, None),
        };
        let (terms, cost) = scaled.as_ref().unwrap_or(prices).cost(tokens)?;
        Ok(Some(Pricing {
            model: &f.entry.key,
            version: f.entry.version(off_peak),
            override_version,
            alias_of: f.entry.alias_of.as_ref(),
            terms,
            cost,
        }))
    }

    /// The override that applies, and the ledger `model` it applies to: the key found, else the
    /// first of `names` an override names.
    #[cold]
    #[inline(never)]
    fn override_for<'c>(
        &'c self,
        found: Option<&Found<'c>>,
        names: [Option<&str>; 2],
        event: &UsageEventRef<'_>,
    ) -> Option<(&'c PriceOverride, &'c std::sync::Arc<str>)> {
        let (tenant, provider, at) = (event.attribution.tenant_id, event.provider, event.event_time);
        if let Some(f) = found {
            return self.rules.override_for(tenant, provider, &f.entry.key, at).map(|o| (o, &f.entry.key));
        }
        // The first name an override applies to decides; without a catalog entry only a `prices`
        // override prices, and it names its model (a multiplier leaves the event unknown).
        let o = names.into_iter().flatten().find_map(|n| self.rules.override_for(tenant, provider, n, at))?;
        Some((o, o.model.as_ref()?))
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
                "no catalog entry for {} with provider {provider:?}; tried {} and the aliases of docs/pricing.md \
                 (steps 2.4-2.8); {sources}",
                named.join(" or "),
                tried.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
            ),
        )
    }
}
