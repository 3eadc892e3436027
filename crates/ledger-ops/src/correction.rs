//! Price corrections: `ledger close --month M --correct-prices CATALOG`.
//!
//! The ledger is never rewritten. Every row of the month is re-priced under the corrected
//! catalog (the processor's own pricing), and what each token class of each row would cost more
//! or less becomes a correction line of the month: the charge-line grain plus the per-token
//! price difference, so `price difference x tokens = cost` holds for every line. The earlier
//! corrections of the month are reversed by the same record (lines that would be repeated
//! unchanged cancel out), so a month's corrections add up to "latest prices minus the ledger's".
//! The next chargeback and FOCUS export of the month show the lines as corrections
//! ([`crate::close::statement`]): closed total + corrections = the ledger + price corrections.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ledger_clickhouse::charge_lines::{sort_lines, ChargeLine};
use ledger_clickhouse::corrections::{self, CorrectionRecord};
use ledger_clickhouse::{ClickHouseConfig, LedgerReader, UsageRow};
use ledger_core::catalog::Catalog;
use ledger_core::pricing::PricedUsage;
use ledger_core::{Money, TokenClass};

use crate::OpsError;

/// A line's identity: its charge key with the per-token price difference, and its partition.
type LineKey = (DateTime<Utc>, String, String, String, String, String, String, String, TokenClass, Money, String, i32);

fn key_of(l: &ChargeLine) -> LineKey {
    (
        l.day,
        l.tenant_id.clone(),
        l.team.clone(),
        l.project.clone(),
        l.feature.clone(),
        l.provider.clone(),
        l.model.clone(),
        l.price_version.clone(),
        l.class,
        l.unit_price,
        l.kafka_topic.clone(),
        l.kafka_partition,
    )
}

/// The correction lines of a month's rows re-priced one by one (pure: no I/O).
#[derive(Debug, Default)]
pub struct CorrectionBuilder {
    lines: BTreeMap<LineKey, ChargeLine>,
    /// Rows re-priced.
    pub rows_repriced: u64,
    /// Rows whose cost changed.
    pub rows_changed: u64,
    /// Rows the corrected catalog cannot price, by the row's model and the reason.
    pub unpriced: BTreeMap<(String, &'static str), u64>,
}

impl CorrectionBuilder {
    /// Adds one ledger row and its price under the corrected catalog.
    pub fn add(&mut self, row: &UsageRow, priced: Result<PricedUsage, ledger_core::event::Rejection>) -> Result<(), OpsError> {
        self.rows_repriced += 1;
        let priced = match priced {
            Ok(p) => p,
            Err(r) => {
                *self.unpriced.entry((row.model.clone(), r.reason.as_str())).or_insert(0) += 1;
                return Ok(());
            }
        };
        let t = &priced.terms;
        let new = [t.input, t.cache_read, t.cache_write, t.cache_write_1h, t.output, t.reasoning];
        let tokens = row.class_tokens();
        let day = crate::chart::floor_day(row.event_time.to_datetime());
        let version = priced.price_version_text();
        let mut changed = false;
        for (i, class) in TokenClass::ALL.into_iter().enumerate() {
            let delta = new[i].checked_sub(row.class_costs[i])?;
            if delta == Money::ZERO {
                continue;
            }
            changed = true;
            let n = tokens[i];
            let per_token =
                (n > 0 && delta.picos() % i128::from(n) == 0).then(|| Money::from_picos(delta.picos() / i128::from(n)));
            let Some(per_token) = per_token else {
                return Err(OpsError::Inconsistent(format!(
                    "row at offset {} of {} partition {}: the {class} cost changes by {delta} USD, which is not a per-token \
                     price difference times its {n} tokens",
                    row.kafka_offset, row.kafka_topic, row.kafka_partition
                )));
            };
            let line = ChargeLine {
                day,
                tenant_id: row.tenant_id.clone(),
                team: row.team.clone(),
                project: row.project.clone(),
                feature: row.feature.clone(),
                provider: row.provider.clone(),
                model: row.model.clone(),
                price_version: version.to_string(),
                class,
                unit_price: per_token,
                kafka_topic: row.kafka_topic.clone(),
                kafka_partition: row.kafka_partition,
                first_offset: row.kafka_offset,
                last_offset: row.kafka_offset,
                events: 1,
                tokens: n,
                cost: delta,
                ingest_month: None,
            };
            match self.lines.entry(key_of(&line)) {
                Entry::Vacant(v) => {
                    v.insert(line);
                }
                Entry::Occupied(mut o) => {
                    let l = o.get_mut();
                    l.first_offset = l.first_offset.min(row.kafka_offset);
                    l.last_offset = l.last_offset.max(row.kafka_offset);
                    l.events += 1;
                    l.tokens += n;
                    l.cost = l.cost.checked_add(delta)?;
                }
            }
        }
        self.rows_changed += u64::from(changed);
        Ok(())
    }

    /// The lines to record: the new differences, with `earlier` (the lines of the month's
    /// earlier corrections) reversed. A line the new correction would repeat unchanged cancels
    /// its reversal, so re-running a correction records nothing.
    pub fn finish(mut self, earlier: &[ChargeLine]) -> Result<Vec<ChargeLine>, OpsError> {
        let mut out = Vec::new();
        for old in earlier {
            if let Entry::Occupied(new) = self.lines.entry(key_of(old)) {
                let l = new.get();
                if (l.events, l.tokens, l.cost, l.first_offset, l.last_offset)
                    == (old.events, old.tokens, old.cost, old.first_offset, old.last_offset)
                {
                    new.remove();
                    continue;
                }
            }
            let mut reversal = old.clone();
            reversal.unit_price = Money::ZERO.checked_sub(old.unit_price)?;
            reversal.cost = Money::ZERO.checked_sub(old.cost)?;
            reversal.ingest_month = None;
            out.push(reversal);
        }
        out.extend(self.lines.into_values());
        sort_lines(&mut out);
        Ok(out)
    }
}

/// What `ledger close --correct-prices` recorded.
#[derive(Debug, Clone)]
pub struct CorrectionOutcome {
    /// The correction's row.
    pub record: CorrectionRecord,
    /// Earlier corrections of the month it reverses.
    pub reverses: usize,
}

impl CorrectionOutcome {
    /// One paragraph for people.
    pub fn to_text(&self, database: &str) -> String {
        let c = &self.record;
        let reverses = match self.reverses {
            0 => String::new(),
            n => format!(" (reversing what {n} earlier correction(s) recorded)"),
        };
        format!(
            "recorded a price correction of {} in database {database}: {} of {} rows re-priced at {} cost {} USD more \
             (exact; negative: less), {} correction lines{reverses}.\nThe ledger's rows are unchanged; the next chargeback \
             of {} shows the lines as corrections (FOCUS ChargeClass \"Correction\"): `ledger export focus --month {}`.",
            c.month, c.rows_changed, c.rows_repriced, c.catalog_version, c.cost, c.lines, c.month, c.month
        )
    }
}

/// Re-prices every ledger row of `month` under `catalog` and records the differences as a price
/// correction. Refuses when the catalog cannot price a row, or when there is nothing to correct.
pub async fn correct_prices(
    config: &ClickHouseConfig,
    month: &str,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<CorrectionOutcome, OpsError> {
    let (from, to) = crate::range::month_range(month)?;
    let month = month.trim().to_owned();
    let client = config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let (db, ch) = (&config.database, |e| OpsError::clickhouse(e, &config.url));
    let earlier = crate::close::price_corrections(config, &client, &month, None).await?;
    let reader = LedgerReader::new(client.clone(), db).map_err(OpsError::ClickHouse)?;
    let mut builder = CorrectionBuilder::default();
    let mut failed = None;
    reader
        .usage_rows(from, to, |row| {
            if failed.is_none() {
                failed = builder.add(&row, crate::price_diff::price_row(catalog, &row)).err();
            }
        })
        .await
        .map_err(ch)?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !builder.unpriced.is_empty() {
        let list: Vec<String> = builder.unpriced.iter().map(|((m, r), n)| format!("{n} rows of {m} ({r})")).collect();
        return Err(OpsError::Invalid(format!(
            "the corrected catalog cannot price {}; nothing was recorded. A correction re-prices every row of the month: \
             check the catalog with `ledger prices check FILE`, or add the models with --rules aliases.",
            list.join(", ")
        )));
    }
    let (repriced, changed) = (builder.rows_repriced, builder.rows_changed);
    let lines = builder.finish(&earlier.lines)?;
    let version: Vec<&str> = catalog.sources().iter().map(|s| s.version().as_ref()).collect();
    if lines.is_empty() {
        return Err(OpsError::Invalid(format!(
            "nothing to correct: the {repriced} rows of {month} already cost what {} says{}; nothing was recorded.",
            version.join(", "),
            if earlier.records.is_empty() { "" } else { " after the month's earlier corrections" }
        )));
    }
    let record = CorrectionRecord {
        month,
        correction_id: uuid::Uuid::now_v7().to_string(),
        corrected_at: now,
        catalog_version: version.join(", "),
        rows_repriced: repriced,
        rows_changed: changed,
        lines: lines.len() as u64,
        cost: Money::checked_sum(lines.iter().map(|l| l.cost))?,
    };
    corrections::record_correction(&client, db, &record, &lines).await.map_err(ch)?;
    Ok(CorrectionOutcome { record, reverses: earlier.records.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::catalog::CatalogSource;
    use ledger_core::EventTime;

    fn catalog(version: &str, input: &str) -> Catalog {
        let json = format!(r#"{{"m": {{"input_cost_per_token": {input}, "output_cost_per_token": 2e-06}}}}"#);
        Catalog::new(vec![CatalogSource::from_litellm_json(version, DateTime::UNIX_EPOCH, &json).unwrap().0]).unwrap()
    }

    /// A row of model m charged at 1e-6 per input token and 2e-6 per output token.
    fn row(offset: i64, input: u64, output: u64) -> UsageRow {
        let (i, o) = (Money::from_picos(i128::from(input) * 1_000_000), Money::from_picos(i128::from(output) * 2_000_000));
        UsageRow {
            event_time: EventTime::from_micros(1_780_000_000_000_000 + offset * 1_000_000).unwrap(),
            tenant_id: "t".into(),
            provider: "openai".into(),
            model: "m".into(),
            request_model: "m".into(),
            response_model: String::new(),
            service_tier: String::new(),
            tokens: [input, 0, 0, 0, output, 0],
            cost: i.checked_add(o).unwrap(),
            team: String::new(),
            project: String::new(),
            feature: String::new(),
            price_version: "v1".into(),
            kafka_topic: "usage".into(),
            kafka_partition: 0,
            kafka_offset: offset,
            class_costs: [i, Money::ZERO, Money::ZERO, Money::ZERO, o, Money::ZERO],
        }
    }

    fn lines(catalog: &Catalog, rows: &[UsageRow], earlier: &[ChargeLine]) -> Vec<ChargeLine> {
        let mut b = CorrectionBuilder::default();
        for r in rows {
            b.add(r, crate::price_diff::price_row(catalog, r)).unwrap();
        }
        b.finish(earlier).unwrap()
    }

    fn total(lines: &[ChargeLine]) -> i128 {
        lines.iter().map(|l| l.cost.picos()).sum()
    }

    #[test]
    fn a_price_difference_is_one_exact_line_per_grain() {
        let rows = [row(1, 1000, 10), row(2, 3000, 10)];
        let fixed = catalog("v2", "1.5e-06");
        let out = lines(&fixed, &rows, &[]);
        assert_eq!(out.len(), 1, "only input changed, one day, one partition: {out:?}");
        let l = &out[0];
        assert_eq!((l.class, l.unit_price.picos(), l.tokens, l.events), (TokenClass::Input, 500_000, 4000, 2));
        assert_eq!((l.first_offset, l.last_offset, l.price_version.as_str()), (1, 2, "v2@1970-01-01T00:00:00Z"));
        assert_eq!(l.cost.picos(), 2_000_000_000, "0.5e-6 x 4000 tokens");
        assert_eq!(l.unit_price.checked_mul_count(l.tokens).unwrap(), l.cost);
    }

    #[test]
    fn later_corrections_reverse_earlier_ones_and_repeats_record_nothing() {
        let rows = [row(1, 1000, 10), row(2, 3000, 10)];
        let (up, down, same) = (catalog("up", "1.5e-06"), catalog("down", "5e-07"), catalog("orig", "1e-06"));
        let first = lines(&up, &rows, &[]);
        assert!(lines(&up, &rows, &first).is_empty(), "the same correction again cancels out");
        let second = lines(&down, &rows, &first);
        let all: Vec<ChargeLine> = first.iter().chain(&second).cloned().collect();
        assert_eq!(total(&all), -2_000_000_000, "corrections add up to the latest prices minus the ledger's");
        let third = lines(&same, &rows, &all);
        let all: Vec<ChargeLine> = all.iter().chain(&third).cloned().collect();
        assert_eq!(total(&all), 0, "back at the ledger's prices");
        assert!(all.iter().all(|l| l.unit_price.checked_mul_count(l.tokens).unwrap() == l.cost));
    }

    #[test]
    fn rows_the_catalog_cannot_price_are_counted() {
        let mut b = CorrectionBuilder::default();
        let mut r = row(1, 10, 10);
        r.request_model = "unknown".into();
        b.add(&r, crate::price_diff::price_row(&catalog("v2", "1e-06"), &r)).unwrap();
        assert_eq!(b.unpriced.values().sum::<u64>(), 1);
        assert_eq!(b.rows_changed, 0);
    }
}
