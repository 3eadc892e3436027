//! Price catalogs as `ledger prices` shows them: what a file prices, skips, rounds and ignores.

use std::collections::BTreeMap;

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
}

impl CheckReport {
    /// The report for people: counts, providers, rounded and ignored prices; `verbose` adds
    /// the skipped entries and every priced model.
    pub fn to_text(&self, verbose: bool) -> String {
        let t = |title: &str, header: &[&str], rows: &[Vec<String>]| format!("{title}{}\n", crate::format::table(header, rows.to_vec(), &[]));
        let mut out = format!("catalog {} (price version {})\n", self.source, self.version);
        out.push_str(&t("", &["", "count"], &self.counts));
        out.push_str(&t("\npriced models by litellm_provider\n", &["litellm_provider", "priced models"], &self.by_provider));
        if !self.rounded.is_empty() {
            let header = ["model", "field", "text in file", "price used (USD/token)"];
            out.push_str(&t("\nrounded prices (half to even, 12 fractional digits)\n", &header, &self.rounded));
        }
        if !self.ignored.is_empty() {
            out.push_str(&t("\nignored price fields\n", &["model", "field", "value", "why ignored"], &self.ignored));
        }
        if verbose {
            out.push_str(&t("\nskipped entries\n", &["skipped entry", "reason"], &self.skipped));
            let header = ["model", "litellm_provider", "input", "output", "cache read", "cache write", "variants"];
            out.push_str(&t("\npriced models (USD per token)\n", &header, &self.entries));
        }
        out
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
        row(&["skipped entries", &report.skipped.len().to_string()]),
    ];
    for (reason, n) in report.skipped_by_reason() {
        counts.push(vec![format!("  skipped: {reason}"), n.to_string()]);
    }
    counts.push(row(&["prices rounded to 12 digits", &report.rounded.len().to_string()]));
    counts.push(row(&["price fields ignored", &report.ignored.len().to_string()]));
    let mut by_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for e in source.entries() {
        *by_provider.entry(e.litellm_provider().unwrap_or("(none)")).or_insert(0) += 1;
    }
    let mut entries: Vec<_> = source.entries().collect();
    entries.sort_by(|a, b| a.key().cmp(b.key()));
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_checks_and_a_missing_file_is_named() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog/litellm-prices.json");
        let report = check(file).unwrap();
        assert_eq!(report.counts[1][0], "priced models");
        assert!(report.counts[1][1].parse::<usize>().unwrap() > 0);
        assert_eq!(report.entries.len().to_string(), report.counts[1][1]);
        let err = check("/nonexistent.json").unwrap_err().to_string();
        assert!(err.contains("/nonexistent.json is not a valid catalog"), "{err}");
    }
}
