//! A partition's fences and messages: how the processor learns what a partition's previous
//! owners left on assignment, and how each message of the partition is handled.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::message::{BorrowedMessage, Message};

use ledger_clickhouse::{BatchCapacity, LedgerBatch};
use ledger_core::aggregate::{hour_bucket, SpendAggregator, BUCKET_SECS};
use ledger_core::dedupe::DedupeWindow;
use ledger_core::event::{RejectReason, Rejection};
use ledger_kafka::dead_letter::{dead_letter_fence, DeadLetter};

use crate::core::Core;
use crate::decision::{decide, Verdict};
use crate::insert::{backoff, retrying};
use crate::spend::restore_bucket;
use crate::state::PartitionState;
use crate::ProcessorError;

/// What one message turned into.
#[derive(Debug)]
enum Outcome {
    /// Its row is in the partition's batch.
    Accepted,
    Duplicate,
    Reject(Rejection, Option<String>),
    /// The batch's spend aggregate overflowed (i128 pico-dollars, about 1.7 x 10^26 USD).
    SpendOverflow,
}

impl Core {
    /// Reads what the partition's previous owners left: the ledger fence, the dead-letter
    /// fence, the ids of the dedupe horizon and the spend of the recent buckets.
    pub(crate) async fn init_partition(&mut self, partition: i32) -> Result<(), ProcessorError> {
        self.uninitialised.remove(&partition);
        let topic = self.config.topics.usage.clone();
        let writer = self.writer.clone();
        let fence_ledger =
            retrying("reading the ledger fence", || writer.high_watermarks(&topic)).await?.get(&partition).copied().unwrap_or(-1);
        let fence_dead_letter = self.dead_letter_fence(partition).await?;
        let horizon_ms = (self.config.settings.dedupe.horizon_secs * 1000) as i64;
        let mut dedupe = DedupeWindow::new(horizon_ms, self.config.settings.dedupe.capacity_per_partition);
        let since = Utc::now() - chrono::Duration::milliseconds(horizon_ms);
        let ids = retrying("reading recent event ids", || writer.recent_event_ids(&topic, partition, since)).await?;
        let now_ms = Utc::now().timestamp_millis();
        for id in &ids {
            dedupe.insert(id, now_ms);
        }
        tracing::info!(partition, fence_ledger, fence_dead_letter, dedupe_ids = ids.len(), "partition initialised");
        let mut spend = SpendAggregator::new();
        let mut loaded_buckets = HashSet::new();
        // A predecessor killed between its insert and its spend publication left updates
        // unpublished: republish the buckets it wrote last (cumulative, so repeats are harmless).
        let buckets = retrying("reading recent spend buckets", || writer.recent_spend_buckets(&topic, partition, 3600)).await?;
        for bucket in buckets {
            restore_bucket(&writer, &topic, partition, bucket, &mut spend).await?;
            loaded_buckets.insert(bucket);
        }
        self.generations += 1;
        let max_future = i64::from(self.config.settings.acceptance.max_future_secs);
        self.partitions.insert(
            partition,
            PartitionState {
                fence_ledger,
                fence_dead_letter,
                dedupe,
                batch: None,
                batch_capacity: BatchCapacity::default(),
                batch_spend: SpendAggregator::new(),
                dead_letters: Vec::new(),
                first_pending_at: None,
                last_seen: None,
                last_committed: None,
                spend,
                loaded_buckets,
                generation: self.generations,
                owned_from_bucket: hour_bucket(Utc::now().timestamp() + max_future) + BUCKET_SECS,
                lane: 0,
                spend_pending: Default::default(),
            },
        );
        self.relane();
        self.publish_touched(partition, None).await
    }

    /// Initialises the assigned partitions that have had no message for `quiet_for` since their
    /// assignment and no insert of ours in flight (its fence would be read before it lands).
    /// Without this, a predecessor killed between its insert and its spend publication would
    /// leave that spend unpublished until the partition's next message, which may never come.
    pub(crate) async fn init_quiet_partitions(&mut self, quiet_for: Duration) -> Result<(), ProcessorError> {
        let in_flight = self.partitions_in_flight();
        let due: Vec<i32> = self
            .uninitialised
            .iter()
            .filter(|(p, since)| since.elapsed() >= quiet_for && !in_flight.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for partition in due {
            tracing::info!(partition, "initialising a quiet partition");
            self.init_partition(partition).await?;
        }
        Ok(())
    }

    /// The last source offset the partition's dead letters hold; retried while the cause is
    /// transient (a broker of a cluster gone and its partitions' leaders not yet moved).
    async fn dead_letter_fence(&self, partition: i32) -> Result<i64, ProcessorError> {
        let mut attempt = 0u32;
        loop {
            let (kafka, dlq, topic) =
                (self.config.kafka.clone(), self.config.topics.dead_letter.clone(), self.config.topics.usage.clone());
            let read =
                tokio::task::spawn_blocking(move || dead_letter_fence(&kafka, &dlq, &topic, partition, Duration::from_secs(10)))
                    .await
                    .map_err(|e| ProcessorError::Internal(e.to_string()))?;
            match read.map_err(|e| ProcessorError::kafka("reading the dead-letter fence", e)) {
                Ok(fence) => return Ok(fence),
                Err(ProcessorError::Kafka(e)) if e.is_retryable() && attempt < 12 => {
                    attempt += 1;
                    tracing::warn!(partition, attempt, error = %e, "reading the dead-letter fence failed; retrying");
                    tokio::time::sleep(crate::insert::backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Handles one message: skipped below the fence, else decided ([`decide`]) and its row
    /// batched or its dead letter queued.
    pub(crate) async fn handle_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), ProcessorError> {
        let partition = msg.partition();
        let offset = msg.offset();
        if !self.partitions.contains_key(&partition) {
            self.init_partition(partition).await?;
        }
        self.stats.consumed.inc();
        let payload = msg.payload().unwrap_or(&[]);
        if payload.first() == Some(&ledger_schema::CONFLUENT_MAGIC) {
            self.learn_schema_id(payload).await?;
        }
        let state = self.partitions.get_mut(&partition).expect("initialised above");
        if let Some(previous) = state.last_seen.filter(|&p| offset != p + 1) {
            // Offsets are contiguous for this topic's producers (no transactions, no
            // compaction): anything else is worth a line in the log when ledger and input differ.
            tracing::info!(partition, offset, previous, "offset not contiguous with the partition's previous message");
        }
        state.last_seen = Some(offset);
        if offset <= state.fence_ledger {
            self.stats.fenced.inc();
            return Ok(());
        }
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        // One ingest time per batch, stamped when its first row comes: the rows land in one
        // ClickHouse partition (by ingest month), so the batch is atomic.
        match &mut state.batch {
            Some(batch) => batch.restamp_if_empty(now),
            None => LedgerBatch::with_capacity(&self.config.topics.usage, partition, now, &state.batch_capacity)
                .map(|b| state.batch = Some(b)),
        }
        .map_err(|e| ProcessorError::Internal(format!("opening a batch: {e}")))?;
        let (catalog, rules, ids) = (&self.catalog, &self.config.settings.acceptance, self.schema_ids.ids());
        // The borrowed view is validated, priced, encoded into the batch and aggregated without
        // allocating; nothing of an accepted event is copied but its bytes into the batch.
        let decoded =
            self.codec.decode_framed_with(ids, payload, |event| match decide(catalog, rules, event, &state.dedupe, now_ms) {
                Verdict::Duplicate => Outcome::Duplicate,
                // The event id is copied only for a rejection (it goes into the dead-letter headers).
                Verdict::Reject(r) => Outcome::Reject(r, Some(event.event_id.to_owned())),
                Verdict::Accept(priced, tokens, id) => {
                    let batch = state.batch.as_mut().expect("opened above");
                    if let Err(e) = batch.push(event, &priced, offset) {
                        // Unreachable inside the acceptance window; a dead letter, not a panic.
                        return Outcome::Reject(
                            Rejection::new(RejectReason::DecodeError, e.to_string()),
                            Some(event.event_id.to_owned()),
                        );
                    }
                    state.dedupe.insert_fingerprint(id, now_ms);
                    let bucket = hour_bucket(event.event_time.secs());
                    let key = event.attribution.with_model(Some(priced.model));
                    let micros = event.event_time.micros();
                    match state.batch_spend.add_call(&key, bucket, priced.cost, &tokens, offset, micros) {
                        Ok(()) => Outcome::Accepted,
                        Err(_) => Outcome::SpendOverflow,
                    }
                }
            });
        let outcome = decoded.unwrap_or_else(|e| Outcome::Reject(Rejection::new(RejectReason::DecodeError, e.to_string()), None));
        match outcome {
            Outcome::Duplicate => self.stats.duplicates.inc(),
            Outcome::Accepted => {
                state.first_pending_at.get_or_insert_with(Instant::now);
                self.stats.priced.inc();
            }
            Outcome::SpendOverflow => {
                return Err(ProcessorError::Internal(format!(
                    "spend aggregate of partition {partition} overflowed at offset {offset}"
                )))
            }
            Outcome::Reject(rejection, event_id) => {
                self.stats.rejected(rejection.reason);
                if offset <= state.fence_dead_letter {
                    // Dead-lettered before a restart; the record is already there.
                    return Ok(());
                }
                state.dead_letters.push(DeadLetter {
                    partition,
                    offset,
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: payload.to_vec(),
                    rejection,
                    event_id,
                });
                state.first_pending_at.get_or_insert_with(Instant::now);
            }
        }
        Ok(())
    }

    /// Makes sure the schema id of a Confluent message is known, or known to be unknown (its
    /// messages are then dead letters). While the registry cannot be asked, the partition waits,
    /// as it does for ClickHouse: nothing is skipped.
    async fn learn_schema_id(&mut self, payload: &[u8]) -> Result<(), ProcessorError> {
        let mut attempt = 0u32;
        loop {
            match self.schema_ids.prepare(payload).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    attempt += 1;
                    tracing::warn!(attempt, error = %e, "asking the schema registry failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
