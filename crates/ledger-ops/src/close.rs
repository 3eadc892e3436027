//! Month-end close and corrections.
//!
//! [`close_month`] records a month's charge lines in ClickHouse together with the offset fence
//! that defines them (see [`ledger_clickhouse::charge_lines`]). [`statement`] is what any later
//! chargeback of the month starts from: the lines as recorded at the close, and the rows that
//! reached the ledger for that month afterwards (late events, replayed dead letters) as
//! correction lines, so a closed total never changes silently and `closed + corrections = the
//! ledger` holds exactly. A month's price corrections ([`crate::correction`]), open month or
//! closed, are correction lines of their own, on top of the ledger.

use chrono::{DateTime, Utc};

use ledger_clickhouse::charge_lines::{self, ChargeLine, Cut, LineQuery, OffsetFence};
use ledger_clickhouse::close::{self, CloseRecord};
use ledger_clickhouse::corrections::{self, CorrectionRecord};
use ledger_clickhouse::report::TableTotals;
use ledger_clickhouse::ClickHouseConfig;
use ledger_core::Money;

use crate::OpsError;

/// The examples and notes of `ledger close --help`.
pub const CLOSE_HELP: &str = "\
Examples:
  ledger close --month 2026-11
  ledger export focus --month 2026-11      # the closed rows, then any correction rows
  ledger prices diff OLD.json FIXED.json --ledger --month 2026-11   # preview a price correction
  ledger close --month 2026-11 --correct-prices FIXED.json

Records the month's charge lines and the Kafka offsets they cover (chargeback_closes). Rows that
reach the ledger for the month later are correction lines (FOCUS ChargeClass \"Correction\"):
closed total + corrections = the ledger. Once per month, after it ended (UTC).

--correct-prices re-prices every row of the month at the corrected catalog and records the
differences as correction lines (price_corrections); the ledger's rows stay as they are. A later
correction of the month reverses the earlier ones, so corrections always add up to the latest
prices minus the ledger's. Also give the processor the corrected catalog, or rows still to come
are priced the old way. docs/finance.md.";

/// A month's charges as of now: open, or closed with corrections.
#[derive(Debug, Clone)]
pub struct MonthStatement {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// `[from, to)` of the month (event time, UTC).
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// The database read.
    pub database: String,
    /// Only this tenant's charges.
    pub tenant: Option<String>,
    /// The close that counts, when the month is closed.
    pub close: Option<CloseRecord>,
    /// An open month's lines, or the lines recorded at the close.
    pub lines: Vec<ChargeLine>,
    /// The lines of the rows that reached the ledger after the close.
    pub corrections: Vec<ChargeLine>,
    /// The ledger's month (in the snapshot read).
    pub ledger: TableTotals,
    /// The month's price corrections: `lines + corrections + price corrections = the ledger +
    /// price corrections`, i.e. the ledger's rows at the latest corrected prices.
    pub price_corrections: PriceCorrections,
}

/// The price corrections of a month ([`crate::correction`]).
#[derive(Debug, Clone, Default)]
pub struct PriceCorrections {
    /// Every correction recorded, oldest first.
    pub records: Vec<CorrectionRecord>,
    /// Their lines (of the statement's tenant), each billed in the month of its correction.
    pub lines: Vec<ChargeLine>,
    /// The exact total of `lines`.
    pub total: Money,
}

impl MonthStatement {
    /// Exact total of [`MonthStatement::lines`].
    pub fn lines_total(&self) -> Result<Money, OpsError> {
        Ok(Money::checked_sum(self.lines.iter().map(|l| l.cost))?)
    }

    /// Exact total of [`MonthStatement::corrections`].
    pub fn corrections_total(&self) -> Result<Money, OpsError> {
        Ok(Money::checked_sum(self.corrections.iter().map(|l| l.cost))?)
    }
}

fn client(config: &ClickHouseConfig) -> Result<ledger_clickhouse::clickhouse::Client, OpsError> {
    config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))
}

/// The statement of `month` (optionally of one tenant), from one consistent snapshot of the
/// ledger. Fails when the ledger's closed part no longer equals what the close recorded (rows of
/// the closed fence were removed or changed), or when the lines do not add up to the ledger.
pub async fn statement(config: &ClickHouseConfig, month: &str, tenant: Option<&str>) -> Result<MonthStatement, OpsError> {
    let range = crate::range::month_range(month)?;
    let month = month.trim().to_owned();
    let client = client(config)?;
    let (db, ch) = (&config.database, |e| OpsError::clickhouse(e, &config.url));
    let what = LineQuery { from: range.0, to: range.1, tenant };
    let now = charge_lines::fence(&client, db, &what).await.map_err(ch)?;
    let close = close::closes(&client, db, &month).await.map_err(ch)?.into_iter().next();
    let ledger = charge_lines::cut_total(&client, db, &what, Cut::Within(&now)).await.map_err(ch)?;
    let (lines, corrections) = match &close {
        None => (charge_lines::charge_lines(&client, db, &what, Cut::Within(&now)).await.map_err(ch)?, Vec::new()),
        Some(c) => {
            let recorded = close::closed_lines(&client, db, c).await.map_err(ch)?;
            check_record(c, &recorded)?;
            let lines: Vec<ChargeLine> = recorded.into_iter().filter(|l| tenant.is_none_or(|t| l.tenant_id == t)).collect();
            let closed_part = charge_lines::cut_total(&client, db, &what, Cut::Within(&c.fence)).await.map_err(ch)?;
            let recorded_total = Money::checked_sum(lines.iter().map(|l| l.cost))?;
            if closed_part.cost != recorded_total {
                return Err(OpsError::Inconsistent(format!(
                    "the ledger's rows covered by the close of {month} ({}) now add up to {} USD, the close recorded {} USD: \
                     rows below its offset fence were removed or changed in {db}.usage_ledger",
                    c.closed_at, closed_part.cost, recorded_total
                )));
            }
            let after = Cut::After { closed: &c.fence, now: &now };
            (lines, charge_lines::charge_lines(&client, db, &what, after).await.map_err(ch)?)
        }
    };
    let price_corrections = price_corrections(config, &client, &month, tenant).await?;
    let statement = MonthStatement {
        month,
        range,
        database: db.clone(),
        tenant: tenant.map(str::to_owned),
        close,
        lines,
        corrections,
        ledger,
        price_corrections,
    };
    let sum = statement.lines_total()?.checked_add(statement.corrections_total()?)?;
    if sum != statement.ledger.cost {
        return Err(OpsError::Inconsistent(format!(
            "the charge lines of {} add up to {sum} USD, the ledger's month to {} USD: a ledger row's cost is not the sum \
             of its token classes' costs",
            statement.month, statement.ledger.cost
        )));
    }
    Ok(statement)
}

/// The price corrections of `month` with their lines (optionally only `tenant`'s), each
/// correction's lines checked against its row (the commit) as a close's are.
pub(crate) async fn price_corrections(
    config: &ClickHouseConfig,
    client: &ledger_clickhouse::clickhouse::Client,
    month: &str,
    tenant: Option<&str>,
) -> Result<PriceCorrections, OpsError> {
    let (db, ch) = (&config.database, |e| OpsError::clickhouse(e, &config.url));
    let records = corrections::corrections(client, db, month).await.map_err(ch)?;
    let mut lines = Vec::new();
    for c in &records {
        let recorded = corrections::correction_lines(client, db, c).await.map_err(ch)?;
        check_recorded(&format!("the price correction {} of {}", c.correction_id, c.month), c.lines, c.cost, &recorded)?;
        lines.extend(recorded.into_iter().filter(|l| tenant.is_none_or(|t| l.tenant_id == t)));
    }
    let total = Money::checked_sum(lines.iter().map(|l| l.cost))?;
    Ok(PriceCorrections { records, lines, total })
}

/// The close row is the commit: its line count and total must match the lines stored under it.
fn check_record(c: &CloseRecord, lines: &[ChargeLine]) -> Result<(), OpsError> {
    check_recorded(&format!("the close {} of {}", c.close_id, c.month), c.lines, c.cost, lines)
}

/// `what` recorded `count` lines of `cost` USD: the lines stored under it must say the same.
fn check_recorded(what: &str, count: u64, cost: Money, lines: &[ChargeLine]) -> Result<(), OpsError> {
    let total = Money::checked_sum(lines.iter().map(|l| l.cost))?;
    if lines.len() as u64 != count || total != cost {
        return Err(OpsError::Inconsistent(format!(
            "{what} recorded {count} lines of {cost} USD, but {} lines of {total} USD are stored under it",
            lines.len()
        )));
    }
    Ok(())
}

/// What `ledger close` did.
#[derive(Debug, Clone)]
pub struct CloseOutcome {
    /// The close recorded (or, when another close of the month won a race, that one).
    pub close: CloseRecord,
    /// False when a concurrent close of the same month was recorded first (this one is ignored).
    pub recorded_by_us: bool,
}

/// Closes `month`: records its charge lines and their offset fence. Refuses a month that has
/// not ended at `now` and a month that is already closed.
pub async fn close_month(config: &ClickHouseConfig, month: &str, now: DateTime<Utc>) -> Result<CloseOutcome, OpsError> {
    let range = crate::range::month_range(month)?;
    let month = month.trim().to_owned();
    if range.1 > now {
        return Err(OpsError::Invalid(format!(
            "{month} has not ended yet (it ends at {}): a month is closed once all its days are over",
            range.1.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    let client = client(config)?;
    let (db, ch) = (&config.database, |e| OpsError::clickhouse(e, &config.url));
    if let Some(c) = close::closes(&client, db, &month).await.map_err(ch)?.into_iter().next() {
        return Err(OpsError::Invalid(format!(
            "{month} was already closed at {} ({} requests, {} USD); what reached the ledger for it since then is \
             reported as correction lines (`ledger export focus --month {month}`)",
            c.closed_at, c.requests, c.cost
        )));
    }
    let what = LineQuery { from: range.0, to: range.1, tenant: None };
    let fence: OffsetFence = charge_lines::fence(&client, db, &what).await.map_err(ch)?;
    let lines = charge_lines::charge_lines(&client, db, &what, Cut::Within(&fence)).await.map_err(ch)?;
    let totals = charge_lines::cut_total(&client, db, &what, Cut::Within(&fence)).await.map_err(ch)?;
    let cost = Money::checked_sum(lines.iter().map(|l| l.cost))?;
    if cost != totals.cost {
        return Err(OpsError::Inconsistent(format!(
            "the charge lines of {month} add up to {cost} USD, the ledger's month to {} USD; nothing was recorded",
            totals.cost
        )));
    }
    let record = CloseRecord {
        month: month.clone(),
        close_id: uuid::Uuid::now_v7().to_string(),
        closed_at: now,
        requests: totals.requests,
        lines: lines.len() as u64,
        cost,
        fence,
    };
    close::record_close(&client, db, &record, &lines).await.map_err(ch)?;
    let first = close::closes(&client, db, &month).await.map_err(ch)?.into_iter().next();
    match first {
        Some(c) if c.close_id == record.close_id => Ok(CloseOutcome { close: record, recorded_by_us: true }),
        Some(c) => Ok(CloseOutcome { close: c, recorded_by_us: false }),
        None => Err(OpsError::Inconsistent(format!("the close of {month} was written but cannot be read back from {db}"))),
    }
}

impl CloseOutcome {
    /// One paragraph for people.
    pub fn to_text(&self, database: &str) -> String {
        let c = &self.close;
        let partitions = c.fence.0.len();
        if self.recorded_by_us {
            format!(
                "closed {} in database {database}: {} requests, {} charge lines, {} USD (exact), covering the month's rows up \
                 to the Kafka offsets of {partitions} partition(s) at {}.\nLater rows for {} are reported as correction \
                 lines (FOCUS ChargeClass \"Correction\"): `ledger export focus --month {}`.",
                c.month,
                c.requests,
                c.lines,
                c.cost,
                c.closed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                c.month,
                c.month
            )
        } else {
            format!(
                "{} was closed concurrently at {} (close {}); that close counts and this one is ignored.",
                c.month,
                c.closed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                c.close_id
            )
        }
    }
}
