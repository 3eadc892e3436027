//! The ledger query behind chargeback: exact spend per (tenant, team, project) over a time range,
//! read from `usage_ledger` itself (the source of truth), not from a rollup.

use chrono::{DateTime, Utc};
use ledger_core::Money;
use serde::Deserialize;

use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::report::TableTotals;
use crate::row::datetime_secs;

/// Spend of one (tenant, team, project) over a range; `""` is an absent team or project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionSpend {
    /// Tenant.
    pub tenant_id: String,
    /// Team (`""` when the events named none).
    pub team: String,
    /// Project (`""` when the events named none).
    pub project: String,
    /// Ledger rows (requests).
    pub requests: u64,
    /// Exact `sum(cost_usd)`.
    pub cost: Money,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Raw {
    tenant_id: String,
    team: String,
    project: String,
    requests: u64,
    cost: i128,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RawTotals {
    requests: u64,
    cost: i128,
}

/// The `[from, to)` event-time range as a SQL condition with two `?` placeholders.
const RANGE: &str = "event_time >= toDateTime(?, 'UTC') AND event_time < toDateTime(?, 'UTC')";

/// Spend per (tenant, team, project) of the ledger rows with `event_time` in `[from, to)`,
/// optionally of one tenant, ordered by the three keys.
pub async fn attribution_spend(
    client: &clickhouse::Client,
    database: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tenant: Option<&str>,
) -> Result<Vec<AttributionSpend>> {
    validate_database_name(database)?;
    let tenant_filter = if tenant.is_some() { " AND tenant_id = ?" } else { "" };
    let sql = format!(
        "SELECT tenant_id, team, project, count() AS requests, sum(cost_usd) AS cost \
         FROM {database}.usage_ledger WHERE {RANGE}{tenant_filter} \
         GROUP BY tenant_id, team, project ORDER BY tenant_id, team, project"
    );
    let mut query = client.query(&sql).bind(datetime_secs(from, "from")?).bind(datetime_secs(to, "to")?);
    if let Some(t) = tenant {
        query = query.bind(t);
    }
    let rows = query
        .fetch_all::<Raw>()
        .await
        .map_err(|e| Error::clickhouse(format!("chargeback spend from {database}.usage_ledger"), e))?;
    Ok(rows
        .into_iter()
        .map(|r| AttributionSpend {
            tenant_id: r.tenant_id,
            team: r.team,
            project: r.project,
            requests: r.requests,
            cost: Money::from_picos(r.cost),
        })
        .collect())
}

/// `count()` and exact `sum(cost_usd)` of the ledger rows with `event_time` in `[from, to)`,
/// optionally of one tenant: the figure a chargeback must add up to.
pub async fn ledger_total(
    client: &clickhouse::Client,
    database: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tenant: Option<&str>,
) -> Result<TableTotals> {
    validate_database_name(database)?;
    let tenant_filter = if tenant.is_some() { " AND tenant_id = ?" } else { "" };
    let sql =
        format!("SELECT count() AS requests, sum(cost_usd) AS cost FROM {database}.usage_ledger WHERE {RANGE}{tenant_filter}");
    let mut query = client.query(&sql).bind(datetime_secs(from, "from")?).bind(datetime_secs(to, "to")?);
    if let Some(t) = tenant {
        query = query.bind(t);
    }
    let t = query
        .fetch_one::<RawTotals>()
        .await
        .map_err(|e| Error::clickhouse(format!("ledger total of {database}.usage_ledger"), e))?;
    Ok(TableTotals { requests: t.requests, cost: Money::from_picos(t.cost) })
}

/// Spend of one day (UTC) and team, from the day rollup (for the daily chart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTeamSpend {
    /// Midnight (UTC) starting the day.
    pub day: DateTime<Utc>,
    /// Team (`""` when the events named none).
    pub team: String,
    /// Requests.
    pub requests: u64,
    /// Exact cost.
    pub cost: Money,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RawDaily {
    day: u32,
    team: String,
    requests: u64,
    cost: i128,
}

/// Daily spend per team for the days starting in `[from, to)`, from `usage_rollup_day`
/// (summed again: the rollup may not be merged), ordered by day and team.
pub async fn daily_team_spend(
    client: &clickhouse::Client,
    database: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DailyTeamSpend>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT toUInt32(bucket) AS day, team, sum(request_count) AS requests, sum(cost_usd) AS cost \
         FROM {database}.usage_rollup_day \
         WHERE bucket >= toDateTime(?, 'UTC') AND bucket < toDateTime(?, 'UTC') \
         GROUP BY bucket, team ORDER BY bucket, team"
    );
    let rows = client
        .query(&sql)
        .bind(datetime_secs(from, "from")?)
        .bind(datetime_secs(to, "to")?)
        .fetch_all::<RawDaily>()
        .await
        .map_err(|e| Error::clickhouse(format!("daily spend by team from {database}.usage_rollup_day"), e))?;
    Ok(rows
        .into_iter()
        .filter(|r| r.requests > 0)
        .map(|r| DailyTeamSpend {
            day: DateTime::from_timestamp(i64::from(r.day), 0).unwrap_or_default(),
            team: r.team,
            requests: r.requests,
            cost: Money::from_picos(r.cost),
        })
        .collect())
}
