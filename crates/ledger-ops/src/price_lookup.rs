//! `ledger prices lookup`: which catalog entry a model name resolves to, by which step of
//! docs/pricing.md's name rules, and what that entry prices (service tiers, long-context
//! thresholds, `tiered_pricing` tiers, off-peak windows), with the override that would apply.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use ledger_core::catalog::{Catalog, CatalogEntry, OverrideKind};
use ledger_core::{EventTime, PriceField, ResolvedPrices};

/// What a model name resolves to.
#[derive(Debug, Clone)]
pub struct LookupReport {
    /// The name looked up.
    pub model: String,
    /// The event provider it was looked up with.
    pub provider: String,
    /// The instant (which sources are in effect).
    pub at: DateTime<Utc>,
    /// What was found, or `None` (the event would be `unknown_model`, unless an override prices it).
    pub found: Option<Found>,
    /// `id (what)` of the override that applies for `tenant`, when one does.
    pub override_applied: Option<String>,
}

/// The entry found and what it prices.
#[derive(Debug, Clone)]
pub struct Found {
    /// The entry key (the ledger's `model`).
    pub key: String,
    /// The step of the name rules (`step 2.7 (Bedrock id of the Anthropic model)`).
    pub step: String,
    /// The source's version.
    pub source: String,
    /// `alias_of` target.
    pub alias_of: Option<String>,
    /// `litellm_provider`.
    pub litellm_provider: Option<String>,
    /// `(label, prices)` lines: the plain tier (per `tiered_pricing` tier) and each service tier.
    pub prices: Vec<(String, String)>,
    /// Service tiers the entry prices (input or output price of its own).
    pub service_tiers: Vec<String>,
    /// Long-context thresholds, in thousands of tokens.
    pub thresholds_k: Vec<u64>,
    /// `(lo, hi]` of each `tiered_pricing` tier.
    pub tiered: Vec<(u64, u64)>,
    /// The off-peak windows, as text.
    pub off_peak: Option<String>,
}

fn prices_text(p: &ResolvedPrices) -> String {
    format!(
        "input {} output {} cache read {} cache write {} 1h cache write {} reasoning {}",
        p.input, p.output, p.cache_read, p.cache_write, p.cache_write_1h, p.reasoning
    )
}

fn describe(entry: &CatalogEntry, at: EventTime) -> (Vec<(String, String)>, Vec<String>) {
    let mut lines = Vec::new();
    let inputs: Vec<(String, u64)> = if entry.tiered().is_empty() {
        vec![(String::new(), 0)]
    } else {
        entry.tiered().iter().map(|t| (format!(" (tier up to {} tokens)", t.hi), t.hi)).collect()
    };
    let tiers: Vec<&str> = entry.service_tiers();
    for (label, input) in &inputs {
        for tier in std::iter::once(None).chain(tiers.iter().map(|t| Some(*t))) {
            if let Ok((p, off)) = entry.prices_at(tier, *input, at) {
                let name = tier.map_or("plain".to_owned(), |t| format!("_{t}"));
                let off = if off { ", off-peak" } else { "" };
                lines.push((format!("{name}{label}{off}"), prices_text(p)));
            }
        }
    }
    let priced = tiers.iter().filter(|t| entry.prices_tier(t)).map(|t| (*t).to_owned()).collect();
    (lines, priced)
}

/// Resolves `model` of `provider` at `at` (and the override for `tenant`, when given).
pub fn lookup(catalog: &Catalog, model: &str, provider: &str, at: DateTime<Utc>, tenant: Option<&str>) -> LookupReport {
    let t = EventTime::from_datetime(at);
    let found = catalog.find(model, provider, t).map(|f| {
        let e = f.entry;
        let (prices, service_tiers) = describe(e, t);
        let mut thresholds: Vec<u64> =
            PriceField::ALL.iter().flat_map(|&p| e.field(p).above().iter().map(|(n, _)| n / 1000)).collect();
        thresholds.sort_unstable();
        thresholds.dedup();
        Found {
            key: e.key().to_string(),
            step: f.step.to_string(),
            source: f.source.version().to_string(),
            alias_of: e.alias_of().map(|a| a.to_string()),
            litellm_provider: e.litellm_provider().map(str::to_owned),
            prices,
            service_tiers,
            thresholds_k: thresholds,
            tiered: e.tiered().iter().map(|r| (r.lo, r.hi)).collect(),
            off_peak: e.off_peak().map(|o| {
                o.windows
                    .iter()
                    .map(|w| {
                        let days: Vec<String> = (1..=7).filter(|d| w.weekdays & (1 << d) != 0).map(|d| d.to_string()).collect();
                        let ranges: Vec<String> = w
                            .ranges
                            .iter()
                            .map(|(s, e)| format!("{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, (e / 60) % 24, e % 60))
                            .collect();
                        format!("weekdays {} at {} UTC", days.join(","), ranges.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
    });
    let override_applied = tenant.and_then(|tenant| {
        let name = found.as_ref().map_or(model, |f| f.key.as_str());
        catalog.rules().override_for(tenant, provider, name, t).map(|o| match &o.kind {
            OverrideKind::Multiplier { text, .. } => format!("{} (every price times {text})", o.id),
            OverrideKind::Prices(_) => format!("{} (its own price list replaces the entry)", o.id),
        })
    });
    LookupReport { model: model.to_owned(), provider: provider.to_owned(), at, found, override_applied }
}

impl fmt::Display for LookupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        writeln!(f, "{:?} with provider {:?} at {at}", self.model, self.provider)?;
        let Some(e) = &self.found else {
            writeln!(f, "  no entry: an event would be dead-lettered as unknown_model")?;
            if let Some(o) = &self.override_applied {
                writeln!(f, "  override: {o}")?;
            }
            return Ok(());
        };
        writeln!(f, "  entry:            {}", e.key)?;
        writeln!(f, "  found by:         {}", e.step)?;
        writeln!(f, "  source:           {}", e.source)?;
        writeln!(f, "  litellm_provider: {}", e.litellm_provider.as_deref().unwrap_or("-"))?;
        if let Some(a) = &e.alias_of {
            writeln!(f, "  alias_of:         {a}")?;
        }
        let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
        writeln!(f, "  service tiers:    {} (any other tier: the plain prices)", list(&e.service_tiers))?;
        let k: Vec<String> = e.thresholds_k.iter().map(|n| format!("{n}k")).collect();
        writeln!(f, "  long context:     {}", list(&k))?;
        if !e.tiered.is_empty() {
            let t: Vec<String> = e.tiered.iter().map(|(lo, hi)| format!("({lo}, {hi}]")).collect();
            writeln!(f, "  tiered_pricing:   {} (above the last: implausible_tokens)", t.join(" "))?;
        }
        if let Some(o) = &e.off_peak {
            writeln!(f, "  off_peak_pricing: {o}")?;
        }
        if let Some(o) = &self.override_applied {
            writeln!(f, "  override:         {o}")?;
        }
        writeln!(f, "  prices (USD per token, short context; at {at}):")?;
        for (label, p) in &e.prices {
            writeln!(f, "    {label}: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::catalog::CatalogSource;

    #[test]
    fn names_the_entry_and_the_step() {
        let json = r#"{"anthropic.claude-x-20250514-v1:0": {"litellm_provider": "bedrock_converse",
            "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "input_cost_per_token_batches": 1.5e-06,
            "output_cost_per_token_batches": 7.5e-06, "input_cost_per_token_above_200k_tokens": 6e-06}}"#;
        let (src, _) = CatalogSource::from_litellm_json("c", DateTime::UNIX_EPOCH, json).unwrap();
        let catalog = Catalog::new(vec![src]).unwrap();
        let at = "2026-11-01T00:00:00Z".parse().unwrap();
        let r = lookup(&catalog, "claude-x-20250514", "anthropic", at, None);
        let text = r.to_string();
        assert!(text.contains("entry:            anthropic.claude-x-20250514-v1:0"), "{text}");
        assert!(text.contains("step 2.7"), "{text}");
        assert!(text.contains("service tiers:    batches"), "{text}");
        assert!(text.contains("long context:     200k"), "{text}");
        let r = lookup(&catalog, "claude-y", "anthropic", at, None);
        assert!(r.found.is_none() && r.to_string().contains("unknown_model"));
    }
}
