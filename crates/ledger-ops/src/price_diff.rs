//! `ledger prices diff OLD NEW`: which prices changed between two catalogs (models added,
//! removed, and changed field by field), and what the ledger's traffic of a range would cost
//! under the new catalog: every row's token vector re-priced by the same rules the processor
//! uses, the cost delta per model, exact to the pico-dollar.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ledger_clickhouse::{ClickHouseConfig, LedgerReader, UsageRow};
use ledger_core::catalog::{Catalog, CatalogEntry, CatalogSource};
use ledger_core::event::{Rejection, TokenCounts};
use ledger_core::pricing::{PriceVariants, PricedUsage};
use ledger_core::{Money, PriceField, UsageEvent};

use crate::OpsError;

/// One field of one model that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The field (LiteLLM's name; `tiered_pricing[0].input_cost_per_token`, `off_peak_pricing.windows`).
    pub field: String,
    /// Its value in OLD (`None`: absent).
    pub old: Option<String>,
    /// Its value in NEW.
    pub new: Option<String>,
}

/// The models and fields that differ between two catalog sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    /// OLD's source version.
    pub old_version: String,
    /// NEW's source version.
    pub new_version: String,
    /// Models only NEW prices.
    pub added: Vec<String>,
    /// Models only OLD prices.
    pub removed: Vec<String>,
    /// Models both price, with different fields, by model.
    pub changed: BTreeMap<String, Vec<FieldChange>>,
    /// Models both price identically.
    pub unchanged: usize,
}

fn variant_fields(out: &mut BTreeMap<String, String>, prefix: &str, f: PriceField, v: &PriceVariants) {
    let name = f.litellm_name();
    if let Some(p) = v.plain() {
        out.insert(format!("{prefix}{name}"), p.to_string());
    }
    for (n, p) in v.above() {
        out.insert(format!("{prefix}{name}_above_{}k_tokens", n / 1000), p.to_string());
    }
    for t in v.tiers() {
        if let Some(p) = t.plain {
            out.insert(format!("{prefix}{name}_{}", t.tier), p.to_string());
        }
        for (n, p) in &t.above {
            out.insert(format!("{prefix}{name}_above_{}k_tokens_{}", n / 1000, t.tier), p.to_string());
        }
    }
}

/// Every pricing-relevant field of an entry, as `name -> value text`.
pub fn entry_fields(e: &CatalogEntry) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(p) = e.litellm_provider() {
        out.insert("litellm_provider".to_owned(), p.to_owned());
    }
    if let Some(a) = e.alias_of() {
        out.insert("alias_of".to_owned(), a.to_string());
    }
    for f in PriceField::ALL {
        variant_fields(&mut out, "", f, e.field(f));
    }
    for (i, t) in e.tiered().iter().enumerate() {
        out.insert(format!("tiered_pricing[{i}].range"), format!("({}, {}]", t.lo, t.hi));
        for f in PriceField::ALL {
            variant_fields(&mut out, &format!("tiered_pricing[{i}]."), f, &t.fields[f.index()]);
        }
    }
    if let Some(o) = e.off_peak() {
        out.insert("off_peak_pricing.windows".to_owned(), format!("{:?}", o.windows));
        for f in PriceField::ALL {
            variant_fields(&mut out, "off_peak_pricing.", f, &o.fields[f.index()]);
        }
    }
    out
}

/// Compares two catalog sources entry by entry.
pub fn diff_sources(old: &CatalogSource, new: &CatalogSource) -> CatalogDiff {
    let mut d =
        CatalogDiff { old_version: old.version().to_string(), new_version: new.version().to_string(), ..Default::default() };
    for e in new.entries() {
        let Some(o) = old.get(e.key()) else {
            d.added.push(e.key().to_string());
            continue;
        };
        let (before, after) = (entry_fields(o), entry_fields(e));
        let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let changes: Vec<FieldChange> = names
            .into_iter()
            .filter(|n| before.get(*n) != after.get(*n))
            .map(|n| FieldChange { field: n.clone(), old: before.get(n).cloned(), new: after.get(n).cloned() })
            .collect();
        if changes.is_empty() {
            d.unchanged += 1;
        } else {
            d.changed.insert(e.key().to_string(), changes);
        }
    }
    d.removed = old.entries().filter(|e| new.get(e.key()).is_none()).map(|e| e.key().to_string()).collect();
    d.added.sort();
    d.removed.sort();
    d
}

impl CatalogDiff {
    /// `(model, change, field, old, new)` rows: added and removed models, then changed fields.
    pub fn rows(&self) -> Vec<Vec<String>> {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let mut rows: Vec<Vec<String>> = Vec::new();
        rows.extend(self.added.iter().map(|m| vec![m.clone(), "added".into(), String::new(), String::new(), String::new()]));
        rows.extend(self.removed.iter().map(|m| vec![m.clone(), "removed".into(), String::new(), String::new(), String::new()]));
        for (m, changes) in &self.changed {
            for c in changes {
                rows.push(vec![m.clone(), "changed".into(), c.field.clone(), dash(&c.old), dash(&c.new)]);
            }
        }
        rows
    }
}

/// The cost of one model's rows under OLD (as charged) and NEW.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDelta {
    /// The ledger's `model` of the rows.
    pub model: String,
    /// Rows.
    pub rows: u64,
    /// What they were charged (`cost_usd`), all of them.
    pub old_cost: Money,
    /// What NEW charges for those it prices.
    pub new_cost: Money,
    /// `new_cost` minus the charged cost of the same rows.
    pub delta: Money,
    /// Rows NEW cannot price, by reason (`unknown_model`, `implausible_tokens`, ...).
    pub unpriced: BTreeMap<&'static str, u64>,
    /// The keys NEW prices them with, when any differs from `model`.
    pub new_models: BTreeSet<String>,
}

/// A range of the ledger re-priced under another catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepriceReport {
    /// `[from, to)`, event time.
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// Per model, by model.
    pub models: BTreeMap<String, ModelDelta>,
    /// All models added up.
    pub total: ModelDelta,
}

/// Prices one ledger row's event under `catalog` (the processor's own path: [`Catalog::price`]).
pub fn price_row(catalog: &Catalog, row: &UsageRow) -> Result<PricedUsage, Rejection> {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let mut event = UsageEvent::new(
        String::new(),
        row.event_time.to_datetime(),
        row.tenant_id.clone(),
        row.provider.clone(),
        row.request_model.clone(),
    );
    event.response_model = opt(&row.response_model);
    event.service_tier = opt(&row.service_tier);
    let [input, cache_read, cache_creation, cache_creation_1h, output, reasoning] = row.tokens;
    let tokens = TokenCounts { input, cache_read, cache_creation, cache_creation_1h, output, reasoning };
    catalog.price(&event, &tokens)
}

/// Re-prices one ledger row under `catalog` into `report` ([`price_row`]).
pub fn reprice_row(catalog: &Catalog, row: &UsageRow, report: &mut RepriceReport) -> Result<(), OpsError> {
    let priced = price_row(catalog, row);
    for m in [
        report.models.entry(row.model.clone()).or_insert_with(|| ModelDelta { model: row.model.clone(), ..Default::default() }),
        &mut report.total,
    ] {
        m.rows += 1;
        m.old_cost = m.old_cost.checked_add(row.cost)?;
        match &priced {
            Ok(p) => {
                m.new_cost = m.new_cost.checked_add(p.cost)?;
                m.delta = m.delta.checked_add(p.cost.checked_sub(row.cost)?)?;
                if *p.model != *row.model {
                    m.new_models.insert(p.model.to_string());
                }
            }
            Err(r) => *m.unpriced.entry(r.reason.as_str()).or_insert(0) += 1,
        }
    }
    Ok(())
}

/// `ledger prices diff`: the differences between the first sources of `old` and `new` as text,
/// and with `ledger` the ledger's rows of `month` (`YYYY-MM`, default: last month) re-priced at
/// `new`.
pub async fn diff(
    old: &Catalog,
    new: &Catalog,
    ledger: Option<&ClickHouseConfig>,
    month: Option<&str>,
) -> Result<String, OpsError> {
    use crate::format::titled_table as table;
    let d = diff_sources(&old.sources()[0], &new.sources()[0]);
    let (added, removed, changed) = (d.added.len(), d.removed.len(), d.changed.len());
    let mut out = format!(
        "{} -> {}: {added} added, {removed} removed, {changed} changed, {} unchanged\n",
        d.old_version, d.new_version, d.unchanged
    );
    out += &table("", &["model", "change", "field", "old", "new"], &d.rows());
    if let Some(config) = ledger {
        let (from, to) = match month {
            Some(m) => crate::range::month_range(m)?,
            None => crate::range::previous_month(Utc::now())?,
        };
        let r = reprice(config, new, from, to).await?;
        let title =
            format!("\nthe ledger's rows of {} re-priced at {} (USD)", crate::range::describe(from, to, false), d.new_version);
        out += &table(&title, &["model", "rows", "charged", "at NEW", "delta", "NEW cannot price", "NEW's key"], &r.rows());
    }
    Ok(out)
}

/// Re-prices every ledger row of `[from, to)` under `catalog`.
pub async fn reprice(
    config: &ClickHouseConfig,
    catalog: &Catalog,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<RepriceReport, OpsError> {
    let client = config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let reader = LedgerReader::new(client, &config.database).map_err(OpsError::ClickHouse)?;
    let mut report = RepriceReport { range: (from, to), ..Default::default() };
    let mut failed = None;
    reader
        .usage_rows(from, to, |row| {
            if failed.is_none() {
                failed = reprice_row(catalog, &row, &mut report).err();
            }
        })
        .await
        .map_err(|e| OpsError::clickhouse(e, &config.url))?;
    match failed {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

impl RepriceReport {
    /// `(model, rows, charged, under NEW, delta, rows NEW cannot price, NEW's keys)` rows, the
    /// largest delta first, then a `TOTAL` row; money exact with 12 digits.
    pub fn rows(&self) -> Vec<Vec<String>> {
        let row = |m: &ModelDelta, name: &str| {
            let unpriced: Vec<String> = m.unpriced.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let keys: Vec<&str> = m.new_models.iter().map(String::as_str).collect();
            vec![
                name.to_owned(),
                m.rows.to_string(),
                m.old_cost.to_string(),
                m.new_cost.to_string(),
                m.delta.to_string(),
                unpriced.join(", "),
                keys.join(", "),
            ]
        };
        let mut models: Vec<&ModelDelta> = self.models.values().collect();
        models.sort_by(|a, b| b.delta.abs_cmp(&a.delta).then_with(|| a.model.cmp(&b.model)));
        let mut rows: Vec<Vec<String>> = models.into_iter().map(|m| row(m, &m.model)).collect();
        rows.push(row(&self.total, "TOTAL"));
        rows
    }
}

/// Ordering by magnitude.
trait AbsCmp {
    fn abs_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

impl AbsCmp for Money {
    fn abs_cmp(&self, other: &Money) -> std::cmp::Ordering {
        self.picos().unsigned_abs().cmp(&other.picos().unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::EventTime;

    fn source(name: &str, json: &str) -> CatalogSource {
        CatalogSource::from_litellm_json(name, DateTime::UNIX_EPOCH, json).unwrap().0
    }

    const OLD: &str = r#"{"a": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
        "b": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
        "gone": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#;
    const NEW: &str = r#"{"a": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
        "b": {"input_cost_per_token": 1.5e-06, "output_cost_per_token": 2e-06, "input_cost_per_token_batches": 7.5e-07},
        "new": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#;

    #[test]
    fn models_and_fields() {
        let d = diff_sources(&source("old", OLD), &source("new", NEW));
        assert_eq!((d.added.clone(), d.removed.clone(), d.unchanged), (vec!["new".to_owned()], vec!["gone".to_owned()], 1));
        let b = &d.changed["b"];
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            FieldChange {
                field: "input_cost_per_token".into(),
                old: Some("0.000001000000".into()),
                new: Some("0.000001500000".into())
            }
        );
        assert_eq!(b[1].field, "input_cost_per_token_batches");
        assert_eq!(b[1].old, None);
        assert_eq!(d.rows().len(), 4);
    }

    #[test]
    fn rows_are_repriced_exactly() {
        let catalog = Catalog::new(vec![source("new", NEW)]).unwrap();
        let row = |model: &str, tier: &str, cost: i128| UsageRow {
            event_time: EventTime::from_micros(1_780_000_000_000_000).unwrap(),
            tenant_id: "t".into(),
            provider: "openai".into(),
            model: model.into(),
            request_model: model.into(),
            response_model: String::new(),
            service_tier: tier.into(),
            tokens: [1_000, 0, 0, 0, 100, 0],
            cost: Money::from_picos(cost),
            team: String::new(),
            project: String::new(),
            feature: String::new(),
            price_version: "old".into(),
            kafka_topic: "usage".into(),
            kafka_partition: 0,
            kafka_offset: 0,
            class_costs: [Money::ZERO; 6],
        };
        let mut r = RepriceReport::default();
        // b was 1000 * 1e-6 + 100 * 2e-6 = 0.0012; now 0.0017, and 0.00095 in batch
        for row in [row("b", "", 1_200_000_000), row("b", "batch", 1_200_000_000), row("gone", "", 1_200_000_000)] {
            reprice_row(&catalog, &row, &mut r).unwrap();
        }
        let b = &r.models["b"];
        assert_eq!((b.rows, b.new_cost.picos(), b.delta.picos()), (2, 2_650_000_000, 250_000_000));
        assert_eq!(r.models["gone"].unpriced["unknown_model"], 1);
        assert_eq!(r.total.old_cost.picos(), 3_600_000_000);
        assert_eq!(r.rows().last().unwrap()[0], "TOTAL");
    }
}
