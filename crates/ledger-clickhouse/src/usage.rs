//! The pricing inputs of ledger rows (who, which model, which tier, when, every token count),
//! their charged cost by token class and their lineage, streamed for re-pricing them under
//! another catalog (`ledger prices diff --ledger`, `ledger close --correct-prices`). Money is
//! the raw `Decimal(38, 12)` (`i128`), never a float.

use chrono::{DateTime, Utc};
use ledger_core::{EventTime, Money};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::report::LedgerReader;
use crate::row::datetime_secs;

/// What priced one ledger row, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `event_time` (with `event_time_micros`).
    pub event_time: EventTime,
    /// `tenant_id`.
    pub tenant_id: String,
    /// `provider`.
    pub provider: String,
    /// `model`: the catalog key that priced it.
    pub model: String,
    /// `request_model`.
    pub request_model: String,
    /// `response_model` (`''` when absent).
    pub response_model: String,
    /// `service_tier` (`''` when absent).
    pub service_tier: String,
    /// The six token columns: input, cache read, cache write, 1 hour cache write, output, reasoning.
    pub tokens: [u64; 6],
    /// `cost_usd`.
    pub cost: Money,
    /// `team`, `project` and `feature` (`''` when absent).
    pub team: String,
    /// See `team`.
    pub project: String,
    /// See `team`.
    pub feature: String,
    /// `price_version`: what priced it.
    pub price_version: String,
    /// `kafka_topic`, `kafka_partition` and `kafka_offset`: where it came from.
    pub kafka_topic: String,
    /// See `kafka_topic`.
    pub kafka_partition: i32,
    /// See `kafka_topic`.
    pub kafka_offset: i64,
    /// The cost of each token class, in [`ledger_core::TokenClass::ALL`] order.
    pub class_costs: [Money; 6],
}

impl UsageRow {
    /// The tokens of each class, in [`ledger_core::TokenClass::ALL`] order (input without its
    /// cached parts, output without reasoning), as the ledger's class costs count them.
    pub fn class_tokens(&self) -> [u64; 6] {
        let [input, cache_read, cache_write, cache_write_1h, output, reasoning] = self.tokens;
        [
            input.saturating_sub(cache_read).saturating_sub(cache_write).saturating_sub(cache_write_1h),
            cache_read,
            cache_write,
            cache_write_1h,
            output.saturating_sub(reasoning),
            reasoning,
        ]
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Raw {
    secs: u32,
    micros: u32,
    tenant_id: String,
    provider: String,
    model: String,
    request_model: String,
    response_model: String,
    service_tier: String,
    input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_creation_1h_input_tokens: u64,
    output_tokens: u64,
    reasoning_output_tokens: u64,
    cost: i128,
    team: String,
    project: String,
    feature: String,
    price_version: String,
    kafka_topic: String,
    kafka_partition: i32,
    kafka_offset: i64,
    input_cost_usd: i128,
    cache_read_cost_usd: i128,
    cache_write_cost_usd: i128,
    cache_write_1h_cost_usd: i128,
    output_cost_usd: i128,
    reasoning_cost_usd: i128,
}

impl LedgerReader {
    /// Calls `f` with every ledger row whose `event_time` is in `[from, to)`, streamed (memory
    /// stays flat whatever the range); returns how many.
    pub async fn usage_rows(&self, from: DateTime<Utc>, to: DateTime<Utc>, mut f: impl FnMut(UsageRow)) -> Result<u64> {
        let sql = format!(
            "SELECT toUInt32(event_time) AS secs, event_time_micros AS micros, tenant_id, provider, model, request_model, \
             response_model, service_tier, input_tokens, cache_read_input_tokens, cache_creation_input_tokens, \
             cache_creation_1h_input_tokens, output_tokens, reasoning_output_tokens, cost_usd AS cost, team, project, \
             feature, price_version, kafka_topic, kafka_partition, kafka_offset, input_cost_usd, cache_read_cost_usd, \
             cache_write_cost_usd, cache_write_1h_cost_usd, output_cost_usd, reasoning_cost_usd \
             FROM {}.usage_ledger WHERE event_time >= toDateTime(?, 'UTC') AND event_time < toDateTime(?, 'UTC')",
            self.database()
        );
        let context = || format!("reading usage rows of {}.usage_ledger", self.database());
        let mut cursor = self
            .client()
            .query(&sql)
            .bind(datetime_secs(from, "from")?)
            .bind(datetime_secs(to, "to")?)
            .fetch::<Raw>()
            .map_err(|e| Error::clickhouse(context(), e))?;
        let mut n = 0;
        while let Some(r) = cursor.next().await.map_err(|e| Error::clickhouse(context(), e))? {
            let micros = i64::from(r.secs) * 1_000_000 + i64::from(r.micros.min(999_999));
            f(UsageRow {
                event_time: EventTime::from_micros(micros).unwrap_or_default(),
                tenant_id: r.tenant_id,
                provider: r.provider,
                model: r.model,
                request_model: r.request_model,
                response_model: r.response_model,
                service_tier: r.service_tier,
                tokens: [
                    r.input_tokens,
                    r.cache_read_input_tokens,
                    r.cache_creation_input_tokens,
                    r.cache_creation_1h_input_tokens,
                    r.output_tokens,
                    r.reasoning_output_tokens,
                ],
                cost: Money::from_picos(r.cost),
                team: r.team,
                project: r.project,
                feature: r.feature,
                price_version: r.price_version,
                kafka_topic: r.kafka_topic,
                kafka_partition: r.kafka_partition,
                kafka_offset: r.kafka_offset,
                class_costs: [
                    r.input_cost_usd,
                    r.cache_read_cost_usd,
                    r.cache_write_cost_usd,
                    r.cache_write_1h_cost_usd,
                    r.output_cost_usd,
                    r.reasoning_cost_usd,
                ]
                .map(Money::from_picos),
            });
            n += 1;
        }
        Ok(n)
    }
}
