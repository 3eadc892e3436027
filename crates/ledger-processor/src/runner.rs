//! The processing loop: consume, decide per message, batch, write, fence, commit.
//!
//! Exactly-once in money rests on one rule: a partition's rows reach ClickHouse in offset
//! order, each partition's batch atomically, and every row carries its Kafka offset. The
//! assigned partitions are dealt over lanes (`batch.concurrent_inserts`); one `INSERT` carries
//! the batches of every partition of a lane (ClickHouse's cost is mostly per part, so fewer,
//! larger inserts are much cheaper), and a partition is never in two inserts in flight, so the
//! lanes' inserts overlap (ClickHouse runs each on one core) without reordering any partition.
//! Each batch has one `ingest_time` and so lands in one part, all or none, whatever happens to
//! the other batches of the insert. On (re)assignment
//! the processor reads the highest offset already in the ledger (and in the dead-letter topic)
//! for the partition and skips everything at or below it. Kafka commits only shorten the
//! re-read; they never decide what is counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;

use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use ledger_clickhouse::{BatchCapacity, LedgerBatch, LedgerWriter, SealedBatch};
use ledger_core::aggregate::{hour_bucket, SpendAggregator, SpendKey, SpendTotals, BUCKET_SECS};
use ledger_core::catalog::Catalog;
use ledger_core::event::TokenCounts;
use ledger_core::spend::SpendUpdate;
use ledger_core::dedupe::{check_event_time, DedupeWindow, IdFingerprint, TimeCheck};
use ledger_core::event::{RejectReason, Rejection};
use ledger_core::{UsageEvent, UsageEventRef};
use ledger_kafka::consumer::{manual_offset_consumer, RebalanceEvent, RecordingContext};

use crate::config::{AcceptanceConfig, ProcessorConfig, MAX_CONCURRENT_INSERTS};
use crate::dead_letter::{dead_letter_fence, DeadLetter};
use crate::stats::Stats;
use crate::ProcessorError;

/// How the processor should run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once every partition is caught up to the high watermark seen at the check.
    pub until_drained: bool,
}

/// What one message turned into.
#[derive(Debug)]
enum Decision {
    /// Its row is in the partition's batch.
    Accepted,
    Duplicate,
    Reject(Rejection, Option<String>),
    /// The batch's spend aggregate overflowed (i128 pico-dollars, about 1.7 x 10^26 USD).
    SpendOverflow,
}

/// The verdict on a decoded event, before it is batched.
#[derive(Debug)]
enum Verdict<'c> {
    Accept(ledger_core::pricing::PricedRef<'c>, TokenCounts, IdFingerprint),
    Duplicate,
    Reject(Rejection, Option<String>),
}

struct PartitionState {
    fence_ledger: i64,
    fence_dead_letter: i64,
    dedupe: DedupeWindow,
    /// The rows not yet sent, encoded (opened by the first message after a flush).
    batch: Option<LedgerBatch>,
    /// What the partition's last batch held: the next one reserves as much.
    batch_capacity: BatchCapacity,
    /// The spend of `batch`, merged into `spend` once the batch is durable.
    batch_spend: SpendAggregator,
    dead_letters: Vec<DeadLetter>,
    first_pending_at: Option<Instant>,
    /// Offset of the last message handled (skipped, deduplicated, accepted or rejected).
    last_seen: Option<i64>,
    /// The last offset committed to the group (advisory: for lag and a shorter re-read).
    last_committed: Option<i64>,
    /// Cumulative spend per attribution key and hour, of the rows durable in the ledger.
    spend: SpendAggregator,
    /// Hour buckets whose totals reflect the whole ledger (restored or owned from the start).
    loaded_buckets: HashSet<i64>,
    /// Buckets starting at or after this instant (unix seconds) hold only rows we write.
    owned_from_bucket: i64,
    /// Tells this assignment of the partition from an earlier one (revoked, then assigned
    /// again) when an insert that began before completes.
    generation: u64,
    /// The lane whose inserts carry this partition's rows (see [`Core::relane`]).
    lane: usize,
}

impl PartitionState {
    fn pending(&self) -> bool {
        self.batch_rows() > 0 || !self.dead_letters.is_empty()
    }

    fn batch_rows(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.span().len())
    }
}

/// An insert running beside consumption: the batches of a lane's partitions that had rows, in
/// one `INSERT` (a partition is in at most one insert in flight, so its rows land in offset order).
struct GroupInsert {
    handle: tokio::task::JoinHandle<Result<(usize, Duration), ledger_clickhouse::Error>>,
    parts: Vec<PartInsert>,
}

/// A partition's share of a [`GroupInsert`].
struct PartInsert {
    partition: i32,
    generation: u64,
    /// Offset of the last message the batch covers (committed once the insert is done).
    last_seen: i64,
    /// Offset of the batch's last row.
    last_offset: i64,
    /// The batch's spend, published once the insert is done.
    spend: SpendAggregator,
}

/// Counts inserts in flight; the rebalance barrier waits until none is left, so a revoked
/// partition's rows are in ClickHouse before its next owner reads the fence.
#[derive(Debug, Default)]
struct InflightCounter {
    count: std::sync::Mutex<usize>,
    zero: std::sync::Condvar,
}

struct InflightGuard(Arc<InflightCounter>);

impl InflightCounter {
    fn start(self: &Arc<Self>) -> InflightGuard {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        InflightGuard(self.clone())
    }

    /// Blocks until no insert is in flight, at most `timeout`; false on timeout.
    fn wait_zero(&self, timeout: Duration) -> bool {
        let guard = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .zero
            .wait_timeout_while(guard, timeout, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *guard == 0
    }

    /// The barrier the consumer runs inside a revoke (on a runtime worker: block_in_place).
    fn barrier(self: &Arc<Self>) -> Arc<dyn Fn() + Send + Sync> {
        let counter = self.clone();
        Arc::new(move || {
            let wait = || {
                if !counter.wait_zero(Duration::from_secs(120)) {
                    tracing::error!("inserts still in flight after 120 s while partitions are revoked");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(wait)
                }
                _ => wait(),
            }
        })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.zero.notify_all();
        }
    }
}

/// Inserts the batches of several partitions as one `INSERT`, retrying what can be retried.
/// A failed attempt may have landed (the server can commit and then lose the connection), so
/// before each retry the ledger's fence is read — however long ClickHouse takes to come back —
/// and the batches whose last offset is in the ledger are dropped: each partition's rows land
/// all or none (one `ingest_time`, one part).
async fn insert_with_retry(
    writer: LedgerWriter,
    mut batches: Vec<SealedBatch>,
) -> Result<(usize, Duration), ledger_clickhouse::Error> {
    let started = Instant::now();
    let rows = batches.iter().map(|b| b.span().len()).sum();
    let mut attempt = 0u32;
    loop {
        match writer.insert_encoded(&batches).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "ledger insert failed; retrying after reading the fence");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
                let Some(topic) = batches.first().map(|b| b.span().topic().to_owned()) else { break };
                let fence = retrying("reading the ledger fence before retrying an insert", || writer.high_watermarks(&topic)).await?;
                let mut landed = Vec::new();
                for b in &batches {
                    let span = b.span();
                    let w = fence.get(&span.partition()).copied().unwrap_or(-1);
                    if w >= span.last_offset() {
                        landed.push(span.partition());
                    } else if w >= span.first_offset() {
                        // Never expected (a batch is one part); writing it again would double
                        // its first rows. A restart resumes exactly after the fence.
                        return Err(ledger_clickhouse::Error::InvalidBatch(format!(
                            "the ledger holds {}/{} up to offset {w}, inside the batch {}..={} that failed to insert; \
                             restart the processor to resume after the fence",
                            span.topic(),
                            span.partition(),
                            span.first_offset(),
                            span.last_offset()
                        )));
                    }
                }
                if !landed.is_empty() {
                    tracing::info!(partitions = ?landed, "the failed insert had landed for these partitions; not writing them again");
                    batches.retain(|b| !landed.contains(&b.span().partition()));
                }
                if batches.is_empty() {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((rows, started.elapsed()))
}

/// The processor: owns the clients and the per-partition state.
pub struct Processor {
    consumer: StreamConsumer<RecordingContext>,
    core: Core,
}

struct Core {
    config: ProcessorConfig,
    catalog: Arc<Catalog>,
    codec: ledger_schema::Codec<UsageEvent>,
    spend_codec: ledger_schema::Codec<SpendUpdate>,
    writer: LedgerWriter,
    producer: FutureProducer,
    context: RecordingContext,
    partitions: HashMap<i32, PartitionState>,
    stats: Arc<Stats>,
    inflight: Arc<InflightCounter>,
    /// The inserts in flight, oldest first: at most one per lane, none sharing a partition.
    inserts: Vec<GroupInsert>,
    /// Source of [`PartitionState::generation`].
    generations: u64,
    /// Signalled by every finished insert, so its spend is published at once, not at the next tick.
    insert_done: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").field("group", &self.core.config.settings.group_id).finish_non_exhaustive()
    }
}

impl Processor {
    /// Connects the clients and subscribes; does not consume yet.
    pub async fn new(config: ProcessorConfig, catalog: Arc<Catalog>, stats: Arc<Stats>) -> Result<Self, ProcessorError> {
        let topics = ledger_kafka::admin::ledger_topics(&config.topics, config.settings.partitions);
        ledger_kafka::admin::ensure_topics(&config.kafka, &topics).await?;
        let usage_parts =
            ledger_kafka::admin::partition_count(&config.kafka, &config.topics.usage, Duration::from_secs(10))?;
        let dlq_parts =
            ledger_kafka::admin::partition_count(&config.kafka, &config.topics.dead_letter, Duration::from_secs(10))?;
        if dlq_parts < usage_parts {
            return Err(ProcessorError::Config(vec![format!(
                "dead-letter topic {} has {dlq_parts} partitions but {} has {usage_parts}: it needs at least as many \
                 (source partition N dead-letters into partition N); add partitions with kafka-topics --alter",
                config.topics.dead_letter, config.topics.usage
            )]));
        }
        let writer = LedgerWriter::new(config.clickhouse.client()?, config.clickhouse.database.clone())?;
        let producer = ledger_kafka::producer::idempotent_producer(&config.kafka)?;
        let inflight = Arc::new(InflightCounter::default());
        let (consumer, context) = manual_offset_consumer(
            &config.kafka,
            &config.settings.group_id,
            config.settings.instance_id.as_deref(),
            RecordingContext::with_revoke_barrier(inflight.barrier()),
        )?;
        consumer
            .subscribe(&[config.topics.usage.as_str()])
            .map_err(|e| ProcessorError::kafka(format!("subscribing to {}", config.topics.usage), e))?;
        let codec = ledger_schema::Codec::<UsageEvent>::new()?;
        let spend_codec = ledger_schema::Codec::<SpendUpdate>::new()?;
        stats.set_lag_source(context.clone());
        let core =
            Core {
            config,
            catalog,
            codec,
            spend_codec,
            writer,
            producer,
            context,
            partitions: HashMap::new(),
            stats,
            inflight,
            inserts: Vec::new(),
            generations: 0,
            insert_done: Arc::default(),
        };
        Ok(Processor { consumer, core })
    }

    /// Runs until `shutdown` is cancelled (or, with `until_drained`, until caught up).
    /// On shutdown the pending batches are written within the grace period.
    pub async fn run(self, shutdown: CancellationToken, opts: RunOptions) -> Result<(), ProcessorError> {
        let Processor { consumer: mut owned_consumer, mut core } = self;
        let max_delay = Duration::from_millis(core.config.settings.batch.max_delay_ms);
        // A batch waits at most max_delay plus one tick.
        let mut tick = tokio::time::interval((max_delay / 5).clamp(Duration::from_millis(10), Duration::from_millis(100)));
        let insert_done = core.insert_done.clone();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_check = tokio::time::interval(Duration::from_millis(500));
        let mut last_message_at = Instant::now();
        loop {
            let consumer = &owned_consumer;
            // One stream for the consumer's life: a stream per receive registers and
            // unregisters a waker each time.
            let mut messages = consumer.stream();
            let rejoin = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        tracing::info!("shutdown requested: writing pending batches");
                        let grace = Duration::from_secs(core.config.settings.shutdown_grace_secs);
                        match tokio::time::timeout(grace, core.flush_all(consumer)).await {
                            Ok(r) => r?,
                            Err(_) => tracing::warn!(?grace, "grace period over; unwritten rows will be re-read on restart"),
                        }
                        core.flush_producer(Duration::from_secs(5)).await;
                        return Ok(());
                    }
                    msg = std::future::poll_fn(|cx| std::pin::Pin::new(&mut messages).poll_next(cx)) => {
                        let msg = msg.expect("kafka message streams never end");
                        if core.on_received(consumer, msg).await? == Received::Fatal {
                            break true;
                        }
                        // Messages already fetched are handled without a round of `select!`
                        // each (its timers and wakers cost more than a message); a burst is
                        // short enough that shutdown and ticks are still served promptly.
                        let mut fatal = false;
                        for _ in 0..RECEIVE_BURST {
                            let Poll::Ready(Some(msg)) = std::pin::Pin::new(&mut messages).poll_next(&mut Context::from_waker(Waker::noop())) else {
                                break;
                            };
                            if core.on_received(consumer, msg).await? == Received::Fatal {
                                fatal = true;
                                break;
                            }
                        }
                        last_message_at = Instant::now();
                        if fatal {
                            break true;
                        }
                    }
                    _ = insert_done.notified() => {
                        // The spend of a durable batch goes to the enforcer without waiting for a tick.
                        // The task notifies just before it returns: let it finish (else the tick will).
                        tokio::task::yield_now().await;
                        core.handle_rebalances().await?;
                        core.complete_finished(consumer).await?;
                        // Rows that came due while it ran go now (group commit).
                        core.flush_due(consumer, max_delay).await?;
                    }
                    _ = tick.tick() => {
                        core.handle_rebalances().await?;
                        core.complete_finished(consumer).await?;
                        core.flush_due(consumer, max_delay).await?;
                        core.commit_idle(consumer);
                    }
                    _ = drain_check.tick(), if opts.until_drained => {
                        if last_message_at.elapsed() > Duration::from_millis(300) && core.drained(consumer).await? {
                            core.flush_all(consumer).await?;
                            core.flush_producer(Duration::from_secs(10)).await;
                            tracing::info!("drained: every partition is caught up");
                            return Ok(());
                        }
                    }
                }
            };
            drop(messages);
            if rejoin {
                // Our own inserts must land before we read the fences again.
                for insert in core.inserts.drain(..) {
                    let _ = insert.handle.await;
                }
                core.partitions.clear();
                core.relane();
                let (consumer, context) = manual_offset_consumer(
                    &core.config.kafka,
                    &core.config.settings.group_id,
                    core.config.settings.instance_id.as_deref(),
                    RecordingContext::with_revoke_barrier(core.inflight.barrier()),
                )?;
                consumer
                    .subscribe(&[core.config.topics.usage.as_str()])
                    .map_err(|e| ProcessorError::kafka("subscribing again", e))?;
                drop(std::mem::replace(&mut owned_consumer, consumer));
                core.stats.set_lag_source(context.clone());
                core.context = context;
            }
        }
    }

}

/// How a received message (or consumer error) was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    Handled,
    /// The consumer is dead for good (e.g. a static member fenced after a coordinator
    /// restart): rejoin the group with a new one.
    Fatal,
}

/// Most messages handled after one `select!` round while more are ready.
const RECEIVE_BURST: usize = 256;

impl Core {
    /// Handles what the consumer delivered: serves rebalances first, then the message, then
    /// writes the lanes that are full.
    async fn on_received(
        &mut self,
        consumer: &StreamConsumer<RecordingContext>,
        msg: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
    ) -> Result<Received, ProcessorError> {
        self.handle_rebalances().await?;
        match msg {
            Ok(m) => self.handle_message(&m).await?,
            Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code)) => {
                // Drop unwritten rows (the fence re-reads them) and rejoin with a new consumer.
                tracing::error!(%code, "fatal consumer error; rejoining the group with a new consumer");
                return Ok(Received::Fatal);
            }
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.flush_full(consumer).await?;
        Ok(Received::Handled)
    }

    async fn handle_rebalances(&mut self) -> Result<(), ProcessorError> {
        for event in self.context.take_events() {
            match event {
                RebalanceEvent::Revoked(parts) => {
                    for (_, p) in parts {
                        // Another member may own p already: its rows are re-read from the fence
                        // there, so pending rows here are dropped rather than written twice.
                        if let Some(state) = self.partitions.remove(&p) {
                            if state.pending() {
                                tracing::info!(partition = p, rows = state.batch_rows(), "dropping unwritten rows of revoked partition");
                            }
                        }
                    }
                }
                RebalanceEvent::Assigned(parts) => {
                    for (_, p) in parts {
                        self.partitions.remove(&p);
                    }
                }
            }
            self.relane();
        }
        self.stats.set_assigned(self.partitions.len());
        Ok(())
    }

    /// Number of lanes: `batch.concurrent_inserts`, at most one per partition.
    fn lane_count(&self) -> usize {
        let wanted = self.config.settings.batch.concurrent_inserts.clamp(1, MAX_CONCURRENT_INSERTS);
        wanted.min(self.partitions.len()).max(1)
    }

    /// Deals the partitions over the lanes in ascending order, so every lane gets a share
    /// whichever partitions this member holds. A partition that changes lane while its rows are
    /// in flight stays safe: a lane is flushed only once none of its partitions is in flight.
    fn relane(&mut self) {
        let lanes = self.lane_count();
        let mut ids: Vec<i32> = self.partitions.keys().copied().collect();
        ids.sort_unstable();
        for (rank, p) in ids.into_iter().enumerate() {
            if let Some(state) = self.partitions.get_mut(&p) {
                state.lane = rank % lanes;
            }
        }
    }

    /// The index of an insert in flight that carries rows of a partition now in `lane`.
    fn lane_in_flight(&self, lane: usize) -> Option<usize> {
        self.inserts.iter().position(|insert| {
            insert.parts.iter().any(|part| self.partitions.get(&part.partition).is_some_and(|s| s.lane == lane))
        })
    }

    async fn init_partition(&mut self, partition: i32) -> Result<(), ProcessorError> {
        let topic = self.config.topics.usage.clone();
        let writer = self.writer.clone();
        let fence_ledger = retrying("reading the ledger fence", || writer.high_watermarks(&topic))
            .await?
            .get(&partition)
            .copied()
            .unwrap_or(-1);
        let kafka = self.config.kafka.clone();
        let dlq = self.config.topics.dead_letter.clone();
        let t2 = topic.clone();
        let fence_dead_letter = tokio::task::spawn_blocking(move || {
            dead_letter_fence(&kafka, &dlq, &t2, partition, Duration::from_secs(10))
        })
        .await
        .map_err(|e| ProcessorError::Internal(e.to_string()))?
        .map_err(|e| ProcessorError::kafka("reading the dead-letter fence", e))?;
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
        let buckets =
            retrying("reading recent spend buckets", || writer.recent_spend_buckets(&topic, partition, 3600)).await?;
        for bucket in buckets {
            restore_bucket(&writer, &topic, partition, bucket, &mut spend).await?;
            loaded_buckets.insert(bucket);
        }
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
                generation: {
                    self.generations += 1;
                    self.generations
                },
                owned_from_bucket: hour_bucket(
                    Utc::now().timestamp() + i64::from(self.config.settings.acceptance.max_future_secs),
                ) + BUCKET_SECS,
                lane: 0,
            },
        );
        self.relane();
        self.publish_touched(partition).await
    }

    async fn handle_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), ProcessorError> {
        let partition = msg.partition();
        let offset = msg.offset();
        if !self.partitions.contains_key(&partition) {
            self.init_partition(partition).await?;
        }
        self.stats.consumed.inc();
        let payload = msg.payload().unwrap_or(&[]);
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
        let (catalog, acceptance) = (&self.catalog, &self.config.settings.acceptance);
        // The borrowed view is validated, priced, encoded into the batch and aggregated without
        // allocating; nothing of an accepted event is copied but its bytes into the batch.
        let decoded = self.codec.decode_with(payload, |event| match judge(catalog, acceptance, event, &state.dedupe, now_ms) {
            Verdict::Duplicate => Decision::Duplicate,
            Verdict::Reject(r, id) => Decision::Reject(r, id),
            Verdict::Accept(priced, tokens, id) => {
                let batch = state.batch.as_mut().expect("opened above");
                if let Err(e) = batch.push(event, &priced, offset) {
                    // Unreachable inside the acceptance window; a dead letter, not a panic.
                    return Decision::Reject(
                        Rejection::new(RejectReason::DecodeError, e.to_string()),
                        Some(event.event_id.to_owned()),
                    );
                }
                state.dedupe.insert_fingerprint(id, now_ms);
                let bucket = hour_bucket(event.event_time.secs());
                let attribution = event.attribution.with_model(Some(priced.model));
                let micros = event.event_time.micros();
                match state.batch_spend.add_call(&attribution, bucket, priced.cost, &tokens, offset, micros) {
                    Ok(()) => Decision::Accepted,
                    Err(_) => Decision::SpendOverflow,
                }
            }
        });
        let decision = decoded
            .unwrap_or_else(|e| Decision::Reject(Rejection::new(RejectReason::DecodeError, e.to_string()), None));
        match decision {
            Decision::Duplicate => self.stats.duplicates.inc(),
            Decision::Accepted => {
                state.first_pending_at.get_or_insert_with(Instant::now);
                self.stats.priced.inc();
            }
            Decision::SpendOverflow => {
                return Err(ProcessorError::Internal(format!(
                    "spend aggregate of partition {partition} overflowed at offset {offset}"
                )))
            }
            Decision::Reject(rejection, event_id) => {
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

    /// Flushes every lane whose waiting rows reach `max_rows` (waiting for its insert in flight).
    async fn flush_full(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<(), ProcessorError> {
        let max_rows = self.config.settings.batch.max_rows;
        let mut waiting = [0usize; MAX_CONCURRENT_INSERTS];
        for s in self.partitions.values() {
            waiting[s.lane.min(MAX_CONCURRENT_INSERTS - 1)] += s.batch_rows() + s.dead_letters.len();
        }
        for (lane, &rows) in waiting.iter().enumerate() {
            if rows >= max_rows {
                self.flush_lane(consumer, lane).await?;
            }
        }
        Ok(())
    }

    /// Flushes every lane whose oldest waiting row has waited `max_delay`, unless the lane's
    /// insert is still in flight: then its rows keep gathering and go as soon as it completes
    /// (group commit).
    async fn flush_due(&mut self, consumer: &StreamConsumer<RecordingContext>, max_delay: Duration) -> Result<(), ProcessorError> {
        for lane in 0..self.lane_count() {
            if self.lane_in_flight(lane).is_some() {
                continue;
            }
            let due = self
                .partitions
                .values()
                .any(|s| s.lane == lane && s.first_pending_at.is_some_and(|t| t.elapsed() >= max_delay));
            if due {
                self.flush_lane(consumer, lane).await?;
            }
        }
        Ok(())
    }

    async fn flush_all(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<(), ProcessorError> {
        // Every possible lane: a rebalance served while an insert completes can add lanes.
        for lane in 0..MAX_CONCURRENT_INSERTS {
            self.flush_lane(consumer, lane).await?;
        }
        while !self.inserts.is_empty() {
            self.complete_insert(consumer, 0).await?;
        }
        Ok(())
    }

    /// Completes the inserts in flight that are done, without waiting for the others.
    async fn complete_finished(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<(), ProcessorError> {
        while let Some(i) = self.inserts.iter().position(|insert| insert.handle.is_finished()) {
            self.complete_insert(consumer, i).await?;
        }
        Ok(())
    }

    /// Waits for the `index`th insert in flight (keeping the group membership alive), then, for
    /// each partition still assigned, moves the fence, publishes the spend it adds and commits
    /// the offsets it covers.
    async fn complete_insert(&mut self, consumer: &StreamConsumer<RecordingContext>, index: usize) -> Result<(), ProcessorError> {
        if index >= self.inserts.len() {
            return Ok(());
        }
        let GroupInsert { mut handle, parts } = self.inserts.remove(index);
        let mut paused = false;
        let result = loop {
            tokio::select! {
                r = &mut handle => break r,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    paused = true;
                    self.pause_and_poll(consumer, Duration::from_millis(300)).await?;
                }
            }
        };
        if paused {
            Self::resume_all(consumer);
        }
        let (rows, took) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(ProcessorError::Internal(format!("insert task failed: {e}"))),
        };
        self.stats.observe_insert(rows, took);
        let (ids, bytes) = self.partitions.values().fold((0, 0), |(n, b), s| (n + s.dedupe.len(), b + s.dedupe.heap_bytes()));
        self.stats.set_dedupe_size(ids, bytes);
        for part in parts {
            let Some(state) = self.partitions.get_mut(&part.partition).filter(|s| s.generation == part.generation) else {
                // Revoked meanwhile: the new owner republishes the spend of recent buckets.
                continue;
            };
            state.fence_ledger = state.fence_ledger.max(part.last_offset);
            self.publish_spend(part.partition, &part.spend).await?;
            self.commit(consumer, part.partition, part.last_seen);
        }
        Ok(())
    }

    /// Commits the partitions whose news since their last commit left nothing waiting: no rows
    /// or dead letters pending and no rows in an insert in flight, so everything up to
    /// `last_seen` is durable (dead letters written, rows in the ledger, duplicates skipped).
    /// Without it a partition ending in duplicates would keep a lag above zero.
    fn commit_idle(&mut self, consumer: &StreamConsumer<RecordingContext>) {
        let in_flight: Vec<i32> = self.inserts.iter().flat_map(|i| i.parts.iter().map(|p| p.partition)).collect();
        let idle: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter(|(p, s)| !s.pending() && !in_flight.contains(p))
            .filter_map(|(&p, s)| s.last_seen.filter(|&seen| s.last_committed.is_none_or(|c| c < seen)).map(|seen| (p, seen)))
            .collect();
        for (partition, last_seen) in idle {
            self.commit(consumer, partition, last_seen);
        }
    }

    fn commit(&mut self, consumer: &StreamConsumer<RecordingContext>, partition: i32, last_seen: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.last_committed = Some(last_seen);
        }
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&self.config.topics.usage, partition, Offset::Offset(last_seen + 1)).is_ok() {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "advisory offset commit failed");
            }
        }
    }

    /// Once no partition of `lane` is in an insert in flight: writes the lane's pending dead
    /// letters, then starts one insert of its partitions' rows beside consumption.
    async fn flush_lane(&mut self, consumer: &StreamConsumer<RecordingContext>, lane: usize) -> Result<(), ProcessorError> {
        // Completing an insert can serve a rebalance and so deal the lanes anew: ask again each time.
        while let Some(i) = self.lane_in_flight(lane) {
            self.complete_insert(consumer, i).await?;
        }
        while self.inserts.len() >= self.lane_count() {
            self.complete_insert(consumer, 0).await?;
        }
        let mut batches = Vec::new();
        let mut parts = Vec::new();
        let mut dead_letters = Vec::new();
        for (&partition, state) in &mut self.partitions {
            if state.lane != lane {
                continue;
            }
            let Some(last_seen) = state.last_seen else { continue };
            if state.batch_rows() == 0 && state.dead_letters.is_empty() {
                continue;
            }
            dead_letters.append(&mut state.dead_letters);
            state.first_pending_at = None;
            if let Some(batch) = state.batch.take().filter(|b| !b.span().is_empty()) {
                state.batch_capacity = batch.capacity();
                let batch = batch.seal();
                parts.push(PartInsert {
                    partition,
                    generation: state.generation,
                    last_seen,
                    last_offset: batch.span().last_offset(),
                    spend: std::mem::take(&mut state.batch_spend),
                });
                batches.push(batch);
            }
        }

        // Dead letters first: the dead-letter fence then never runs ahead of rows that are
        // not yet in the ledger (rows above the ledger fence are always re-processed).
        if !dead_letters.is_empty() {
            let source_topic = &self.config.topics.usage;
            let mut deliveries = Vec::with_capacity(dead_letters.len());
            for dl in &dead_letters {
                let mut record = FutureRecord::to(&self.config.topics.dead_letter)
                    .partition(dl.partition)
                    .payload(&dl.payload)
                    .headers(dl.headers(source_topic));
                if let Some(k) = &dl.key {
                    record = record.key(k);
                }
                deliveries.push(ledger_kafka::producer::enqueue(&self.producer, record).await?);
            }
            for d in deliveries {
                match d.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(ProcessorError::kafka("writing a dead letter", e)),
                    Err(_) => return Err(ProcessorError::Internal("dead-letter delivery cancelled".into())),
                }
            }
            self.stats.dead_lettered.add(dead_letters.len() as u64);
        }
        if batches.is_empty() {
            // Partitions that had only dead letters: those are written, so commit them.
            self.commit_idle(consumer);
            return Ok(());
        }
        let guard = self.inflight.start();
        let writer = self.writer.clone();
        let done = self.insert_done.clone();
        let handle = tokio::spawn(async move {
            let _guard = guard;
            let result = insert_with_retry(writer, batches).await;
            done.notify_one();
            result
        });
        self.inserts.push(GroupInsert { handle, parts });
        self.commit_idle(consumer);
        Ok(())
    }

    /// Merges a durable batch's spend into the partition's aggregates and publishes the
    /// cumulative totals of every key it touched to the spend topic.
    async fn publish_spend(&mut self, partition: i32, batch: &SpendAggregator) -> Result<(), ProcessorError> {
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
        state
            .spend
            .merge_from(batch, |bucket| !restored.contains(&bucket))
            .map_err(|_| spend_overflow(partition))?;
        self.publish_touched(partition).await
    }

    /// Publishes the cumulative totals of every key touched since the last publication.
    async fn publish_touched(&mut self, partition: i32) -> Result<(), ProcessorError> {
        let topic = self.config.topics.usage.clone();
        let Some(state) = self.partitions.get_mut(&partition) else { return Ok(()) };
        let touched = state
            .spend
            .take_touched()
            .map_err(|_| spend_overflow(partition))?;
        let keep_from = hour_bucket(Utc::now().timestamp()) - 48 * BUCKET_SECS;
        state.spend.evict_before(keep_from);
        state.loaded_buckets.retain(|b| *b >= keep_from);
        if touched.is_empty() {
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
        let stats = self.stats.clone();
        tokio::spawn(async move {
            for d in deliveries {
                match d.await {
                    Ok(Ok(_)) => stats.spend_updates.inc(),
                    Ok(Err((e, _))) => tracing::warn!(error = %e, "a spend update was not delivered"),
                    Err(_) => tracing::warn!("a spend update was cancelled"),
                }
            }
        });
        Ok(())
    }

    /// Waits until the spend updates handed to the producer are delivered (at most `wait`).
    async fn flush_producer(&self, wait: Duration) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, wait)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("spend updates still undelivered at shutdown; the next owner republishes recent buckets");
        }
    }

    /// Keeps the group membership alive during a retry: poll with every partition paused, so
    /// rebalances are served but no message is taken.
    async fn pause_and_poll(&mut self, consumer: &StreamConsumer<RecordingContext>, wait: Duration) -> Result<(), ProcessorError> {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.pause(&assignment);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(m)) => {
                    // Only a partition assigned during the pause delivers here: rewind it so
                    // the message is read again after resume. If the rewind fails while the
                    // partition is still ours, going on would leave a hole; stopping makes the
                    // restart resume from the fence. A partition being taken away is read by
                    // its next owner from the committed offset.
                    let (t, p, o) = (m.topic().to_owned(), m.partition(), m.offset());
                    drop(m);
                    tracing::info!(partition = p, offset = o, "message delivered during a pause; rewinding to it");
                    if let Err(e) = consumer.seek(&t, p, Offset::Offset(o), Duration::from_secs(5)) {
                        let still_ours = consumer.assignment().map_or(true, |a| a.find_partition(&t, p).is_some());
                        if still_ours {
                            return Err(ProcessorError::kafka(format!("rewinding {t}/{p} to offset {o} after a pause"), e));
                        }
                        tracing::info!(partition = p, error = %e, "rewind failed for a partition being revoked; its next owner reads it");
                    }
                }
                Ok(Err(_)) => {}
            }
            self.handle_rebalances().await?;
        }
        Ok(())
    }

    fn resume_all(consumer: &StreamConsumer<RecordingContext>) {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.resume(&assignment);
        }
    }

    async fn drained(&mut self, consumer: &StreamConsumer<RecordingContext>) -> Result<bool, ProcessorError> {
        let assignment = match consumer.assignment() {
            Ok(a) if a.count() > 0 => a,
            _ => return Ok(false),
        };
        if !self.inserts.is_empty() || self.partitions.values().any(PartitionState::pending) {
            return Ok(false);
        }
        let committed = consumer.committed(Duration::from_secs(5)).ok();
        for elem in assignment.elements() {
            let (low, high) = match consumer.fetch_watermarks(elem.topic(), elem.partition(), Duration::from_secs(5)) {
                Ok(w) => w,
                Err(_) => return Ok(false),
            };
            if high <= low {
                continue;
            }
            let seen_next = self.partitions.get(&elem.partition()).and_then(|s| s.last_seen).map(|o| o + 1);
            let committed_next = committed.as_ref().and_then(|c| {
                c.find_partition(elem.topic(), elem.partition()).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
            });
            let position = seen_next.or(committed_next).unwrap_or(low);
            if position < high {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Validates, time-checks, deduplicates and prices a decoded event.
fn judge<'c>(
    catalog: &'c Catalog,
    acc: &AcceptanceConfig,
    event: &UsageEventRef<'_>,
    dedupe: &DedupeWindow,
    now_ms: i64,
) -> Verdict<'c> {
    // The event id is copied only for a rejection (it goes into the dead-letter headers).
    let tokens = match event.validate() {
        Ok(t) => t,
        Err(r) => return Verdict::Reject(r, Some(event.event_id.to_owned())),
    };
    match check_event_time(
        event.event_time.millis(),
        now_ms,
        i64::from(acc.max_age_days) * 86_400_000,
        i64::from(acc.max_future_secs) * 1000,
    ) {
        TimeCheck::Accepted => {}
        TimeCheck::TooOld => {
            return Verdict::Reject(
                Rejection::new(
                    RejectReason::TooOld,
                    format!("event_time {} is older than {} days", event.event_time.to_datetime().to_rfc3339(), acc.max_age_days),
                ),
                Some(event.event_id.to_owned()),
            )
        }
        TimeCheck::InFuture => {
            return Verdict::Reject(
                Rejection::new(
                    RejectReason::InFuture,
                    format!(
                        "event_time {} is more than {} s in the future",
                        event.event_time.to_datetime().to_rfc3339(),
                        acc.max_future_secs
                    ),
                ),
                Some(event.event_id.to_owned()),
            )
        }
    }
    let id = dedupe.fingerprint(event.event_id);
    if dedupe.contains_fingerprint(id) {
        return Verdict::Duplicate;
    }
    match catalog.price_view(event, &tokens) {
        Ok(priced) => Verdict::Accept(priced, tokens, id),
        Err(r) => Verdict::Reject(r, Some(event.event_id.to_owned())),
    }
}

fn spend_update(key: &SpendKey, totals: &SpendTotals, topic: &str, partition: i32, now: chrono::DateTime<Utc>) -> SpendUpdate {
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
fn spend_overflow(partition: i32) -> ProcessorError {
    ProcessorError::Internal(format!("spend aggregate of partition {partition} overflowed"))
}

/// Sets the aggregates of one hour bucket of a partition to what the durable ledger holds.
async fn restore_bucket(
    writer: &LedgerWriter,
    topic: &str,
    partition: i32,
    bucket: i64,
    spend: &mut SpendAggregator,
) -> Result<(), ProcessorError> {
    for (key, totals) in retrying("restoring spend", || writer.spend_bucket(topic, partition, bucket)).await? {
        spend
            .restore(key, totals)
            .map_err(|_| spend_overflow(partition))?;
    }
    Ok(())
}

/// Runs a ClickHouse call until it succeeds or fails for a reason retrying cannot fix.
/// Backs off up to 5 s between attempts; the partition waits, nothing is skipped.
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, ledger_clickhouse::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ledger_clickhouse::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
            }
            Err(e) => return Err(e),
        }
    }
}
