//! Reading catalog sources from files (`FILE[@RFC3339]`).

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};

use ledger_core::catalog::{Catalog, CatalogSource};
use ledger_processor::config::CatalogSourceConfig;

/// Parses `FILE[@RFC3339-instant]`.
pub(crate) fn parse_catalog_arg(arg: &str) -> anyhow::Result<CatalogSourceConfig> {
    let (path, instant) = match arg.rsplit_once('@') {
        Some((p, t)) if !t.is_empty() && t.chars().next().is_some_and(|c| c.is_ascii_digit()) => (p, Some(t)),
        _ => (arg, None),
    };
    let effective_from = instant
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .with_context(|| format!("`{t}` in --catalog {arg} is not an RFC 3339 instant such as 2026-01-01T00:00:00Z"))
        })
        .transpose()?;
    Ok(CatalogSourceConfig { path: PathBuf::from(path), effective_from, name: None })
}

/// Loads every source into one catalog.
pub(crate) fn load_catalog(sources: &[CatalogSourceConfig]) -> anyhow::Result<Catalog> {
    let mut loaded = Vec::with_capacity(sources.len());
    for s in sources {
        let text = std::fs::read_to_string(&s.path)
            .with_context(|| format!("cannot read catalog {} (run from the repository root or pass --catalog)", s.path.display()))?;
        let name = s.name.clone().unwrap_or_else(|| {
            s.path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "catalog".to_owned())
        });
        let effective_from = s.effective_from.unwrap_or(DateTime::UNIX_EPOCH);
        let (source, report) = CatalogSource::from_litellm_json(&name, effective_from, &text)
            .with_context(|| format!("catalog {} is not a valid LiteLLM price file", s.path.display()))?;
        tracing::debug!(catalog = %s.path.display(), ?report, "catalog loaded");
        loaded.push(source);
    }
    Catalog::new(loaded).context("building the price history")
}
