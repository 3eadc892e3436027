//! Price corrections of a month in ClickHouse (migration 0005): `price_corrections`, one row per
//! correction (the commit), and its lines in `chargeback_close_lines` under the correction's id.

use chrono::{DateTime, Datelike, Utc};
use ledger_core::Money;
use serde::{Deserialize, Serialize};

use crate::charge_lines::ChargeLine;
use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::row::{datetime_secs, insert_one};

/// One recorded price correction of a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrectionRecord {
    /// The month corrected, `YYYY-MM`.
    pub month: String,
    /// Unique id of the correction.
    pub correction_id: String,
    /// When it was recorded: its lines are billed in this month.
    pub corrected_at: DateTime<Utc>,
    /// The version of the corrected catalog.
    pub catalog_version: String,
    /// Ledger rows of the month re-priced.
    pub rows_repriced: u64,
    /// Rows whose cost differs from the prices in force before the correction.
    pub rows_changed: u64,
    /// Lines it recorded.
    pub lines: u64,
    /// Their exact total (negative when prices went down).
    pub cost: Money,
}

impl CorrectionRecord {
    /// `YYYYMM` of the month the correction was recorded in (its lines' billing period).
    pub fn billed_month(&self) -> u32 {
        self.corrected_at.year() as u32 * 100 + self.corrected_at.month()
    }
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct RawCorrection {
    month: String,
    correction_id: String,
    corrected_at: u32,
    catalog_version: String,
    rows_repriced: u64,
    rows_changed: u64,
    lines: u64,
    cost_usd: i128,
}

/// Every recorded price correction of `month`, oldest first.
pub async fn corrections(client: &clickhouse::Client, database: &str, month: &str) -> Result<Vec<CorrectionRecord>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT month, correction_id, toUInt32(corrected_at) AS corrected_at, catalog_version, rows_repriced, rows_changed, \
         lines, cost_usd FROM {database}.price_corrections WHERE month = ? ORDER BY corrected_at, correction_id"
    );
    let rows = client
        .query(&sql)
        .bind(month)
        .fetch_all::<RawCorrection>()
        .await
        .map_err(|e| Error::clickhouse(format!("reading {database}.price_corrections"), e))?;
    Ok(rows
        .into_iter()
        .map(|r| CorrectionRecord {
            month: r.month,
            correction_id: r.correction_id,
            corrected_at: DateTime::from_timestamp(i64::from(r.corrected_at), 0).unwrap_or_default(),
            catalog_version: r.catalog_version,
            rows_repriced: r.rows_repriced,
            rows_changed: r.rows_changed,
            lines: r.lines,
            cost: Money::from_picos(r.cost_usd),
        })
        .collect())
}

/// The lines a correction recorded, ordered by their key; each is billed in the month of the
/// correction ([`ChargeLine::ingest_month`]).
pub async fn correction_lines(client: &clickhouse::Client, database: &str, c: &CorrectionRecord) -> Result<Vec<ChargeLine>> {
    let mut lines = crate::close::recorded_lines(client, database, &c.month, &c.correction_id).await?;
    for l in &mut lines {
        l.ingest_month = Some(c.billed_month());
    }
    Ok(lines)
}

/// Records a correction: its lines, then its row (the commit).
pub async fn record_correction(
    client: &clickhouse::Client,
    database: &str,
    c: &CorrectionRecord,
    lines: &[ChargeLine],
) -> Result<()> {
    crate::close::write_lines(client, database, &c.month, &c.correction_id, lines).await?;
    let table = format!("{database}.price_corrections");
    let context = || format!("insert into {table}");
    let row = RawCorrection {
        month: c.month.clone(),
        correction_id: c.correction_id.clone(),
        corrected_at: datetime_secs(c.corrected_at, "corrected_at")?,
        catalog_version: c.catalog_version.clone(),
        rows_repriced: c.rows_repriced,
        rows_changed: c.rows_changed,
        lines: c.lines,
        cost_usd: c.cost.picos(),
    };
    insert_one::<RawCorrection>(client, &table, &row, context).await
}
