//! The fenced batch writer: exactly-once in money by offsets stored in the rows.
//!
//! The design (docs/architecture.md, invariant 1): the ledger itself is the record of what was
//! written. On partition assignment the processor reads [`LedgerWriter::high_watermarks`]
//! (`max(kafka_offset)` per Kafka partition) and seeks past it; every insert then carries, for
//! each Kafka partition in it, that partition's next offsets in increasing order, all of them
//! stamped with one `ingest_time` ([`LedgerWriter::insert_batch`] takes one partition,
//! [`LedgerWriter::insert_encoded`], the processor's, the batches of several).
//!
//! Why a partition's batch is all-or-nothing: `usage_ledger` is partitioned by `toYYYYMM(ingest_time)`, so
//! rows sharing one `ingest_time` fall in one ClickHouse partition; an `INSERT` is one block (the
//! processor sends one `Native` block; a `RowBinary` insert of fewer than `max_insert_block_size`
//! rows, 1,048,576 on 18.16 and 1,048,449 on current releases, is parsed into one), and one block
//! of one partition is written as one part, which becomes visible atomically on commit.
//! [`MAX_BATCH_ROWS`] keeps batches well below that limit.
//!
//! With several batches in one insert, a block spanning two ingest months becomes two parts
//! written one after the other: each batch still lands whole or not at all.
//!
//! A `Native` block is written only once it has been read whole, so a body cut short by a killed
//! client writes nothing. Even where atomicity did not hold (a `RowBinary` body cut at a row
//! boundary), what could reach the table of each partition is a *prefix* of its batch, because
//! each batch's rows are sent in offset order; a prefix is a consistent fence state (the
//! watermark is its last offset and the rest is re-consumed), so no event is ever written twice
//! or lost.
//!
//! Not covered by the fence (documented limits): a zombie writer that still owns a partition
//! after a rebalance handed it to another instance (rely on the consumer group's session
//! timeout and check [`LedgerWriter::high_watermarks`] on assignment); and the materialized
//! views, which ClickHouse runs after the ledger part is written, so a server crash between the
//! two leaves a rollup short — [`crate::LedgerReader::ledger_totals`] detects it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use ledger_core::aggregate::{SpendKey, SpendScope, SpendTotals};
use ledger_core::attribution::{Attribution, AttributionKey};
use ledger_core::Money;

use crate::config::validate_database_name;
use crate::encoded::SealedBatch;
pub use crate::encoded::MAX_BATCH_ROWS;
use crate::error::{Error, Result};
use crate::row::{datetime_secs, LedgerRow};

/// Writes ledger rows with the offset fence; reads the fence state back.
#[derive(Debug, Clone)]
pub struct LedgerWriter {
    client: clickhouse::Client,
    database: String,
    table: String,
    /// The column list of an encoded insert, built once.
    columns: std::sync::Arc<str>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Watermark {
    kafka_partition: i32,
    max_offset: i64,
}

impl LedgerWriter {
    /// A writer of `{database}.usage_ledger`.
    pub fn new(client: clickhouse::Client, database: impl Into<String>) -> Result<Self> {
        let database = database.into();
        validate_database_name(&database)?;
        let table = format!("{database}.usage_ledger");
        Ok(LedgerWriter { client, database, table, columns: crate::encoded::column_list().into() })
    }

    /// The database written to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// `max(kafka_offset)` per Kafka partition of `topic` in the ledger: the next offset to
    /// consume in a partition is its watermark + 1; a partition without rows is absent.
    pub async fn high_watermarks(&self, topic: &str) -> Result<HashMap<i32, i64>> {
        let sql = format!(
            "SELECT kafka_partition, max(kafka_offset) AS max_offset FROM {} \
             WHERE kafka_topic = ? GROUP BY kafka_partition",
            self.table
        );
        let rows = self
            .client
            .query(&sql)
            .bind(topic)
            .fetch_all::<Watermark>()
            .await
            .map_err(|e| Error::clickhouse(format!("reading high watermarks of {topic} from {}", self.table), e))?;
        Ok(rows.into_iter().map(|w| (w.kafka_partition, w.max_offset)).collect())
    }

    /// Checks the preconditions of [`LedgerWriter::insert_batch`] without writing.
    pub fn check_batch(rows: &[LedgerRow]) -> Result<()> {
        let Some(first) = rows.first() else { return Ok(()) };
        if rows.len() > MAX_BATCH_ROWS {
            return Err(Error::InvalidBatch(format!("{} rows exceed the limit of {MAX_BATCH_ROWS} rows per insert", rows.len())));
        }
        for (i, pair) in rows.windows(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            if b.kafka_topic != first.kafka_topic || b.kafka_partition != first.kafka_partition {
                return Err(Error::InvalidBatch(format!(
                    "row {} is from {}/{} but the batch is from {}/{}: one insert covers one Kafka partition",
                    i + 1,
                    b.kafka_topic,
                    b.kafka_partition,
                    first.kafka_topic,
                    first.kafka_partition
                )));
            }
            if b.kafka_offset <= a.kafka_offset {
                return Err(Error::InvalidBatch(format!(
                    "offsets must strictly increase: row {} has offset {} after {}",
                    i + 1,
                    b.kafka_offset,
                    a.kafka_offset
                )));
            }
            if b.ingest_time != first.ingest_time {
                return Err(Error::InvalidBatch(format!(
                    "row {} has ingest_time {} but the batch is stamped {}: one ingest_time per insert \
                     keeps it in one ClickHouse partition",
                    i + 1,
                    b.ingest_time,
                    first.ingest_time
                )));
            }
        }
        Ok(())
    }

    /// Inserts one batch as one `INSERT` (one block, one part, atomic; see the module docs).
    ///
    /// Preconditions, checked before anything is sent ([`Error::InvalidBatch`] otherwise): all
    /// rows from one Kafka topic and partition, offsets strictly increasing, one `ingest_time`
    /// (the caller stamps the batch), at most [`MAX_BATCH_ROWS`] rows. An empty batch is a no-op.
    /// On a retryable error the batch may or may not (or, in part, as a prefix) have been written:
    /// re-read [`LedgerWriter::high_watermarks`] and resend only the rows past it.
    pub async fn insert_batch(&self, rows: &[LedgerRow]) -> Result<()> {
        LedgerWriter::check_batch(rows)?;
        let Some(first) = rows.first() else { return Ok(()) };
        let context = || {
            format!(
                "insert of {} rows ({}/{} offsets {}..={}) into {}",
                rows.len(),
                first.kafka_topic,
                first.kafka_partition,
                first.kafka_offset,
                rows[rows.len() - 1].kafka_offset,
                self.table
            )
        };
        let mut insert =
            self.client.insert_unescaped::<LedgerRow>(&self.table).await.map_err(|e| Error::clickhouse(context(), e))?;
        for row in rows {
            insert.write(row).await.map_err(|e| Error::clickhouse(context(), e))?;
        }
        insert.end().await.map_err(|e| Error::clickhouse(context(), e))
    }

    /// Inserts encoded batches ([`crate::LedgerBatch`], any number of Kafka partitions, at most
    /// [`MAX_BATCH_ROWS`] rows in all) as one `INSERT`: fewer, larger parts, which is most of
    /// ClickHouse's cost per row. The rows form one block; each batch has one `ingest_time`, so
    /// its rows land in one part, all or none, whatever happens to the others (a block that
    /// spans two ingest months is written as two parts). On a retryable error, re-read
    /// [`LedgerWriter::high_watermarks`]: a batch landed when its last offset is there.
    pub async fn insert_encoded(&self, batches: &[SealedBatch]) -> Result<()> {
        let rows: usize = batches.iter().map(|b| b.span().len()).sum();
        if rows == 0 {
            return Ok(());
        }
        let context = || {
            let ranges: Vec<String> = batches
                .iter()
                .map(|b| b.span())
                .map(|s| format!("{}/{} offsets {}..={}", s.topic(), s.partition(), s.first_offset(), s.last_offset()))
                .collect();
            format!("insert of {rows} rows ({}) into {}", ranges.join(", "), self.table)
        };
        if rows > MAX_BATCH_ROWS {
            return Err(Error::InvalidBatch(format!("{} exceeds the limit of {MAX_BATCH_ROWS} rows per insert", context())));
        }
        let sql = format!("INSERT INTO {}({}) FORMAT Native", self.table, self.columns);
        let mut insert = self.client.insert_formatted_with(sql);
        for chunk in send_chunks(crate::encoded::native_block(batches), SEND_CHUNK) {
            insert.send(chunk).await.map_err(|e| Error::clickhouse(context(), e))?;
        }
        insert.end().await.map_err(|e| Error::clickhouse(context(), e))
    }

    /// Event ids written for one Kafka partition with `ingest_time >= since`, to rebuild the
    /// processor's dedupe state after a restart. Filtering on `ingest_time` prunes the ledger's
    /// monthly partitions. Ids appear once each, in no particular order.
    pub async fn recent_event_ids(&self, topic: &str, partition: i32, since: DateTime<Utc>) -> Result<Vec<String>> {
        let since_secs = datetime_secs(since, "since")?;
        let sql = format!(
            "SELECT DISTINCT event_id FROM {} \
             WHERE ingest_time >= toDateTime(?, 'UTC') AND kafka_topic = ? AND kafka_partition = ?",
            self.table
        );
        self.client
            .query(&sql)
            .bind(since_secs)
            .bind(topic)
            .bind(partition)
            .fetch_all::<String>()
            .await
            .map_err(|e| Error::clickhouse(format!("reading recent event ids of {topic}/{partition}"), e))
    }

    /// Cumulative spend of one hour bucket of one source partition, per spend scope and key
    /// ([`SpendScope`]), as the durable ledger holds it (restores the processor's spend
    /// aggregates after a restart).
    pub async fn spend_bucket(&self, topic: &str, partition: i32, bucket_start: i64) -> Result<Vec<(SpendKey, SpendTotals)>> {
        let start = u32::try_from(bucket_start).map_err(|_| Error::OutOfRange(format!("bucket {bucket_start}")))?;
        let mut out = Vec::new();
        for scope in SpendScope::ALL {
            let (team, project, user, key, model) = scope.fields();
            let column = |wanted: bool, name: &str| if wanted { name.to_owned() } else { format!("'' AS {name}") };
            let mut filters = String::new();
            let mut group = vec!["tenant_id".to_owned()];
            for (wanted, name) in [(team, "team"), (project, "project"), (user, "user_id"), (key, "api_key_id"), (model, "model")]
            {
                if wanted {
                    filters.push_str(&format!(" AND {name} != ''"));
                    group.push(name.to_owned());
                }
            }
            let sql = format!(
                "SELECT tenant_id, {}, {}, {}, {}, {}, sum(cost_usd) AS cost, \
                 sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, count() AS requests, \
                 max(kafka_offset) AS last_offset, max(event_time) AS max_event_time \
                 FROM {} WHERE kafka_topic = ? AND kafka_partition = ? \
                 AND event_time >= toDateTime(?, 'UTC') AND event_time < toDateTime(?, 'UTC'){filters} \
                 GROUP BY {}",
                column(team, "team"),
                column(project, "project"),
                column(user, "user_id"),
                column(key, "api_key_id"),
                column(model, "model"),
                self.table,
                group.join(", ")
            );
            let rows = self
                .client
                .query(&sql)
                .bind(topic)
                .bind(partition)
                .bind(start)
                .bind(start.saturating_add(ledger_core::aggregate::BUCKET_SECS as u32))
                .fetch_all::<SpendBucketRow>()
                .await
                .map_err(|e| Error::clickhouse(format!("reading spend of {topic}/{partition} bucket {bucket_start}"), e))?;
            let opt = |s: String| if s.is_empty() { None } else { Some(s) };
            out.extend(rows.into_iter().map(|r| {
                let attribution = Attribution {
                    tenant_id: r.tenant_id,
                    team: opt(r.team),
                    project: opt(r.project),
                    user_id: opt(r.user_id),
                    api_key_id: opt(r.api_key_id),
                };
                let key = SpendKey { key: AttributionKey { attribution, model: opt(r.model) }, bucket_start };
                let totals = SpendTotals {
                    cost: Money::from_picos(r.cost),
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    requests: r.requests,
                    last_offset: r.last_offset,
                    max_event_time_micros: i64::from(r.max_event_time) * 1_000_000,
                };
                (key, totals)
            }));
        }
        Ok(out)
    }

    /// Hour buckets (unix seconds) of the rows of one source partition ingested within
    /// `window_secs` of its latest ingest: what a processor that stopped abruptly may have
    /// written without publishing the spend updates.
    pub async fn recent_spend_buckets(&self, topic: &str, partition: i32, window_secs: u32) -> Result<Vec<i64>> {
        let sql = format!(
            "SELECT DISTINCT toUInt32(toStartOfHour(event_time)) FROM {t} \
             WHERE kafka_topic = ? AND kafka_partition = ? AND ingest_time >= \
             (SELECT max(ingest_time) FROM {t} WHERE kafka_topic = ? AND kafka_partition = ?) - ?",
            t = self.table
        );
        let buckets = self
            .client
            .query(&sql)
            .bind(topic)
            .bind(partition)
            .bind(topic)
            .bind(partition)
            .bind(window_secs)
            .fetch_all::<u32>()
            .await
            .map_err(|e| Error::clickhouse(format!("reading recent spend buckets of {topic}/{partition}"), e))?;
        Ok(buckets.into_iter().map(i64::from).collect())
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct SpendBucketRow {
    tenant_id: String,
    team: String,
    project: String,
    user_id: String,
    api_key_id: String,
    model: String,
    cost: i128,
    input_tokens: u64,
    output_tokens: u64,
    requests: u64,
    last_offset: i64,
    max_event_time: u32,
}

/// Most bytes sent at once: bounds each compressed block of an insert.
const SEND_CHUNK: usize = 1 << 20;

/// `pieces` regrouped for sending, in order: pieces under a quarter of `chunk` bytes are gathered
/// (copied), the others are shared; no chunk is longer than `chunk`.
fn send_chunks(pieces: Vec<bytes::Bytes>, chunk: usize) -> Vec<bytes::Bytes> {
    fn push_sliced(out: &mut Vec<bytes::Bytes>, bytes: bytes::Bytes, chunk: usize) {
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + chunk).min(bytes.len());
            out.push(bytes.slice(start..end));
            start = end;
        }
    }
    let mut out = Vec::new();
    let mut gathered = bytes::BytesMut::new();
    for piece in pieces {
        if piece.len() < chunk / 4 {
            gathered.extend_from_slice(&piece);
            if gathered.len() >= chunk {
                push_sliced(&mut out, gathered.split().freeze(), chunk);
            }
        } else {
            if !gathered.is_empty() {
                out.push(gathered.split().freeze());
            }
            push_sliced(&mut out, piece, chunk);
        }
    }
    if !gathered.is_empty() {
        out.push(gathered.freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_chunks_keep_the_bytes_in_order_and_bound_each_chunk() {
        let piece = |len: usize, byte: u8| bytes::Bytes::from(vec![byte; len]);
        let mut pieces = vec![piece(2, 1), piece(2, 2), piece(30, 3), piece(1, 4)];
        pieces.extend((5..11).map(|b| piece(2, b)));
        pieces.extend([piece(0, 11), piece(2, 12)]);
        let chunks = send_chunks(pieces.clone(), 12);
        assert_eq!(chunks.concat(), pieces.concat());
        // Small pieces (under 3 bytes) are gathered until 12 bytes, then cut at 12; a large
        // piece flushes what was gathered and is cut in slices of 12.
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(lens, [4, 12, 12, 6, 12, 1, 2]);
    }
}
