//! Ledger rows encoded straight from a borrowed event into `RowBinary`: the processor's hot path.
//!
//! [`LedgerRow`] owns one `String` per text column; building one per event, serializing it and
//! dropping it cost more CPU than pricing the event. [`LedgerBatch::push`] writes the same bytes
//! the `clickhouse` crate writes for a [`LedgerRow`] (same columns, same order) from the
//! [`UsageEventRef`] the decoder lends, so an accepted event allocates nothing. The integration
//! test `encoded_batch_reads_back_as_ledger_rows` holds the two encodings to each other on a
//! real server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clickhouse::Row;
use ledger_core::pricing::PricedUsage;
use ledger_core::{TagsRef, UsageEventRef};

use crate::error::{Error, Result};
use crate::row::{datetime_secs, event_time_secs, LedgerRow};
use crate::writer::MAX_BATCH_ROWS;

/// The batch of one Kafka partition, encoded as `RowBinary` rows of `usage_ledger`.
///
/// It keeps the preconditions of an atomic insert ([`crate::LedgerWriter::insert_batch`]) by
/// construction: one topic and partition, offsets strictly increasing, one `ingest_time` (see
/// [`LedgerBatch::restamp_if_empty`]), at most [`MAX_BATCH_ROWS`] rows.
#[derive(Debug, Clone)]
pub struct LedgerBatch {
    buf: Vec<u8>,
    ingest_time: u32,
    span: BatchSpan,
}

/// Which rows a batch holds: their Kafka topic and partition and their offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpan {
    rows: usize,
    topic: String,
    partition: i32,
    first_offset: i64,
    last_offset: i64,
}

impl BatchSpan {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the batch holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The Kafka topic of the rows.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The Kafka partition of the rows.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Offset of the first row (-1 when empty).
    pub fn first_offset(&self) -> i64 {
        self.first_offset
    }

    /// Offset of the last row (-1 when empty).
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }
}

impl LedgerBatch {
    /// An empty batch of `topic`/`partition` whose rows carry `ingest_time`.
    pub fn new(topic: &str, partition: i32, ingest_time: DateTime<Utc>) -> Result<Self> {
        Ok(LedgerBatch {
            buf: Vec::new(),
            ingest_time: datetime_secs(ingest_time, "ingest_time")?,
            span: BatchSpan { rows: 0, topic: topic.to_owned(), partition, first_offset: -1, last_offset: -1 },
        })
    }

    /// Stamps `ingest_time` anew while the batch holds no row (a batch opened by messages that
    /// were all skipped would otherwise carry the time it was opened); no-op once it has rows.
    pub fn restamp_if_empty(&mut self, ingest_time: DateTime<Utc>) -> Result<()> {
        if self.span.is_empty() {
            self.ingest_time = datetime_secs(ingest_time, "ingest_time")?;
        }
        Ok(())
    }

    /// Appends the ledger row of an accepted event read at `offset`.
    ///
    /// On an error nothing is appended: a time outside the `DateTime` range, a negative token
    /// count (which validation already rejects), an offset not above the last one, or a full batch.
    pub fn push<S: AsRef<str>>(&mut self, event: &UsageEventRef<'_>, priced: &PricedUsage<S>, offset: i64) -> Result<()> {
        let span = &mut self.span;
        if span.rows > 0 && offset <= span.last_offset {
            return Err(Error::InvalidBatch(format!(
                "offsets must strictly increase: offset {offset} after {}",
                span.last_offset
            )));
        }
        if span.rows >= MAX_BATCH_ROWS {
            return Err(Error::InvalidBatch(format!("the batch is full ({MAX_BATCH_ROWS} rows)")));
        }
        let event_time = event_time_secs(event.event_time)?;
        let tokens = [
            (event.input_tokens, "input_tokens"),
            (event.cache_read_input_tokens, "cache_read_input_tokens"),
            (event.cache_creation_input_tokens, "cache_creation_input_tokens"),
            (event.cache_creation_1h_input_tokens, "cache_creation_1h_input_tokens"),
            (event.output_tokens, "output_tokens"),
            (event.reasoning_output_tokens, "reasoning_output_tokens"),
        ];
        for (v, what) in tokens {
            if v < 0 {
                return Err(Error::OutOfRange(format!("{what} is negative ({v})")));
            }
        }

        let b = &mut self.buf;
        put_str(b, event.event_id);
        put_u32(b, event_time);
        put_u32(b, event.event_time.subsec_micros());
        put_u32(b, self.ingest_time);
        put_str(b, event.tenant_id);
        for s in [event.team, event.project, event.user_id, event.api_key_id, event.feature, event.environment] {
            put_str(b, s.unwrap_or_default());
        }
        put_tags(b, event.tags);
        put_str(b, event.provider);
        put_str(b, event.operation);
        put_str(b, priced.model.as_ref());
        put_str(b, event.request_model);
        for s in [event.response_model, event.routed_from_model, event.service_tier] {
            put_str(b, s.unwrap_or_default());
        }
        put_str(b, event.status);
        for (v, _) in tokens {
            put_u64(b, v.unsigned_abs());
        }
        let t = &priced.terms;
        for m in [t.input, t.cache_read, t.cache_write, t.cache_write_1h, t.output, t.reasoning, priced.cost] {
            put_i128(b, m.picos());
        }
        put_opt_i128(b, event.provided_cost_usd.map(|m| m.picos()));
        match &priced.routed_from {
            Some(r) => {
                put_opt_i128(b, Some(r.cost.picos()));
                put_i128(b, r.savings.picos());
            }
            None => {
                put_opt_i128(b, None);
                put_i128(b, 0);
            }
        }
        put_str(b, priced.price_version.as_ref());
        match event.latency_ms {
            Some(v) => {
                b.push(0);
                b.extend_from_slice(&v.to_le_bytes());
            }
            None => b.push(1),
        }
        put_str(b, event.response_id.unwrap_or_default());
        put_str(b, event.trace_id.unwrap_or_default());
        put_str(b, &span.topic);
        b.extend_from_slice(&span.partition.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());

        if span.rows == 0 {
            span.first_offset = offset;
        }
        span.rows += 1;
        span.last_offset = offset;
        Ok(())
    }

    /// The rows held: topic, partition, count and offsets.
    pub fn span(&self) -> &BatchSpan {
        &self.span
    }

    /// The `ingest_time` of every row (unix seconds).
    pub fn ingest_time(&self) -> u32 {
        self.ingest_time
    }

    /// The encoded rows, ready to send (cheap to clone for a retry).
    pub fn seal(self) -> SealedBatch {
        SealedBatch { bytes: bytes::Bytes::from(self.buf), span: self.span }
    }
}

/// A finished [`LedgerBatch`]: the bytes of one insert ([`crate::LedgerWriter::insert_encoded`]).
#[derive(Debug, Clone)]
pub struct SealedBatch {
    pub(crate) bytes: bytes::Bytes,
    span: BatchSpan,
}

impl SealedBatch {
    /// The rows held: topic, partition, count and offsets.
    pub fn span(&self) -> &BatchSpan {
        &self.span
    }
}

/// The column list of an encoded insert, in [`LedgerRow`]'s order.
pub(crate) fn column_list() -> String {
    LedgerRow::COLUMN_NAMES.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(",")
}

#[inline]
fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

#[inline]
fn put_str(b: &mut Vec<u8>, s: &str) {
    put_varint(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

#[inline]
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_i128(b: &mut Vec<u8>, v: i128) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// `Nullable(Decimal128)`: a null flag, then the value when present.
#[inline]
fn put_opt_i128(b: &mut Vec<u8>, v: Option<i128>) {
    match v {
        Some(v) => {
            b.push(0);
            put_i128(b, v);
        }
        None => b.push(1),
    }
}

/// The two parallel arrays `tag_keys`, `tag_values`, sorted by key with one value per key (the
/// last one in wire order wins, as when the pairs are collected into a map).
fn put_tags(b: &mut Vec<u8>, tags: TagsRef<'_>) {
    fn put_arrays<'a>(b: &mut Vec<u8>, n: usize, pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
        put_varint(b, n as u64);
        for (k, _) in pairs.clone() {
            put_str(b, k);
        }
        put_varint(b, n as u64);
        for (_, v) in pairs {
            put_str(b, v);
        }
    }
    match tags {
        TagsRef::Map(m) => put_arrays(b, m.len(), m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        TagsRef::Pairs(p) if p.windows(2).all(|w| w[0].0 < w[1].0) => put_arrays(b, p.len(), p.iter().copied()),
        TagsRef::Pairs(p) => {
            let map: BTreeMap<&str, &str> = p.iter().copied().collect();
            put_arrays(b, map.len(), map.iter().map(|(k, v)| (*k, *v)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_batch_takes_the_time_of_its_first_row() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut batch = LedgerBatch::new("t", 0, at("2026-03-31T23:00:00Z")).unwrap();
        batch.restamp_if_empty(at("2026-04-01T01:00:00Z")).unwrap();
        assert_eq!(i64::from(batch.ingest_time()), at("2026-04-01T01:00:00Z").timestamp());

        let event: ledger_core::UsageEvent = serde_json::from_value(serde_json::json!({
            "event_id": "e", "event_time": "2026-04-01T00:59:00Z", "tenant_id": "a",
            "provider": "openai", "request_model": "gpt-4o",
        }))
        .unwrap();
        let priced: PricedUsage = PricedUsage {
            model: "gpt-4o".into(),
            price_version: "v".into(),
            terms: ledger_core::pricing::CostTerms::default(),
            cost: ledger_core::Money::ZERO,
            routed_from: None,
        };
        batch.push(&event.as_view(), &priced, 7).unwrap();
        batch.restamp_if_empty(at("2026-04-01T02:00:00Z")).unwrap();
        assert_eq!(i64::from(batch.ingest_time()), at("2026-04-01T01:00:00Z").timestamp(), "one time per batch");
    }

    #[test]
    fn varints_are_leb128() {
        let enc = |v: u64| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [127]);
        assert_eq!(enc(128), [0x80, 1]);
        assert_eq!(enc(300), [0xac, 0x02]);
    }

    #[test]
    fn unsorted_and_repeated_tags_are_written_as_their_map() {
        let pairs = [("b", "1"), ("a", "2"), ("b", "3")];
        let mut from_pairs = Vec::new();
        put_tags(&mut from_pairs, TagsRef::Pairs(&pairs));
        let map: BTreeMap<String, String> = [("a", "2"), ("b", "3")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
        let mut from_map = Vec::new();
        put_tags(&mut from_map, TagsRef::Map(&map));
        assert_eq!(from_pairs, from_map);
        assert_eq!(from_map, [2, 1, b'a', 1, b'b', 2, 1, b'2', 1, b'3']);
    }
}
