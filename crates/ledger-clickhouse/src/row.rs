//! The row of `usage_ledger`, built from an event and its pricing.

use chrono::{DateTime, Timelike, Utc};
use ledger_core::pricing::PricedUsage;
use ledger_core::{EventTime, Money, UsageEvent};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where an event was read from: its Kafka coordinates (invariant 3, lineage).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lineage {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Offset of the event's message in the partition.
    pub offset: i64,
}

/// One row of `usage_ledger`, in `RowBinary` form.
///
/// Money columns hold the raw `Decimal(38, 12)` value, the pico-dollars of [`Money`] as `i128`
/// (`RowBinary` encodes `Decimal128` as a little-endian `i128`). Times are Unix seconds
/// (`DateTime('UTC')`), with the sub-second part of `event_time` in `event_time_micros`.
/// Optional text is `""` when absent. Tags are parallel arrays sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LedgerRow {
    pub event_id: String,
    pub event_time: u32,
    pub event_time_micros: u32,
    pub ingest_time: u32,

    pub tenant_id: String,
    pub team: String,
    pub project: String,
    pub user_id: String,
    pub api_key_id: String,
    pub feature: String,
    pub environment: String,
    pub tag_keys: Vec<String>,
    pub tag_values: Vec<String>,

    pub provider: String,
    pub operation: String,
    /// The catalog key that priced the event.
    pub model: String,
    pub request_model: String,
    pub response_model: String,
    pub routed_from_model: String,
    pub service_tier: String,
    pub status: String,

    pub input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_creation_1h_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_output_tokens: u64,

    pub input_cost_usd: i128,
    pub cache_read_cost_usd: i128,
    pub cache_write_cost_usd: i128,
    pub cache_write_1h_cost_usd: i128,
    pub output_cost_usd: i128,
    pub reasoning_cost_usd: i128,
    /// The charged cost: the exact sum of the six terms.
    pub cost_usd: i128,
    pub provided_cost_usd: Option<i128>,
    /// What `routed_from_model` would have cost, when the event was rerouted.
    pub routed_from_cost_usd: Option<i128>,
    /// `routed_from_cost_usd - cost_usd`; 0 when not rerouted.
    pub savings_usd: i128,
    pub price_version: String,

    pub latency_ms: Option<i64>,
    pub response_id: String,
    pub trace_id: String,

    pub kafka_topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// Inserts one row into `table` (a validated, unescaped name); `context` says what for errors.
pub(crate) async fn insert_one<T: clickhouse::RowWrite>(
    client: &clickhouse::Client,
    table: &str,
    row: &T::Value<'_>,
    context: impl Fn() -> String,
) -> Result<()> {
    let mut insert = client.insert_unescaped::<T>(table).await.map_err(|e| Error::clickhouse(context(), e))?;
    insert.write(row).await.map_err(|e| Error::clickhouse(context(), e))?;
    insert.end().await.map_err(|e| Error::clickhouse(context(), e))
}

/// `DateTime` seconds of `t`, or an error outside 1970-01-01 ..= 2106-02-07.
pub fn datetime_secs(t: DateTime<Utc>, what: &str) -> Result<u32> {
    clickhouse_secs(t.timestamp(), what, t)
}

/// An event time's whole seconds as a ClickHouse `DateTime` (1970..2106).
pub(crate) fn event_time_secs(t: EventTime) -> Result<u32> {
    clickhouse_secs(t.secs(), "event_time", t)
}

/// `secs` (of the instant `shown`) as a ClickHouse `DateTime`, or an error naming `what`.
fn clickhouse_secs(secs: i64, what: &str, shown: impl std::fmt::Display) -> Result<u32> {
    u32::try_from(secs)
        .map_err(|_| Error::OutOfRange(format!("{what} {shown} is outside the ClickHouse DateTime range (1970..2106)")))
}

fn non_negative(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::OutOfRange(format!("{what} is negative ({v})")))
}

impl LedgerRow {
    /// Builds the ledger row of an accepted event.
    ///
    /// `ingest_time` is the batch's stamp (one per insert, see [`crate::LedgerWriter::insert_batch`]).
    /// Fails only when a value does not fit its column: a time outside the `DateTime` range or a
    /// negative token count (which [`UsageEvent::validate`] already rejects).
    pub fn new(event: &UsageEvent, priced: &PricedUsage, lineage: Lineage, ingest_time: DateTime<Utc>) -> Result<LedgerRow> {
        LedgerRow::from_event(event.clone(), priced, lineage, ingest_time)
    }

    /// [`LedgerRow::new`] taking the event by value: its strings move into the row. (The
    /// processor writes rows with [`crate::LedgerBatch`] instead, without this row type.)
    pub fn from_event(
        event: UsageEvent,
        priced: &PricedUsage,
        lineage: Lineage,
        ingest_time: DateTime<Utc>,
    ) -> Result<LedgerRow> {
        let opt = |s: Option<String>| s.unwrap_or_default();
        let (tag_keys, tag_values) = event.tags.into_iter().unzip();
        let (routed_from_cost_usd, savings_usd) = match &priced.routed_from {
            Some(r) => (Some(r.cost.picos()), r.savings.picos()),
            None => (None, 0),
        };
        let t = &priced.terms;
        Ok(LedgerRow {
            event_id: event.event_id,
            event_time: datetime_secs(event.event_time, "event_time")?,
            event_time_micros: event.event_time.nanosecond().min(999_999_999) / 1_000,
            ingest_time: datetime_secs(ingest_time, "ingest_time")?,
            tenant_id: event.attribution.tenant_id,
            team: opt(event.attribution.team),
            project: opt(event.attribution.project),
            user_id: opt(event.attribution.user_id),
            api_key_id: opt(event.attribution.api_key_id),
            feature: opt(event.feature),
            environment: opt(event.environment),
            tag_keys,
            tag_values,
            provider: event.provider,
            operation: event.operation,
            model: priced.model.to_string(),
            request_model: event.request_model,
            response_model: opt(event.response_model),
            routed_from_model: opt(event.routed_from_model),
            service_tier: opt(event.service_tier),
            status: event.status,
            input_tokens: non_negative(event.input_tokens, "input_tokens")?,
            cache_read_input_tokens: non_negative(event.cache_read_input_tokens, "cache_read_input_tokens")?,
            cache_creation_input_tokens: non_negative(event.cache_creation_input_tokens, "cache_creation_input_tokens")?,
            cache_creation_1h_input_tokens: non_negative(event.cache_creation_1h_input_tokens, "cache_creation_1h_input_tokens")?,
            output_tokens: non_negative(event.output_tokens, "output_tokens")?,
            reasoning_output_tokens: non_negative(event.reasoning_output_tokens, "reasoning_output_tokens")?,
            input_cost_usd: t.input.picos(),
            cache_read_cost_usd: t.cache_read.picos(),
            cache_write_cost_usd: t.cache_write.picos(),
            cache_write_1h_cost_usd: t.cache_write_1h.picos(),
            output_cost_usd: t.output.picos(),
            reasoning_cost_usd: t.reasoning.picos(),
            cost_usd: priced.cost.picos(),
            provided_cost_usd: event.provided_cost_usd.map(Money::picos),
            routed_from_cost_usd,
            savings_usd,
            price_version: priced.price_version_text().into_owned(),
            latency_ms: event.latency_ms,
            response_id: opt(event.response_id),
            trace_id: opt(event.trace_id),
            kafka_topic: lineage.topic,
            kafka_partition: lineage.partition,
            kafka_offset: lineage.offset,
        })
    }

    /// The charged cost.
    pub fn cost(&self) -> Money {
        Money::from_picos(self.cost_usd)
    }

    /// The event time with its sub-second part.
    pub fn event_time_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.event_time), self.event_time_micros.min(999_999) * 1_000).unwrap_or_default()
    }

    /// The batch's ingest time.
    pub fn ingest_time_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.ingest_time), 0).unwrap_or_default()
    }

    /// The Kafka coordinates of the row.
    pub fn lineage(&self) -> Lineage {
        Lineage { topic: self.kafka_topic.clone(), partition: self.kafka_partition, offset: self.kafka_offset }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ledger_core::pricing::{CostTerms, RoutedFromCost};

    use super::*;

    #[test]
    fn row_carries_event_pricing_and_lineage() {
        let event: UsageEvent = serde_json::from_str(
            r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00.123456789Z","tenant_id":"acme",
                "team":"search","provider":"openai","request_model":"gpt-4o-mini",
                "routed_from_model":"gpt-4o","tags":{"b":"2","a":"1"},
                "input_tokens":1000,"output_tokens":300,"provided_cost_usd":"0.5","latency_ms":42}"#,
        )
        .unwrap();
        let terms = CostTerms { input: Money::from_picos(7), output: Money::from_picos(5), ..CostTerms::default() };
        let priced: PricedUsage = PricedUsage {
            model: Arc::from("gpt-4o-mini"),
            price_version: Arc::from("litellm@2026-01-01T00:00:00Z"),
            override_version: None,
            alias_of: None,
            terms,
            cost: terms.total().unwrap(),
            routed_from: Some(RoutedFromCost {
                model: Arc::from("gpt-4o"),
                cost: Money::from_picos(100),
                savings: Money::from_picos(88),
            }),
        };
        let ingest = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let lineage = Lineage { topic: "llm.usage.v1".into(), partition: 3, offset: 77 };
        let row = LedgerRow::new(&event, &priced, lineage.clone(), ingest).unwrap();
        assert_eq!(row.cost_usd, 12);
        assert_eq!(row.routed_from_cost_usd, Some(100));
        assert_eq!(row.savings_usd, 88);
        assert_eq!(row.provided_cost_usd, Some(500_000_000_000));
        assert_eq!(row.tag_keys, vec!["a", "b"]);
        assert_eq!(row.tag_values, vec!["1", "2"]);
        assert_eq!(row.team, "search");
        assert_eq!(row.project, "");
        assert_eq!(row.event_time_micros, 123_456);
        assert_eq!(row.event_time_utc(), "2026-11-01T12:00:00.123456Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(row.ingest_time_utc(), ingest);
        assert_eq!(row.lineage(), lineage);
        assert_eq!(row.model, "gpt-4o-mini");
    }
}
