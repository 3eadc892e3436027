//! Assembling a [`CatalogSource`] from its read entries: `alias_of` resolved against the whole
//! source, each entry's prices resolved ahead into tables, its price versions, and the indices
//! of the name rules.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::forms::{OffPeak, TierRange};
use super::litellm::Read;
use super::lookup::bedrock_id;
use super::report::{CatalogError, LoadReport, SkipReason, SkippedEntry};
use super::source::{CatalogEntry, CatalogSource, NameMap, TokenLimits};
use super::table::PriceTable;
use crate::pricing::{FieldSet, PriceField};

/// A priceable entry as read, before its tables are built.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) key: Arc<str>,
    pub(super) provider: Option<Box<str>>,
    pub(super) prices: FieldSet,
    pub(super) tiered: Vec<TierRange>,
    pub(super) off_peak: Option<OffPeak>,
    pub(super) limits: TokenLimits,
}

/// Collects the entries of one source in file order.
pub(super) struct SourceBuilder {
    name: Arc<str>,
    effective_from: DateTime<Utc>,
    version: Arc<str>,
    entries: Vec<(usize, CatalogEntry)>,
    aliases: Vec<(usize, String, String)>,
    skipped: Vec<(usize, SkippedEntry)>,
    /// Keys of entries that are not priceable (for the alias load errors).
    unpriced: HashSet<String>,
    report: LoadReport,
}

impl SourceBuilder {
    pub(super) fn new(name: &str, effective_from: DateTime<Utc>, version: String, entries: usize) -> SourceBuilder {
        let report = LoadReport {
            source: name.to_owned(),
            effective_from,
            version: version.clone(),
            entries,
            priced: 0,
            aliases: 0,
            tiered: 0,
            off_peak: 0,
            skipped: Vec::new(),
            rounded: Vec::new(),
            ignored: Vec::new(),
            load_time: std::time::Duration::ZERO,
        };
        SourceBuilder {
            name: name.into(),
            effective_from,
            version: version.into(),
            entries: Vec::with_capacity(entries),
            aliases: Vec::new(),
            skipped: Vec::new(),
            unpriced: HashSet::new(),
            report,
        }
    }

    /// Adds the entry at `position` of the file.
    pub(super) fn add(&mut self, position: usize, key: &str, read: Read) {
        match read {
            Read::Entry(parsed, records) => {
                self.report.rounded.extend(records.rounded);
                self.report.ignored.extend(records.ignored);
                let entry = build_entry(*parsed, &self.version);
                self.entries.push((position, entry));
            }
            Read::Alias(target, records) => {
                self.report.ignored.extend(records.ignored);
                self.aliases.push((position, key.to_owned(), target));
            }
            Read::Skip(reason) => {
                self.unpriced.insert(key.to_owned());
                self.skipped.push((position, SkippedEntry { model: key.to_owned(), reason }));
            }
        }
    }

    /// Resolves the aliases and builds the source.
    pub(super) fn finish(mut self) -> Result<(CatalogSource, LoadReport), CatalogError> {
        let by_key: HashMap<&str, usize> = self.entries.iter().enumerate().map(|(i, (_, e))| (&*e.key, i)).collect();
        let alias_keys: HashSet<&str> = self.aliases.iter().map(|(_, k, _)| k.as_str()).collect();
        let mut resolved = Vec::new();
        for (position, key, target) in &self.aliases {
            let reason = if alias_keys.contains(target.as_str()) {
                SkipReason::AliasOfAlias { target: target.clone() }
            } else if let Some(&i) = by_key.get(target.as_str()) {
                resolved.push((*position, alias_entry(&self.entries[i].1, key, &self.version)));
                continue;
            } else if self.unpriced.contains(target) {
                SkipReason::AliasTargetNotPriceable { target: target.clone() }
            } else {
                SkipReason::AliasTargetMissing { target: target.clone() }
            };
            self.skipped.push((*position, SkippedEntry { model: key.clone(), reason }));
        }
        self.report.aliases = resolved.len();
        self.entries.extend(resolved);
        self.entries.sort_by_key(|(p, _)| *p);
        self.skipped.sort_by_key(|(p, _)| *p);
        let entries: Vec<CatalogEntry> = self.entries.into_iter().map(|(_, e)| e).collect();
        let mut report = self.report;
        report.skipped = self.skipped.into_iter().map(|(_, s)| s).collect();
        report.priced = entries.len();
        report.tiered = entries.iter().filter(|e| !e.tiered.is_empty()).count();
        report.off_peak = entries.iter().filter(|e| e.off_peak.is_some()).count();
        if entries.is_empty() {
            return Err(CatalogError::NoPriceableModel { source_name: self.name.to_string(), entries: report.entries });
        }
        let mut index: NameMap<u32> = HashMap::with_capacity_and_hasher(entries.len(), Default::default());
        let mut bedrock: HashMap<&str, (super::lookup::BedrockPreference, u32)> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            index.insert(e.key.clone(), i);
            if let Some((name, preference)) = bedrock_id(&e.key) {
                match bedrock.get(name) {
                    Some((best, _)) if *best <= preference => {}
                    _ => {
                        bedrock.insert(name, (preference, i));
                    }
                }
            }
        }
        let bedrock_ids: NameMap<u32> = bedrock.into_iter().map(|(name, (_, i))| (Arc::from(name), i)).collect();
        let sub_micro = i64::from(!self.effective_from.timestamp_subsec_nanos().is_multiple_of(1_000));
        let source = CatalogSource {
            name: self.name,
            effective_from: self.effective_from,
            effective_from_micros: self.effective_from.timestamp_micros() + sub_micro,
            version: self.version,
            entries,
            index,
            bedrock_ids,
        };
        Ok((source, report))
    }
}

/// `fields` with `over`'s prices replacing those of the same name.
fn overlaid(fields: &FieldSet, over: &FieldSet) -> FieldSet {
    let mut out = fields.clone();
    for f in PriceField::ALL {
        out[f.index()].overlay(&over[f.index()]);
    }
    out
}

fn build_entry(p: Parsed, version: &Arc<str>) -> CatalogEntry {
    let inclusive = p.provider.as_deref() == Some("xai");
    let plain = [FieldSet::default()];
    let tiers: Vec<&FieldSet> =
        if p.tiered.is_empty() { plain.iter().collect() } else { p.tiered.iter().map(|t| &t.fields).collect() };
    let mut tables = Vec::with_capacity(tiers.len() * 2);
    for tier in tiers {
        let fields = overlaid(&p.prices, tier);
        // Every tier has an input and an output price (checked when read), so a table exists.
        tables.extend(PriceTable::build(&fields, inclusive));
        if let Some(o) = &p.off_peak {
            tables.extend(PriceTable::build(&overlaid(&fields, &o.fields), inclusive));
        }
    }
    CatalogEntry {
        key: p.key,
        litellm_provider: p.provider,
        prices: p.prices,
        alias_of: None,
        tiered: p.tiered.into(),
        version_off_peak: p.off_peak.as_ref().map(|_| Arc::from(format!("{version};off_peak"))),
        off_peak: p.off_peak.map(Arc::new),
        tables: tables.into(),
        version: Arc::clone(version),
        limits: p.limits,
    }
}

fn alias_entry(target: &CatalogEntry, key: &str, source_version: &Arc<str>) -> CatalogEntry {
    let version: Arc<str> = Arc::from(format!("{source_version};alias_of={}", target.key));
    CatalogEntry {
        key: key.into(),
        alias_of: Some(Arc::clone(&target.key)),
        version_off_peak: target.off_peak.as_ref().map(|_| Arc::from(format!("{version};off_peak"))),
        version,
        ..target.clone()
    }
}
