//! Charge lines: the ledger's spend at the grain finance exports (FOCUS) and closes, read from
//! `usage_ledger` itself, and the offset fences that make such a read a consistent cut.
//!
//! A line is one (UTC day, tenant, team, project, feature, provider, model, price version, token
//! class, per-token price, Kafka topic and partition): its tokens, its exact cost, its number of
//! events and the range of Kafka offsets its rows came from. The per-token price is a line's own
//! key, so `unit price x tokens = cost` holds exactly for every line (a long-context or
//! service-tier price is a line of its own).
//!
//! A partition's rows are written in offset order (docs/architecture.md), so the rows of a
//! partition at or below the highest offset present are a set that later inserts never change:
//! an [`OffsetFence`] read first and then applied to every query makes several queries one
//! consistent snapshot, and a fence recorded at a month's close says for ever which rows the
//! close covered.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ledger_core::{Money, TokenClass};
use serde::Deserialize;

use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::row::datetime_secs;

/// The highest Kafka offset per (topic, partition) of a set of ledger rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetFence(pub BTreeMap<(String, i32), i64>);

impl OffsetFence {
    /// A fence from `(topic, partition, offset)` triples.
    pub fn from_triples(triples: impl IntoIterator<Item = (String, i32, i64)>) -> OffsetFence {
        OffsetFence(triples.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    /// The fence as parallel `(topics, partitions, offsets)` lists (the stored form).
    pub fn to_columns(&self) -> (Vec<String>, Vec<i32>, Vec<i64>) {
        let mut cols = (Vec::new(), Vec::new(), Vec::new());
        for ((t, p), o) in &self.0 {
            cols.0.push(t.clone());
            cols.1.push(*p);
            cols.2.push(*o);
        }
        cols
    }

    /// A SQL condition (with `?` placeholders, see [`OffsetFence::bind`]) true for the rows at or
    /// below the fence.
    fn within_sql(&self) -> String {
        if self.0.is_empty() {
            return "0".to_owned();
        }
        let one = "(kafka_topic = ? AND kafka_partition = ? AND kafka_offset <= ?)";
        format!("({})", vec![one; self.0.len()].join(" OR "))
    }

    fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        for ((t, p), o) in &self.0 {
            query = query.bind(t.as_str()).bind(*p).bind(*o);
        }
        query
    }
}

/// Which rows of a range a query reads.
#[derive(Debug, Clone, Copy)]
pub enum Cut<'a> {
    /// The rows at or below the fence.
    Within(&'a OffsetFence),
    /// The rows above `closed` and at or below `now`: what arrived after a close.
    After {
        /// The fence recorded at the close.
        closed: &'a OffsetFence,
        /// The fence of the current snapshot.
        now: &'a OffsetFence,
    },
}

impl Cut<'_> {
    fn sql(&self) -> String {
        match self {
            Cut::Within(f) => f.within_sql(),
            Cut::After { closed, now } => format!("NOT {} AND {}", closed.within_sql(), now.within_sql()),
        }
    }

    fn bind(&self, query: clickhouse::query::Query) -> clickhouse::query::Query {
        match self {
            Cut::Within(f) => f.bind(query),
            Cut::After { closed, now } => now.bind(closed.bind(query)),
        }
    }

    fn is_after(&self) -> bool {
        matches!(self, Cut::After { .. })
    }
}

/// What to read: `[from, to)` by event time, optionally one tenant's rows.
#[derive(Debug, Clone, Copy)]
pub struct LineQuery<'a> {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Only this tenant's rows.
    pub tenant: Option<&'a str>,
}

impl LineQuery<'_> {
    fn sql(&self) -> String {
        let tenant = if self.tenant.is_some() { " AND tenant_id = ?" } else { "" };
        format!("event_time >= toDateTime(?, 'UTC') AND event_time < toDateTime(?, 'UTC'){tenant}")
    }

    fn bind(&self, query: clickhouse::query::Query) -> Result<clickhouse::query::Query> {
        let query = query.bind(datetime_secs(self.from, "from")?).bind(datetime_secs(self.to, "to")?);
        Ok(match self.tenant {
            Some(t) => query.bind(t),
            None => query,
        })
    }
}

/// One charge line (see the module documentation for its grain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeLine {
    /// Midnight (UTC) of the events' day.
    pub day: DateTime<Utc>,
    /// Tenant.
    pub tenant_id: String,
    /// Team (`""` when absent).
    pub team: String,
    /// Project (`""` when absent).
    pub project: String,
    /// Feature (`""` when absent).
    pub feature: String,
    /// Provider (OpenTelemetry `gen_ai.provider.name`).
    pub provider: String,
    /// The catalog key that priced the events.
    pub model: String,
    /// The price version used.
    pub price_version: String,
    /// The token class.
    pub class: TokenClass,
    /// Price per token.
    pub unit_price: Money,
    /// Kafka topic of the rows.
    pub kafka_topic: String,
    /// Kafka partition of the rows.
    pub kafka_partition: i32,
    /// Lowest offset of the rows.
    pub first_offset: i64,
    /// Highest offset of the rows.
    pub last_offset: i64,
    /// Ledger rows (events).
    pub events: u64,
    /// Tokens of the class.
    pub tokens: u64,
    /// Exact cost (`unit_price x tokens`).
    pub cost: Money,
    /// `YYYYMM` of the month the rows reached the ledger (`ingest_time`), for lines read with
    /// [`Cut::After`]; `None` otherwise.
    pub ingest_month: Option<u32>,
}

impl ChargeLine {
    /// The line's key without its lineage: what identifies the charge.
    pub fn charge_key(&self) -> (DateTime<Utc>, &str, &str, &str, &str, &str, &str, &str, TokenClass, Money) {
        (
            self.day,
            &self.tenant_id,
            &self.team,
            &self.project,
            &self.feature,
            &self.provider,
            &self.model,
            &self.price_version,
            self.class,
            self.unit_price,
        )
    }
}

/// The tokens of a class as a SQL expression over `usage_ledger`, and its cost column.
pub fn class_sql(class: TokenClass) -> (&'static str, &'static str) {
    match class {
        TokenClass::Input => (
            "(input_tokens - cache_read_input_tokens - cache_creation_input_tokens - cache_creation_1h_input_tokens)",
            "input_cost_usd",
        ),
        TokenClass::CacheRead => ("cache_read_input_tokens", "cache_read_cost_usd"),
        TokenClass::CacheWrite => ("cache_creation_input_tokens", "cache_write_cost_usd"),
        TokenClass::CacheWrite1h => ("cache_creation_1h_input_tokens", "cache_write_1h_cost_usd"),
        TokenClass::Output => ("(output_tokens - reasoning_output_tokens)", "output_cost_usd"),
        TokenClass::Reasoning => ("reasoning_output_tokens", "reasoning_cost_usd"),
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RawFence {
    kafka_topic: String,
    kafka_partition: i32,
    offset: i64,
}

/// The fence of the rows `what` selects: the highest offset per topic and partition.
pub async fn fence(client: &clickhouse::Client, database: &str, what: &LineQuery<'_>) -> Result<OffsetFence> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT kafka_topic, kafka_partition, max(kafka_offset) AS offset FROM {database}.usage_ledger \
         WHERE {} GROUP BY kafka_topic, kafka_partition ORDER BY kafka_topic, kafka_partition",
        what.sql()
    );
    let rows = what
        .bind(client.query(&sql))?
        .fetch_all::<RawFence>()
        .await
        .map_err(|e| Error::clickhouse(format!("offset fence of {database}.usage_ledger"), e))?;
    Ok(OffsetFence::from_triples(rows.into_iter().map(|r| (r.kafka_topic, r.kafka_partition, r.offset))))
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RawLine {
    day: u32,
    tenant_id: String,
    team: String,
    project: String,
    feature: String,
    provider: String,
    model: String,
    price_version: String,
    kafka_topic: String,
    kafka_partition: i32,
    ingest_month: u32,
    unit_price: i64,
    events: u64,
    tokens: u64,
    cost: i128,
    first_offset: i64,
    last_offset: i64,
}

/// The charge lines of the rows `what` selects within `cut`, every class, ordered by their key.
/// Fails when a row's cost is not its price times its tokens (which the ledger never writes).
pub async fn charge_lines(
    client: &clickhouse::Client,
    database: &str,
    what: &LineQuery<'_>,
    cut: Cut<'_>,
) -> Result<Vec<ChargeLine>> {
    let mut lines = Vec::new();
    let ingest = if cut.is_after() { "toUInt32(toYYYYMM(ingest_time))" } else { "toUInt32(0)" };
    for class in TokenClass::ALL {
        let (tokens, cost) = class_sql(class);
        // 18.16: a Decimal divided by an integer keeps its scale and divides the raw value, so
        // `cost / tokens` is the exact per-token price (prices have at most 12 fractional digits).
        // The key is its whole pico-dollars as an Int64: 18.16 crashes (SIGSEGV in
        // ColumnDecimal::deserializeAndInsertFromArena) grouping by a Decimal128 key.
        let select = format!(
            "toUInt32(toStartOfDay(event_time)) AS day, tenant_id, team, project, feature, provider, model, \
             price_version, kafka_topic, kafka_partition, {ingest} AS ingest_month, toInt64({cost} / {tokens} * 1000000000000) AS unit_price, \
             count() AS events, sum({tokens}) AS tokens, sum({cost}) AS cost, \
             min(kafka_offset) AS first_offset, max(kafka_offset) AS last_offset"
        );
        let rest = format!(
            " AND {tokens} > 0 GROUP BY day, tenant_id, team, project, feature, provider, model, price_version, \
             kafka_topic, kafka_partition, ingest_month, unit_price"
        );
        let rows = cut_query(client, database, what, cut, &select, &rest)?
            .fetch_all::<RawLine>()
            .await
            .map_err(|e| Error::clickhouse(format!("{class} charge lines of {database}.usage_ledger"), e))?;
        for r in rows {
            let line = ChargeLine {
                day: DateTime::from_timestamp(i64::from(r.day), 0).unwrap_or_default(),
                tenant_id: r.tenant_id,
                team: r.team,
                project: r.project,
                feature: r.feature,
                provider: r.provider,
                model: r.model,
                price_version: r.price_version,
                class,
                unit_price: Money::from_picos(i128::from(r.unit_price)),
                kafka_topic: r.kafka_topic,
                kafka_partition: r.kafka_partition,
                first_offset: r.first_offset,
                last_offset: r.last_offset,
                events: r.events,
                tokens: r.tokens,
                cost: Money::from_picos(r.cost),
                ingest_month: cut.is_after().then_some(r.ingest_month),
            };
            if line.unit_price.checked_mul_count(line.tokens).ok() != Some(line.cost) {
                return Err(Error::OutOfRange(format!(
                    "{class} cost {} of model {} (price version {}) on partition {} offsets {}..={} is not its per-token \
                     price {} times its {} tokens",
                    line.cost,
                    line.model,
                    line.price_version,
                    line.kafka_partition,
                    line.first_offset,
                    line.last_offset,
                    line.unit_price,
                    line.tokens
                )));
            }
            lines.push(line);
        }
    }
    sort_lines(&mut lines);
    Ok(lines)
}

/// Orders lines by their key, then by their Kafka topic and partition.
pub fn sort_lines(lines: &mut [ChargeLine]) {
    lines.sort_by(|a, b| {
        (a.charge_key(), &a.kafka_topic, a.kafka_partition).cmp(&(b.charge_key(), &b.kafka_topic, b.kafka_partition))
    });
}

/// A query of the `usage_ledger` rows `what` selects within `cut`: `select` (the columns) comes
/// before `FROM <database>.usage_ledger WHERE <what> AND <cut>`, `rest` (more conditions,
/// grouping) after it.
fn cut_query(
    client: &clickhouse::Client,
    database: &str,
    what: &LineQuery<'_>,
    cut: Cut<'_>,
    select: &str,
    rest: &str,
) -> Result<clickhouse::query::Query> {
    validate_database_name(database)?;
    let sql = format!("SELECT {select} FROM {database}.usage_ledger WHERE {} AND {}{rest}", what.sql(), cut.sql());
    Ok(cut.bind(what.bind(client.query(&sql))?))
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RawTotals {
    requests: u64,
    cost: i128,
}

/// `count()` and exact `sum(cost_usd)` of the rows `what` selects within `cut`: the figure the
/// lines must add up to.
pub async fn cut_total(
    client: &clickhouse::Client,
    database: &str,
    what: &LineQuery<'_>,
    cut: Cut<'_>,
) -> Result<crate::report::TableTotals> {
    let t = cut_query(client, database, what, cut, "count() AS requests, sum(cost_usd) AS cost", "")?
        .fetch_one::<RawTotals>()
        .await
        .map_err(|e| Error::clickhouse(format!("total of a cut of {database}.usage_ledger"), e))?;
    Ok(crate::report::TableTotals { requests: t.requests, cost: Money::from_picos(t.cost) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_one_condition_per_partition() {
        let f = OffsetFence::from_triples([("t".to_owned(), 0, 5), ("t".to_owned(), 1, 9)]);
        assert_eq!(f.within_sql().matches("kafka_offset <= ?").count(), 2);
        assert_eq!(OffsetFence::default().within_sql(), "0");
        let (topics, partitions, offsets) = f.to_columns();
        assert_eq!((topics.len(), partitions, offsets), (2, vec![0, 1], vec![5, 9]));
        let empty = OffsetFence::default();
        assert!(Cut::After { closed: &empty, now: &f }.sql().starts_with("NOT 0 AND ("));
    }
}
