//! Report and reconciliation queries. Money is read as the raw `Decimal(38, 12)` (`i128`):
//! never through a float, never through `toString` (18.16's `toString(Decimal128)` corrupts
//! values above ~10^20).

use chrono::{DateTime, Timelike, Utc};
use ledger_core::Money;
use serde::Deserialize;

use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::row::datetime_secs;

/// A rollup table of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rollup {
    /// `usage_rollup_minute`.
    Minute,
    /// `usage_rollup_hour`.
    Hour,
    /// `usage_rollup_day` (also serves months).
    Day,
}

impl Rollup {
    /// Every rollup.
    pub const ALL: [Rollup; 3] = [Rollup::Minute, Rollup::Hour, Rollup::Day];

    /// The table name (without database).
    pub const fn table(self) -> &'static str {
        match self {
            Rollup::Minute => "usage_rollup_minute",
            Rollup::Hour => "usage_rollup_hour",
            Rollup::Day => "usage_rollup_day",
        }
    }
}

/// An attribution dimension a spend report can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// `tenant_id`.
    Tenant,
    /// `team`.
    Team,
    /// `project`.
    Project,
    /// `provider`.
    Provider,
    /// `model` (the priced catalog key).
    Model,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 5] =
        [Dimension::Tenant, Dimension::Team, Dimension::Project, Dimension::Provider, Dimension::Model];

    /// The rollup column.
    pub const fn column(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant_id",
            Dimension::Team => "team",
            Dimension::Project => "project",
            Dimension::Provider => "provider",
            Dimension::Model => "model",
        }
    }

    /// The short name used on the command line (`tenant`, `team`, `project`, `provider`, `model`).
    pub const fn name(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant",
            Dimension::Team => "team",
            Dimension::Project => "project",
            Dimension::Provider => "provider",
            Dimension::Model => "model",
        }
    }

    /// Parses a short name (also accepts `tenant_id`).
    pub fn parse(s: &str) -> Option<Dimension> {
        match s.trim() {
            "tenant_id" => Some(Dimension::Tenant),
            other => Dimension::ALL.into_iter().find(|d| d.name() == other),
        }
    }
}

/// Spend of one tenant on one model over a time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// Tenant.
    pub tenant_id: String,
    /// Priced model.
    pub model: String,
    /// Number of requests.
    pub requests: u64,
    /// Input tokens (inclusive of cache reads and writes).
    pub input_tokens: u64,
    /// Output tokens (inclusive of reasoning).
    pub output_tokens: u64,
    /// Exact charged cost.
    pub cost: Money,
}

/// Spend of one group (values of the requested dimensions, in the requested order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupedSpendRow {
    /// One value per requested dimension.
    pub keys: Vec<String>,
    /// Number of requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Exact charged cost.
    pub cost: Money,
}

/// Row count (or request count) and exact cost sum of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableTotals {
    /// Ledger: rows; rollup: `sum(request_count)`.
    pub requests: u64,
    /// `sum(cost_usd)`, exact.
    pub cost: Money,
}

/// The ledger's totals next to every rollup's, for tests and reconciliation: after the pipeline
/// drains, all must be equal (invariant 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTotals {
    /// `count()` and `sum(cost_usd)` of `usage_ledger`.
    pub ledger: TableTotals,
    /// `sum(request_count)` and `sum(cost_usd)` of each rollup, in [`Rollup::ALL`] order.
    pub rollups: Vec<(Rollup, TableTotals)>,
}

impl LedgerTotals {
    /// True when every rollup matches the ledger exactly.
    pub fn is_consistent(&self) -> bool {
        self.rollups.iter().all(|(_, t)| *t == self.ledger)
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Totals {
    requests: u64,
    cost: i128,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Grouped {
    keys: Vec<String>,
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost: i128,
}

/// Read-side queries over the ledger and its rollups.
#[derive(Debug, Clone)]
pub struct LedgerReader {
    client: clickhouse::Client,
    database: String,
}

impl LedgerReader {
    /// A reader of `database`.
    pub fn new(client: clickhouse::Client, database: impl Into<String>) -> Result<Self> {
        let database = database.into();
        validate_database_name(&database)?;
        Ok(LedgerReader { client, database })
    }

    /// The database read.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub(crate) fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// Spend by tenant and model for rollup buckets starting in `[from, to)`, ordered by tenant,
    /// then cost descending. Reads the day rollup when both bounds are midnights (UTC), else the
    /// hour rollup (an hour counts when it starts in the range).
    pub async fn spend_by_tenant_model(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<SpendRow>> {
        let rows = self.spend(from, to, &[Dimension::Tenant, Dimension::Model]).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut keys = r.keys.into_iter();
                SpendRow {
                    tenant_id: keys.next().unwrap_or_default(),
                    model: keys.next().unwrap_or_default(),
                    requests: r.requests,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cost: r.cost,
                }
            })
            .collect())
    }

    /// Spend grouped by any dimensions (none: one grand-total row, when there is data), buckets
    /// starting in `[from, to)`, ordered by the keys. Rollup choice as in
    /// [`LedgerReader::spend_by_tenant_model`].
    pub async fn spend(&self, from: DateTime<Utc>, to: DateTime<Utc>, by: &[Dimension]) -> Result<Vec<GroupedSpendRow>> {
        let rollup = rollup_for(from, to);
        let from_secs = datetime_secs(from, "from")?;
        let to_secs = datetime_secs(to, "to")?;
        let keys = if by.is_empty() {
            "emptyArrayString()".to_owned()
        } else {
            format!("[{}]", by.iter().map(|d| d.column()).collect::<Vec<_>>().join(", "))
        };
        let group = if by.is_empty() {
            String::new()
        } else {
            let cols = by.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ");
            format!("GROUP BY {cols} ORDER BY {cols}")
        };
        let sql = format!(
            "SELECT {keys} AS keys, sum(request_count) AS requests, sum(input_tokens) AS input_tokens, \
             sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost \
             FROM {}.{} WHERE bucket >= toDateTime(?, 'UTC') AND bucket < toDateTime(?, 'UTC') {group}",
            self.database,
            rollup.table()
        );
        let rows = self
            .client
            .query(&sql)
            .bind(from_secs)
            .bind(to_secs)
            .fetch_all::<Grouped>()
            .await
            .map_err(|e| Error::clickhouse(format!("spend report from {}.{}", self.database, rollup.table()), e))?;
        Ok(rows
            .into_iter()
            .filter(|r| r.requests > 0)
            .map(|r| GroupedSpendRow {
                keys: r.keys,
                requests: r.requests,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost: Money::from_picos(r.cost),
            })
            .collect())
    }

    /// Exact totals of the ledger and of every rollup (whole database).
    pub async fn ledger_totals(&self) -> Result<LedgerTotals> {
        let ledger = self
            .totals(&format!("SELECT count() AS requests, sum(cost_usd) AS cost FROM {}.usage_ledger", self.database))
            .await?;
        let mut rollups = Vec::new();
        for r in Rollup::ALL {
            let sql =
                format!("SELECT sum(request_count) AS requests, sum(cost_usd) AS cost FROM {}.{}", self.database, r.table());
            rollups.push((r, self.totals(&sql).await?));
        }
        Ok(LedgerTotals { ledger, rollups })
    }

    async fn totals(&self, sql: &str) -> Result<TableTotals> {
        let t = self
            .client
            .query_raw(sql)
            .fetch_one::<Totals>()
            .await
            .map_err(|e| Error::clickhouse(format!("totals query `{sql}`"), e))?;
        Ok(TableTotals { requests: t.requests, cost: Money::from_picos(t.cost) })
    }
}

fn is_midnight(t: DateTime<Utc>) -> bool {
    t.num_seconds_from_midnight() == 0 && t.nanosecond() == 0
}

/// The coarsest rollup that answers `[from, to)` exactly.
pub fn rollup_for(from: DateTime<Utc>, to: DateTime<Utc>) -> Rollup {
    if is_midnight(from) && is_midnight(to) {
        Rollup::Day
    } else {
        Rollup::Hour
    }
}
