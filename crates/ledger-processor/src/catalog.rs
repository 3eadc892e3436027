//! Reading catalog sources from files (`FILE[@RFC3339]`): the one loader of `ledger price`,
//! `ledger prices check` and `ledger process`, so every job prices with the same history.
//! (The catalog itself, in `ledger-core`, parses text and does no I/O.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::CatalogSourceConfig;
use ledger_core::catalog::{Catalog, CatalogSource, LoadReport, PricingRules};

/// Parses `FILE[@RFC3339-instant]` (no instant: in effect since the beginning of time).
/// A path that itself contains `@` works when no instant follows.
pub fn parse_catalog_arg(spec: &str) -> Result<CatalogSourceConfig, String> {
    if let Some((path, instant)) = spec.rsplit_once('@') {
        match DateTime::parse_from_rfc3339(instant) {
            Ok(t) => {
                return Ok(CatalogSourceConfig {
                    path: PathBuf::from(path),
                    effective_from: Some(t.with_timezone(&Utc)),
                    name: None,
                })
            }
            Err(e) if !Path::new(spec).exists() => {
                return Err(format!(
                    "--catalog {spec}: {instant:?} after '@' is not an RFC 3339 instant ({e}); \
                     write e.g. FILE@2027-01-01T00:00:00Z"
                ));
            }
            Err(_) => {}
        }
    }
    Ok(CatalogSourceConfig { path: PathBuf::from(spec), effective_from: None, name: None })
}

/// Reads and loads every source into one price history. Source names default to the file
/// stem, made unique when the same stem is given twice with the same instant.
pub fn load_catalogs(sources: &[CatalogSourceConfig]) -> Result<(Catalog, Vec<LoadReport>), String> {
    let mut loaded = Vec::with_capacity(sources.len());
    let mut reports = Vec::with_capacity(sources.len());
    let mut used: Vec<(String, DateTime<Utc>)> = Vec::new();
    for s in sources {
        let started = Instant::now();
        let effective_from = s.effective_from.unwrap_or(DateTime::UNIX_EPOCH);
        let text = std::fs::read_to_string(&s.path).map_err(|e| {
            format!("cannot read catalog {}: {e} (run from the repository root or pass --catalog)", s.path.display())
        })?;
        let stem = s.name.clone().unwrap_or_else(|| {
            s.path
                .file_stem()
                .map(|n| n.to_string_lossy().replace('@', "_"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "catalog".to_owned())
        });
        let mut name = stem.clone();
        let mut n = 2;
        while used.iter().any(|(u, t)| *u == name && *t == effective_from) {
            name = format!("{stem}-{n}");
            n += 1;
        }
        used.push((name.clone(), effective_from));
        let (source, mut report) =
            CatalogSource::from_litellm_json(&name, effective_from, &text).map_err(|e| format!("{}: {e}", s.path.display()))?;
        report.load_time = started.elapsed();
        loaded.push(source);
        reports.push(report);
    }
    let catalog = Catalog::new(loaded).map_err(|e| e.to_string())?;
    Ok((catalog, reports))
}

/// Reads a local pricing rules file (aliases and overrides, docs/pricing.md); every problem is
/// named.
pub fn load_rules(path: &Path) -> Result<PricingRules, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read pricing rules {}: {e}", path.display()))?;
    PricingRules::from_toml(&text).map_err(|problems| format!("pricing rules {}:\n  {}", path.display(), problems.join("\n  ")))
}

/// [`load_catalogs`] with the local pricing rules of `rules`, when given.
pub fn load_pricing(sources: &[CatalogSourceConfig], rules: Option<&Path>) -> Result<(Catalog, Vec<LoadReport>), String> {
    let (catalog, reports) = load_catalogs(sources)?;
    match rules {
        Some(path) => Ok((catalog.with_rules(load_rules(path)?), reports)),
        None => Ok((catalog, reports)),
    }
}

/// [`load_pricing`] of `FILE[@RFC3339]` specs as the command line gives them; none means the
/// shipped catalog ([`DEFAULT_CATALOG`](crate::config::DEFAULT_CATALOG)).
pub fn load_specs(specs: &[String], rules: Option<&Path>) -> Result<(Catalog, Vec<LoadReport>), String> {
    let default = [crate::config::DEFAULT_CATALOG.to_owned()];
    let specs = if specs.is_empty() { &default[..] } else { specs };
    let sources: Vec<_> = specs.iter().map(|s| parse_catalog_arg(s)).collect::<Result<_, _>>()?;
    load_pricing(&sources, rules)
}

/// [`load_pricing`] for the services: the load reports go to the log.
pub fn load_catalog(sources: &[CatalogSourceConfig], rules: Option<&Path>) -> Result<Catalog, String> {
    let (catalog, reports) = load_pricing(sources, rules).map_err(|e| format!("loading the price catalog: {e}"))?;
    for r in &reports {
        tracing::info!(
            version = %r.version,
            priced = r.priced,
            skipped = r.skipped.len(),
            rounded = r.rounded.len(),
            load_ms = r.load_time.as_millis() as u64,
            "catalog source loaded"
        );
    }
    let rules = catalog.rules();
    if rules.alias_count() > 0 || rules.has_overrides() {
        tracing::info!(aliases = rules.alias_count(), overrides = rules.overrides().len(), "pricing rules loaded");
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_args() {
        let s = parse_catalog_arg("a.json@2027-01-01T00:00:00Z").unwrap();
        assert_eq!(s.path, PathBuf::from("a.json"));
        assert_eq!(s.effective_from.unwrap().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        let s = parse_catalog_arg("a.json").unwrap();
        assert_eq!(s.effective_from, None);
        assert!(parse_catalog_arg("a.json@yesterday").is_err());
    }
}
