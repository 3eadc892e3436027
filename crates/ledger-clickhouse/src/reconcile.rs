//! Reconciliation queries: the ledger against each rollup (every counter, exactly), and the
//! ledger's Kafka offsets (spans, duplicates, the offsets present in a span).
//!
//! Rollups are compared bucket-aligned: for a rollup of granularity `g` the ledger rows whose
//! `toStartOf{g}(event_time)` falls in `[from, to)` are compared with the rollup rows whose
//! `bucket` falls in `[from, to)`; both sides then cover exactly the same buckets, whatever the
//! bounds. Rollups are read with `sum() ... ` again, never assuming background merges happened.

use chrono::{DateTime, Utc};
use ledger_core::Money;
use serde::Deserialize;

use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::report::Rollup;
use crate::row::datetime_secs;

/// Every counter a rollup keeps, summed over a range (money exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Counters {
    pub request_count: u64,
    pub input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_creation_1h_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_output_tokens: u64,
    pub input_cost_usd: Money,
    pub cache_read_cost_usd: Money,
    pub cache_write_cost_usd: Money,
    pub cache_write_1h_cost_usd: Money,
    pub output_cost_usd: Money,
    pub reasoning_cost_usd: Money,
    pub cost_usd: Money,
    pub savings_usd: Money,
    pub provided_cost_usd_sum: Money,
    pub provided_cost_count: u64,
    pub routed_from_cost_usd_sum: Money,
    pub routed_count: u64,
}

impl Counters {
    /// `(name, value as text)` of every counter, in the rollup's column order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("request_count", self.request_count.to_string()),
            ("input_tokens", self.input_tokens.to_string()),
            ("cache_read_input_tokens", self.cache_read_input_tokens.to_string()),
            ("cache_creation_input_tokens", self.cache_creation_input_tokens.to_string()),
            ("cache_creation_1h_input_tokens", self.cache_creation_1h_input_tokens.to_string()),
            ("output_tokens", self.output_tokens.to_string()),
            ("reasoning_output_tokens", self.reasoning_output_tokens.to_string()),
            ("input_cost_usd", self.input_cost_usd.to_string()),
            ("cache_read_cost_usd", self.cache_read_cost_usd.to_string()),
            ("cache_write_cost_usd", self.cache_write_cost_usd.to_string()),
            ("cache_write_1h_cost_usd", self.cache_write_1h_cost_usd.to_string()),
            ("output_cost_usd", self.output_cost_usd.to_string()),
            ("reasoning_cost_usd", self.reasoning_cost_usd.to_string()),
            ("cost_usd", self.cost_usd.to_string()),
            ("savings_usd", self.savings_usd.to_string()),
            ("provided_cost_usd_sum", self.provided_cost_usd_sum.to_string()),
            ("provided_cost_count", self.provided_cost_count.to_string()),
            ("routed_from_cost_usd_sum", self.routed_from_cost_usd_sum.to_string()),
            ("routed_count", self.routed_count.to_string()),
        ]
    }

    /// The counters that differ: `(name, self's value, other's value)`.
    pub fn differences(&self, other: &Counters) -> Vec<(&'static str, String, String)> {
        self.fields()
            .into_iter()
            .zip(other.fields())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((name, a), (_, b))| (name, a, b))
            .collect()
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RawCounters {
    request_count: u64,
    input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_creation_1h_input_tokens: u64,
    output_tokens: u64,
    reasoning_output_tokens: u64,
    input_cost_usd: i128,
    cache_read_cost_usd: i128,
    cache_write_cost_usd: i128,
    cache_write_1h_cost_usd: i128,
    output_cost_usd: i128,
    reasoning_cost_usd: i128,
    cost_usd: i128,
    savings_usd: i128,
    provided_cost_usd_sum: i128,
    provided_cost_count: u64,
    routed_from_cost_usd_sum: i128,
    routed_count: u64,
}

impl From<RawCounters> for Counters {
    fn from(r: RawCounters) -> Self {
        let m = Money::from_picos;
        Counters {
            request_count: r.request_count,
            input_tokens: r.input_tokens,
            cache_read_input_tokens: r.cache_read_input_tokens,
            cache_creation_input_tokens: r.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: r.cache_creation_1h_input_tokens,
            output_tokens: r.output_tokens,
            reasoning_output_tokens: r.reasoning_output_tokens,
            input_cost_usd: m(r.input_cost_usd),
            cache_read_cost_usd: m(r.cache_read_cost_usd),
            cache_write_cost_usd: m(r.cache_write_cost_usd),
            cache_write_1h_cost_usd: m(r.cache_write_1h_cost_usd),
            output_cost_usd: m(r.output_cost_usd),
            reasoning_cost_usd: m(r.reasoning_cost_usd),
            cost_usd: m(r.cost_usd),
            savings_usd: m(r.savings_usd),
            provided_cost_usd_sum: m(r.provided_cost_usd_sum),
            provided_cost_count: r.provided_cost_count,
            routed_from_cost_usd_sum: m(r.routed_from_cost_usd_sum),
            routed_count: r.routed_count,
        }
    }
}

/// Columns summed by both sides. Aliases are prefixed (`s_`) because 18.16 substitutes an
/// alias equal to a column name into other expressions.
const SUMMED: [&str; 13] = [
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "cache_write_1h_cost_usd",
    "output_cost_usd",
    "reasoning_cost_usd",
    "cost_usd",
];

fn sums() -> String {
    SUMMED.iter().map(|c| format!("sum({c}) AS s_{c}")).collect::<Vec<_>>().join(", ")
}

/// `toStartOfMinute` / `toStartOfHour` / `toStartOfDay`: the bucket function of a rollup's view.
pub const fn bucket_function(rollup: Rollup) -> &'static str {
    match rollup {
        Rollup::Minute => "toStartOfMinute",
        Rollup::Hour => "toStartOfHour",
        Rollup::Day => "toStartOfDay",
    }
}

/// The ledger's and one rollup's counters over the buckets starting in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupComparison {
    /// The rollup.
    pub rollup: Rollup,
    /// The ledger's counters over the same buckets.
    pub ledger: Counters,
    /// The rollup's counters.
    pub rollup_counters: Counters,
}

impl RollupComparison {
    /// True when every counter agrees.
    pub fn matches(&self) -> bool {
        self.ledger == self.rollup_counters
    }
}

/// Compares the ledger with `rollup` over the buckets starting in `[from, to)`.
pub async fn compare_rollup(
    client: &clickhouse::Client,
    database: &str,
    rollup: Rollup,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<RollupComparison> {
    validate_database_name(database)?;
    let (from_s, to_s) = (datetime_secs(from, "from")?, datetime_secs(to, "to")?);
    let bucket = format!("{}(event_time)", bucket_function(rollup));
    let ledger_sql = format!(
        "SELECT count() AS s_request_count, {sums}, sum(savings_usd) AS s_savings_usd, \
         sum(ifNull(provided_cost_usd, toDecimal128(0, 12))) AS s_provided, count(provided_cost_usd) AS s_provided_count, \
         sum(ifNull(routed_from_cost_usd, toDecimal128(0, 12))) AS s_routed, countIf(routed_from_model != '') AS s_routed_count \
         FROM {database}.usage_ledger \
         WHERE {bucket} >= toDateTime(?, 'UTC') AND {bucket} < toDateTime(?, 'UTC')",
        sums = sums()
    );
    let rollup_sql = format!(
        "SELECT sum(request_count) AS s_request_count, {sums}, sum(savings_usd) AS s_savings_usd, \
         sum(provided_cost_usd_sum) AS s_provided, sum(provided_cost_count) AS s_provided_count, \
         sum(routed_from_cost_usd_sum) AS s_routed, sum(routed_count) AS s_routed_count \
         FROM {database}.{table} \
         WHERE bucket >= toDateTime(?, 'UTC') AND bucket < toDateTime(?, 'UTC')",
        sums = sums(),
        table = rollup.table()
    );
    let ledger = fetch_counters(client, &ledger_sql, from_s, to_s, || format!("summing {database}.usage_ledger")).await?;
    let rollup_counters =
        fetch_counters(client, &rollup_sql, from_s, to_s, || format!("summing {database}.{}", rollup.table())).await?;
    Ok(RollupComparison { rollup, ledger, rollup_counters })
}

async fn fetch_counters(
    client: &clickhouse::Client,
    sql: &str,
    from: u32,
    to: u32,
    context: impl Fn() -> String,
) -> Result<Counters> {
    client
        .query(sql)
        .bind(from)
        .bind(to)
        .fetch_one::<RawCounters>()
        .await
        .map(Counters::from)
        .map_err(|e| Error::clickhouse(context(), e))
}

/// The ledger's offsets of one Kafka partition among the rows of a range.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct OffsetSpan {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Lowest offset.
    pub min_offset: i64,
    /// Highest offset.
    pub max_offset: i64,
    /// Ledger rows.
    pub rows: u64,
    /// Distinct offsets.
    pub distinct_offsets: u64,
}

impl OffsetSpan {
    /// Offsets from `min_offset` to `max_offset` inclusive.
    pub fn width(&self) -> u64 {
        u64::try_from(self.max_offset - self.min_offset + 1).unwrap_or(0)
    }

    /// True when every offset of the span has a row (no gap inside it).
    pub fn is_contiguous(&self) -> bool {
        self.distinct_offsets == self.width()
    }
}

/// One Kafka offset that has more than one ledger row.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DuplicateOffset {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Ledger rows carrying it (>= 2).
    pub copies: u64,
    /// One of their event ids.
    pub event_id: String,
}

/// The `[from, to)` event-time range with two `?` placeholders.
const EVENT_RANGE: &str = "event_time >= toDateTime(?, 'UTC') AND event_time < toDateTime(?, 'UTC')";

/// Per (topic, partition): the offset span of the ledger rows with `event_time` in `[from, to)`.
pub async fn offset_spans(
    client: &clickhouse::Client,
    database: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<OffsetSpan>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT kafka_topic AS topic, kafka_partition AS partition, min(kafka_offset) AS min_offset, \
         max(kafka_offset) AS max_offset, count() AS rows, uniqExact(kafka_offset) AS distinct_offsets \
         FROM {database}.usage_ledger WHERE {EVENT_RANGE} \
         GROUP BY kafka_topic, kafka_partition ORDER BY kafka_topic, kafka_partition"
    );
    client
        .query(&sql)
        .bind(datetime_secs(from, "from")?)
        .bind(datetime_secs(to, "to")?)
        .fetch_all::<OffsetSpan>()
        .await
        .map_err(|e| Error::clickhouse(format!("offset spans of {database}.usage_ledger"), e))
}

/// Offsets carried by more than one ledger row (rows with `event_time` in `[from, to)`), at
/// most `limit` of them, ordered by topic, partition and offset.
pub async fn duplicate_offsets(
    client: &clickhouse::Client,
    database: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<DuplicateOffset>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT kafka_topic AS topic, kafka_partition AS partition, kafka_offset AS at_offset, count() AS copies, \
         any(event_id) AS any_event_id \
         FROM {database}.usage_ledger WHERE {EVENT_RANGE} \
         GROUP BY kafka_topic, kafka_partition, kafka_offset HAVING count() > 1 \
         ORDER BY kafka_topic, kafka_partition, kafka_offset LIMIT {limit}"
    );
    client
        .query(&sql)
        .bind(datetime_secs(from, "from")?)
        .bind(datetime_secs(to, "to")?)
        .fetch_all::<DuplicateOffset>()
        .await
        .map_err(|e| Error::clickhouse(format!("duplicate offsets of {database}.usage_ledger"), e))
}

/// The distinct offsets of `topic`/`partition` in `[lo, hi]` that have a ledger row (any event
/// time), ascending.
pub async fn offsets_in_span(
    client: &clickhouse::Client,
    database: &str,
    topic: &str,
    partition: i32,
    lo: i64,
    hi: i64,
) -> Result<Vec<i64>> {
    validate_database_name(database)?;
    let sql = format!(
        "SELECT DISTINCT kafka_offset FROM {database}.usage_ledger \
         WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ? \
         ORDER BY kafka_offset"
    );
    client
        .query(&sql)
        .bind(topic)
        .bind(partition)
        .bind(lo)
        .bind(hi)
        .fetch_all::<i64>()
        .await
        .map_err(|e| Error::clickhouse(format!("offsets of {topic}/{partition} in {database}.usage_ledger"), e))
}

/// The offsets in `[lo, hi]` missing from the ascending, distinct `present`, as inclusive ranges.
pub fn missing_ranges(present: &[i64], lo: i64, hi: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = lo;
    for &o in present {
        if o < next {
            continue;
        }
        if o > hi {
            break;
        }
        if o > next {
            out.push((next, o - 1));
        }
        next = o + 1;
    }
    if next <= hi {
        out.push((next, hi));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ranges_are_the_holes() {
        assert_eq!(missing_ranges(&[0, 1, 2, 3], 0, 3), vec![]);
        assert_eq!(missing_ranges(&[0, 2, 3, 7], 0, 7), vec![(1, 1), (4, 6)]);
        assert_eq!(missing_ranges(&[5], 3, 6), vec![(3, 4), (6, 6)]);
        assert_eq!(missing_ranges(&[], 3, 4), vec![(3, 4)]);
        assert_eq!(missing_ranges(&[1, 1, 2], 1, 2), vec![]);
    }

    #[test]
    fn counters_name_their_differences() {
        let a = Counters { request_count: 2, cost_usd: Money::from_picos(5), ..Counters::default() };
        let b = Counters { request_count: 1, cost_usd: Money::from_picos(5), ..Counters::default() };
        let d = a.differences(&b);
        assert_eq!(d, vec![("request_count", "2".to_owned(), "1".to_owned())]);
        assert_eq!(a.fields().len(), 19);
    }
}
