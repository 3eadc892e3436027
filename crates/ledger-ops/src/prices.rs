//! Price catalogs as `ledger prices` shows them: what a file prices, skips, rounds and ignores.

use std::collections::{BTreeMap, BTreeSet};

use ledger_core::catalog::CatalogEntry;
use ledger_core::PriceField;
use ledger_processor::catalog::{load_catalogs, parse_catalog_arg};

use crate::OpsError;

/// What loading one catalog file found, as table rows.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// The file.
    pub source: String,
    /// Its price version.
    pub version: String,
    /// `(what, count)`: entries, priced, skipped (and why), rounded, ignored.
    pub counts: Vec<Vec<String>>,
    /// `(litellm_provider, priced models)`.
    pub by_provider: Vec<Vec<String>>,
    /// `(model, field, text in file, price used)` of every rounded price.
    pub rounded: Vec<Vec<String>>,
    /// `(model, field, value, why)` of every ignored price field.
    pub ignored: Vec<Vec<String>>,
    /// `(entry, reason)` of every skipped entry.
    pub skipped: Vec<Vec<String>>,
    /// `(model, provider, input, output, cache read, cache write, variants)` of every priced model.
    pub entries: Vec<Vec<String>>,
    /// Per service tier the catalog names: the models that price it and those charged at the
    /// plain tier's prices instead (docs/pricing.md "The formula", step 1).
    pub tiers: Vec<TierCoverage>,
}

/// Which models price one service tier.
#[derive(Debug, Clone, Default)]
pub struct TierCoverage {
    /// The suffix of the price fields (`batches`, `priority`, `flex`, ...).
    pub suffix: String,
    /// Models with an input or output price of that tier.
    pub priced: usize,
    /// Models without one, charged at the plain tier's prices for that tier: `(model,
    /// litellm_provider)`.
    pub unpriced: Vec<(String, String)>,
    /// The `litellm_provider`s with at least one model that prices the tier.
    pub providers: BTreeSet<String>,
}

impl TierCoverage {
    /// The unpriced models of providers that price the tier for other models (the likely gaps).
    pub fn gaps(&self) -> impl Iterator<Item = &(String, String)> + '_ {
        self.unpriced.iter().filter(|(_, p)| self.providers.contains(p))
    }
}

impl CheckReport {
    /// The report as text tables: counts, models per provider, service tiers, rounded and
    /// ignored prices; with `verbose` also every skipped entry, every priced model and every
    /// model a tier leaves at the plain prices.
    pub fn render(&self, verbose: bool) -> String {
        use crate::format::table;
        let mut out = format!("catalog {} (price version {})\n", self.source, self.version);
        out += &table("", &["", "count"], &self.counts);
        out += &table("\npriced models by litellm_provider", &["litellm_provider", "priced models"], &self.by_provider);
        let header =
            ["service tier", "models pricing it", "models at the plain prices", "of them, of providers that price the tier"];
        let title = "\nservice tiers (a model without an input or output price of the tier is charged its plain prices)";
        out += &table(title, &header, &self.tier_rows());
        if !self.rounded.is_empty() {
            let header = ["model", "field", "text in file", "price used (USD/token)"];
            out += &table("\nrounded prices (half to even, 12 fractional digits)", &header, &self.rounded);
        }
        if !self.ignored.is_empty() {
            out += &table("\nignored price fields", &["model", "field", "value", "why ignored"], &self.ignored);
        }
        if verbose {
            let rows: Vec<Vec<String>> = self
                .tiers
                .iter()
                .flat_map(|t| t.unpriced.iter().map(|(m, p)| vec![t.suffix.clone(), m.clone(), p.clone()]))
                .collect();
            out +=
                &table("\nmodels charged at the plain prices for a tier", &["service tier", "model", "litellm_provider"], &rows);
            out += &table("\nskipped entries", &["skipped entry", "reason"], &self.skipped);
            let header = ["model", "litellm_provider", "input", "output", "cache read", "cache write", "variants"];
            out += &table("\npriced models (USD per token)", &header, &self.entries);
        }
        out
    }

    /// `(service tier, models that price it, models that do not, the first of those whose
    /// provider prices the tier for other models)` rows.
    pub fn tier_rows(&self) -> Vec<Vec<String>> {
        self.tiers
            .iter()
            .map(|t| {
                let tier = if t.suffix == "batches" { "batch (_batches)".to_owned() } else { t.suffix.clone() };
                let gaps: Vec<&str> = t.gaps().map(|(m, _)| m.as_str()).collect();
                let mut names = gaps.iter().take(4).copied().collect::<Vec<_>>().join(", ");
                if gaps.len() > 4 {
                    names.push_str(&format!(", ... ({} in all; --verbose lists every model)", gaps.len()));
                }
                vec![tier, t.priced.to_string(), t.unpriced.len().to_string(), names]
            })
            .collect()
    }
}

/// Loads `spec` (`FILE[@RFC3339]`) and reports what it holds; an error names what is wrong.
pub fn check(spec: &str) -> Result<CheckReport, OpsError> {
    let loaded = parse_catalog_arg(spec).and_then(|s| load_catalogs(std::slice::from_ref(&s)));
    let (catalog, reports) = loaded.map_err(|e| OpsError::Invalid(format!("{spec} is not a valid catalog: {e}")))?;
    let (Some(source), Some(report)) = (catalog.sources().first(), reports.first()) else {
        return Err(OpsError::Invalid(format!("{spec} holds no catalog source")));
    };
    let row = |cells: &[&str]| cells.iter().map(|c| (*c).to_owned()).collect::<Vec<String>>();
    let mut counts = vec![
        row(&["entries", &report.entries.to_string()]),
        row(&["priced models", &report.priced.to_string()]),
        row(&["  of them alias_of entries", &report.aliases.to_string()]),
        row(&["  of them tiered_pricing entries", &report.tiered.to_string()]),
        row(&["  of them off_peak_pricing entries", &report.off_peak.to_string()]),
        row(&["skipped entries", &report.skipped.len().to_string()]),
    ];
    for (reason, n) in report.skipped_by_reason() {
        counts.push(vec![format!("  skipped: {reason}"), n.to_string()]);
    }
    counts.push(row(&["prices rounded to 12 digits", &report.rounded.len().to_string()]));
    counts.push(row(&["price fields ignored", &report.ignored.len().to_string()]));
    counts.push(row(&["load time (ms)", &report.load_time.as_millis().to_string()]));
    let mut by_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for e in source.entries() {
        *by_provider.entry(e.litellm_provider().unwrap_or("(none)")).or_insert(0) += 1;
    }
    let mut entries: Vec<_> = source.entries().collect();
    entries.sort_by(|a, b| a.key().cmp(b.key()));
    let mut suffixes: Vec<&str> = entries.iter().flat_map(|e| e.service_tiers()).collect();
    suffixes.sort_unstable();
    suffixes.dedup();
    let tiers = suffixes
        .into_iter()
        .map(|suffix| {
            let (priced, unpriced): (Vec<&CatalogEntry>, Vec<&CatalogEntry>) =
                entries.iter().partition(|e| e.prices_tier(suffix));
            let provider = |e: &CatalogEntry| e.litellm_provider().unwrap_or("(none)").to_owned();
            TierCoverage {
                suffix: suffix.to_owned(),
                priced: priced.len(),
                unpriced: unpriced.iter().map(|e| (e.key().to_string(), provider(e))).collect(),
                providers: priced.iter().map(|e| provider(e)).collect(),
            }
        })
        .collect();
    let entries = entries
        .into_iter()
        .map(|e| {
            let plain = |f: PriceField| e.field(f).plain().map(|m| m.to_string()).unwrap_or_else(|| "-".to_owned());
            let variants: usize = PriceField::ALL.iter().map(|&f| e.field(f).len()).sum::<usize>()
                - PriceField::ALL.iter().filter(|&&f| e.field(f).plain().is_some()).count();
            vec![
                e.key().to_string(),
                e.litellm_provider().unwrap_or("").to_owned(),
                plain(PriceField::Input),
                plain(PriceField::Output),
                plain(PriceField::CacheRead),
                plain(PriceField::CacheCreation),
                variants.to_string(),
            ]
        })
        .collect();
    Ok(CheckReport {
        source: report.source.clone(),
        version: report.version.clone(),
        counts,
        by_provider: by_provider.into_iter().map(|(p, n)| vec![p.to_owned(), n.to_string()]).collect(),
        rounded: report
            .rounded
            .iter()
            .map(|r| vec![r.model.clone(), r.field.clone(), r.text.clone(), r.rounded.to_string()])
            .collect(),
        ignored: report
            .ignored
            .iter()
            .map(|i| vec![i.model.clone(), i.field.clone(), i.text.clone(), i.reason.clone()])
            .collect(),
        skipped: report.skipped.iter().map(|s| vec![s.model.clone(), s.reason.to_string()]).collect(),
        entries,
        tiers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_checks_and_a_missing_file_is_named() {
        let file =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog/sources/litellm-1.110.2-model_prices_and_context_window.json");
        let report = check(file).unwrap();
        assert_eq!(report.counts[1], vec!["priced models".to_owned(), "4029".to_owned()]);
        assert_eq!(report.entries.len().to_string(), report.counts[1][1]);
        // per service tier, the models that price it and the others: they add up to every model
        let batch = report.tiers.iter().find(|t| t.suffix == "batches").unwrap();
        assert!(batch.priced > 100);
        assert!(batch.unpriced.contains(&("mistral/mistral-large-latest".to_owned(), "mistral".to_owned())));
        assert_eq!(batch.priced + batch.unpriced.len(), 4029);
        assert!(batch.gaps().all(|(_, p)| batch.providers.contains(p)) && batch.gaps().count() < batch.unpriced.len());
        let text = report.render(false);
        assert!(text.contains("batch (_batches)") && text.contains("--verbose lists every model"), "{text}");
        let err = check("/nonexistent.json").unwrap_err().to_string();
        assert!(err.contains("/nonexistent.json is not a valid catalog"), "{err}");
    }
}
