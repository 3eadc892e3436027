//! The month-end close in ClickHouse (migration 0004): `chargeback_closes`, one row per close
//! with its offset fence and totals, and `chargeback_close_lines`, the charge lines it recorded.
//! Lines are written first and the close row last, so a close exists only once it is whole.

use chrono::{DateTime, Utc};
use ledger_core::{Money, TokenClass};
use serde::{Deserialize, Serialize};

use crate::charge_lines::{sort_lines, ChargeLine, OffsetFence};
use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::row::{datetime_secs, insert_one};

/// One recorded close of a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRecord {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Unique id of the close.
    pub close_id: String,
    /// When it was recorded.
    pub closed_at: DateTime<Utc>,
    /// Ledger rows (events) it covers.
    pub requests: u64,
    /// Charge lines it recorded.
    pub lines: u64,
    /// Their exact total.
    pub cost: Money,
    /// The rows it covers: the month's rows at or below this fence.
    pub fence: OffsetFence,
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct RawClose {
    month: String,
    close_id: String,
    closed_at: u32,
    requests: u64,
    lines: u64,
    cost_usd: i128,
    fence_topics: Vec<String>,
    fence_partitions: Vec<i32>,
    fence_offsets: Vec<i64>,
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct RawCloseLine {
    month: String,
    close_id: String,
    day: u32,
    tenant_id: String,
    team: String,
    project: String,
    feature: String,
    provider: String,
    model: String,
    price_version: String,
    token_class: String,
    unit_price_usd: i128,
    kafka_topic: String,
    kafka_partition: i32,
    first_offset: i64,
    last_offset: i64,
    events: u64,
    tokens: u64,
    cost_usd: i128,
}

/// Every recorded close of `month`, the one that counts (the first) first.
pub async fn closes(client: &clickhouse::Client, database: &str, month: &str) -> Result<Vec<CloseRecord>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT month, close_id, toUInt32(closed_at) AS closed_at, requests, lines, cost_usd, fence_topics, \
         fence_partitions, fence_offsets FROM {database}.chargeback_closes WHERE month = ? ORDER BY closed_at, close_id"
    );
    let rows = client
        .query(&sql)
        .bind(month)
        .fetch_all::<RawClose>()
        .await
        .map_err(|e| Error::clickhouse(format!("reading {database}.chargeback_closes"), e))?;
    rows.into_iter()
        .map(|r| {
            if r.fence_topics.len() != r.fence_partitions.len() || r.fence_topics.len() != r.fence_offsets.len() {
                return Err(Error::OutOfRange(format!("close {} of {} has a malformed fence", r.close_id, r.month)));
            }
            let fence = r.fence_topics.into_iter().zip(r.fence_partitions).zip(r.fence_offsets).map(|((t, p), o)| (t, p, o));
            Ok(CloseRecord {
                month: r.month,
                close_id: r.close_id,
                closed_at: DateTime::from_timestamp(i64::from(r.closed_at), 0).unwrap_or_default(),
                requests: r.requests,
                lines: r.lines,
                cost: Money::from_picos(r.cost_usd),
                fence: OffsetFence::from_triples(fence),
            })
        })
        .collect()
}

/// The lines a close recorded, ordered by their key.
pub async fn closed_lines(client: &clickhouse::Client, database: &str, close: &CloseRecord) -> Result<Vec<ChargeLine>> {
    recorded_lines(client, database, &close.month, &close.close_id).await
}

/// The lines stored in `chargeback_close_lines` under `(month, id)`: a close's, or a price
/// correction's (migration 0005), ordered by their key.
pub(crate) async fn recorded_lines(
    client: &clickhouse::Client,
    database: &str,
    month: &str,
    id: &str,
) -> Result<Vec<ChargeLine>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT month, close_id, toUInt32(day) AS day, tenant_id, team, project, feature, provider, model, price_version, \
         token_class, unit_price_usd, kafka_topic, kafka_partition, first_offset, last_offset, events, tokens, cost_usd \
         FROM {database}.chargeback_close_lines WHERE month = ? AND close_id = ?"
    );
    let rows = client
        .query(&sql)
        .bind(month)
        .bind(id)
        .fetch_all::<RawCloseLine>()
        .await
        .map_err(|e| Error::clickhouse(format!("reading {database}.chargeback_close_lines"), e))?;
    let mut lines = rows
        .into_iter()
        .map(|r| {
            let class = TokenClass::parse(&r.token_class)
                .ok_or_else(|| Error::OutOfRange(format!("close {}: unknown token class {:?}", r.close_id, r.token_class)))?;
            Ok(ChargeLine {
                day: DateTime::from_timestamp(i64::from(r.day), 0).unwrap_or_default(),
                tenant_id: r.tenant_id,
                team: r.team,
                project: r.project,
                feature: r.feature,
                provider: r.provider,
                model: r.model,
                price_version: r.price_version,
                class,
                unit_price: Money::from_picos(r.unit_price_usd),
                kafka_topic: r.kafka_topic,
                kafka_partition: r.kafka_partition,
                first_offset: r.first_offset,
                last_offset: r.last_offset,
                events: r.events,
                tokens: r.tokens,
                cost: Money::from_picos(r.cost_usd),
                ingest_month: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    sort_lines(&mut lines);
    Ok(lines)
}

/// Records a close: its lines, then its row (the commit).
pub async fn record_close(client: &clickhouse::Client, database: &str, close: &CloseRecord, lines: &[ChargeLine]) -> Result<()> {
    write_lines(client, database, &close.month, &close.close_id, lines).await?;
    let table = format!("{database}.chargeback_closes");
    let context = || format!("insert into {table}");
    let (fence_topics, fence_partitions, fence_offsets) = close.fence.to_columns();
    let row = RawClose {
        month: close.month.clone(),
        close_id: close.close_id.clone(),
        closed_at: datetime_secs(close.closed_at, "closed_at")?,
        requests: close.requests,
        lines: close.lines,
        cost_usd: close.cost.picos(),
        fence_topics,
        fence_partitions,
        fence_offsets,
    };
    insert_one::<RawClose>(client, &table, &row, context).await
}

/// Writes `lines` into `chargeback_close_lines` under `(month, id)`.
pub(crate) async fn write_lines(
    client: &clickhouse::Client,
    database: &str,
    month: &str,
    id: &str,
    lines: &[ChargeLine],
) -> Result<()> {
    validate_database_name(database)?;
    let table = format!("{database}.chargeback_close_lines");
    let context = || format!("insert into {table}");
    let mut insert = client.insert_unescaped::<RawCloseLine>(&table).await.map_err(|e| Error::clickhouse(context(), e))?;
    for l in lines {
        let row = RawCloseLine {
            month: month.to_owned(),
            close_id: id.to_owned(),
            day: datetime_secs(l.day, "day")?,
            tenant_id: l.tenant_id.clone(),
            team: l.team.clone(),
            project: l.project.clone(),
            feature: l.feature.clone(),
            provider: l.provider.clone(),
            model: l.model.clone(),
            price_version: l.price_version.clone(),
            token_class: l.class.name().to_owned(),
            unit_price_usd: l.unit_price.picos(),
            kafka_topic: l.kafka_topic.clone(),
            kafka_partition: l.kafka_partition,
            first_offset: l.first_offset,
            last_offset: l.last_offset,
            events: l.events,
            tokens: l.tokens,
            cost_usd: l.cost.picos(),
        };
        insert.write(&row).await.map_err(|e| Error::clickhouse(context(), e))?;
    }
    insert.end().await.map_err(|e| Error::clickhouse(context(), e))
}
