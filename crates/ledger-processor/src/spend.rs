//! Spend publication: once a batch is durable in the ledger, the cumulative spend of every key
//! it touched goes to the compacted spend topic, where the budget enforcer reads it.
//!
//! Updates are cumulative per (key, hour, source partition), so a lost or repeated update
//! heals with the next one; a partition's new owner restores the recent buckets from the ledger
//! and republishes them.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use rdkafka::producer::FutureRecord;

use ledger_clickhouse::LedgerWriter;
use ledger_core::aggregate::{hour_bucket, SpendAggregator, SpendKey, SpendTotals, BUCKET_SECS};
use ledger_core::spend::SpendUpdate;

use crate::core::Core;
use crate::insert::retrying;
use crate::ProcessorError;

/// Buckets kept in memory behind the current hour: older ones are evicted after a publication.
const KEEP_HOURS: i64 = 48;

impl Core {
    /// Merges a durable batch's spend into the partition's aggregates and publishes the
    /// cumulative totals of every key it touched to the spend topic.
    /// `commit`: the offset to commit once the updates are acknowledged.
    pub(crate) async fn publish_spend(
        &mut self,
        partition: i32,
        batch: &SpendAggregator,
        commit: i64,
    ) -> Result<(), ProcessorError> {
        let topic = self.config.topics.usage.clone();
        let Some(state) = self.partitions.get_mut(&partition) else { return Ok(()) };
        let mut restored = HashSet::new();
        for bucket in batch.bucket_starts() {
            if state.loaded_buckets.contains(&bucket) {
                continue;
            }
            if bucket >= state.owned_from_bucket {
                state.loaded_buckets.insert(bucket);
                continue;
            }
            // The ledger already holds the batch's rows too: restoring the bucket counts them.
            restore_bucket(&self.writer, &topic, partition, bucket, &mut state.spend).await?;
            state.loaded_buckets.insert(bucket);
            restored.insert(bucket);
        }
        state.spend.merge_from(batch, |bucket| !restored.contains(&bucket)).map_err(|_| spend_overflow(partition))?;
        self.publish_touched(partition, Some(commit)).await
    }

    /// Publishes the cumulative totals of every key touched since the last publication; once
    /// Kafka acknowledges them, an [`Ack`] asks for `commit` to be committed.
    pub(crate) async fn publish_touched(&mut self, partition: i32, commit: Option<i64>) -> Result<(), ProcessorError> {
        let topic = self.config.topics.usage.clone();
        let Some(state) = self.partitions.get_mut(&partition) else { return Ok(()) };
        let touched = state.spend.take_touched().map_err(|_| spend_overflow(partition))?;
        let keep_from = hour_bucket(Utc::now().timestamp()) - KEEP_HOURS * BUCKET_SECS;
        state.spend.evict_before(keep_from);
        state.loaded_buckets.retain(|b| *b >= keep_from);
        let sequence = state.spend_pending.start(commit);
        let ack = Ack { partition, generation: state.generation, sequence, delivered: true };
        if touched.is_empty() {
            let _ = self.acks.0.send(ack);
            return Ok(());
        }
        let now = Utc::now();
        let mut deliveries = Vec::with_capacity(touched.len());
        for (key, totals) in touched {
            let update = spend_update(&key, &totals, &topic, partition, now);
            let payload = self.spend_codec.encode(&update)?;
            let key = update.key();
            let record = FutureRecord::to(&self.config.topics.spend).key(&key).payload(&payload);
            let delivery = ledger_kafka::producer::enqueue(&self.producer, record).await?;
            deliveries.push(delivery);
        }
        // The acknowledgements are awaited beside consumption: waiting here held the loop for
        // a broker round trip per batch, and a lost update heals with the next one (cumulative;
        // the ledger stays exact either way). Shutdown flushes the producer.
        let (stats, acks, wake) = (self.stats.clone(), self.acks.0.clone(), self.insert_done.clone());
        tokio::spawn(async move {
            let mut delivered = true;
            for d in deliveries {
                match d.await {
                    Ok(Ok(_)) => stats.spend_updates.inc(),
                    Ok(Err((e, _))) => {
                        delivered = false;
                        tracing::warn!(error = %e, "a spend update was not delivered");
                    }
                    Err(_) => {
                        delivered = false;
                        tracing::warn!("a spend update was cancelled");
                    }
                }
            }
            // Undelivered: no commit (a later batch's commit covers the offsets once its spend
            // is delivered; the cumulative totals heal with the next update).
            let _ = acks.send(Ack { delivered, ..ack });
            wake.notify_one();
        });
        Ok(())
    }

    /// Waits until the spend updates handed to the producer are delivered (at most `wait`).
    pub(crate) async fn flush_producer(&self, wait: Duration) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, wait)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("spend updates still undelivered at shutdown; the next owner republishes recent buckets");
        }
    }
}

/// A spend publication acknowledged (or failed) by Kafka, for the loop to commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack {
    pub(crate) partition: i32,
    /// The assignment the publication belongs to ([`crate::state::PartitionState::generation`]).
    pub(crate) generation: u64,
    /// Which of the partition's publications ([`crate::state::SpendPublications`]).
    pub(crate) sequence: u64,
    /// Every update delivered.
    pub(crate) delivered: bool,
}

/// The spend-topic record of one key's cumulative totals.
pub(crate) fn spend_update(
    key: &SpendKey,
    totals: &SpendTotals,
    topic: &str,
    partition: i32,
    now: chrono::DateTime<Utc>,
) -> SpendUpdate {
    let micros = |m: i64| chrono::DateTime::from_timestamp_micros(m).unwrap_or_default();
    SpendUpdate {
        scope: key.key.clone(),
        period_start: micros(key.bucket_start * 1_000_000),
        bucket: ledger_core::spend::BUCKET_HOUR.to_owned(),
        source_topic: topic.to_owned(),
        source_partition: partition,
        cost_usd: totals.cost,
        input_tokens: totals.input_tokens as i64,
        output_tokens: totals.output_tokens as i64,
        total_tokens: (totals.input_tokens + totals.output_tokens) as i64,
        request_count: totals.requests as i64,
        last_offset: totals.last_offset,
        max_event_time: micros(totals.max_event_time_micros),
        updated_at: now,
    }
}

/// A partition's spend aggregate left the range of `Money` (i128 pico-dollars, about 1.7 x 10^26 USD).
pub(crate) fn spend_overflow(partition: i32) -> ProcessorError {
    ProcessorError::Internal(format!("spend aggregate of partition {partition} overflowed"))
}

/// Sets the aggregates of one hour bucket of a partition to what the durable ledger holds.
pub(crate) async fn restore_bucket(
    writer: &LedgerWriter,
    topic: &str,
    partition: i32,
    bucket: i64,
    spend: &mut SpendAggregator,
) -> Result<(), ProcessorError> {
    for (key, totals) in retrying("restoring spend", || writer.spend_bucket(topic, partition, bucket)).await? {
        spend.restore(key, totals).map_err(|_| spend_overflow(partition))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::attribution::Attribution;
    use ledger_core::Money;

    #[test]
    fn an_update_carries_the_key_and_its_cumulative_totals() {
        let key = SpendKey {
            key: Attribution::tenant("acme").team("search").with_model(Some("gpt-4o")).to_owned_key(),
            bucket_start: 7200,
        };
        let totals = SpendTotals {
            cost: Money::from_picos(1_500),
            input_tokens: 30,
            output_tokens: 12,
            requests: 3,
            last_offset: 41,
            max_event_time_micros: 7_300_000_000,
        };
        let now = Utc::now();
        let u = spend_update(&key, &totals, "llm.usage.v1", 2, now);
        assert_eq!(u.scope, key.key);
        assert_eq!(u.period_start.timestamp(), 7200);
        assert_eq!((u.input_tokens, u.output_tokens, u.total_tokens, u.request_count), (30, 12, 42, 3));
        assert_eq!((u.cost_usd, u.last_offset, u.source_partition), (Money::from_picos(1_500), 41, 2));
        assert_eq!(u.max_event_time.timestamp(), 7300);
        assert_eq!(u.key(), r"acme|search|\-|\-|\-|gpt-4o|hour|1970-01-01T02:00:00Z|llm.usage.v1|2");
    }
}
