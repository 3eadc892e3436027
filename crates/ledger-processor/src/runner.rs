//! The processing loop: consume, decide per message, batch, write, fence, commit.
//!
//! Exactly-once in money rests on one rule: a partition's rows reach ClickHouse in offset
//! order, each partition's batch atomically, and every row carries its Kafka offset. The
//! assigned partitions are dealt over lanes (the `lanes` module); one `INSERT` carries the
//! batches of every partition of a lane (ClickHouse's cost is mostly per part, so fewer, larger
//! inserts are much cheaper), and a partition is never in two inserts in flight, so the lanes'
//! inserts overlap without reordering any partition. Each batch has one `ingest_time` and so
//! lands in one part, all or none, whatever happens to the other batches of the insert
//! (the `insert` module). On (re)assignment the processor reads the highest offset already in the
//! ledger (and in the dead-letter topic) for the partition and skips everything at or below it
//! (the `partition` module). Kafka commits only shorten the re-read; they never decide what is
//! counted (the `commit` module).
//!
//! This module holds the clients, the per-partition state and the `select!` loop that drives
//! the others: shutdown first, then messages (in bursts), finished inserts, the flush tick and
//! the drain check.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use tokio_util::sync::CancellationToken;

use ledger_clickhouse::LedgerWriter;
use ledger_core::catalog::Catalog;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_kafka::consumer::{manual_offset_consumer, RebalanceEvent, RecordingContext};

use crate::config::ProcessorConfig;
use crate::core::Core;
use crate::insert::InflightCounter;
use crate::stats::Stats;
use crate::ProcessorError;

/// How the processor should run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once every partition is caught up to the high watermark seen at the check.
    pub until_drained: bool,
}

/// The processor: owns the clients and the per-partition state.
pub struct Processor {
    consumer: StreamConsumer<RecordingContext>,
    core: Core,
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
        let usage_parts = ledger_kafka::admin::partition_count(&config.kafka, &config.topics.usage, Duration::from_secs(10))?;
        let dlq_parts = ledger_kafka::admin::partition_count(&config.kafka, &config.topics.dead_letter, Duration::from_secs(10))?;
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
        let schema_ids = ledger_registry::IdResolver::new(&config.schema)?;
        let spend_codec = ledger_schema::Codec::<SpendUpdate>::new()?;
        stats.set_lag_source(context.clone());
        let core = Core {
            config,
            catalog,
            codec,
            schema_ids,
            spend_codec,
            writer,
            producer,
            context,
            partitions: HashMap::new(),
            uninitialised: HashMap::new(),
            stats,
            inflight,
            inserts: Vec::new(),
            generations: 0,
            insert_done: Arc::default(),
            acks: tokio::sync::mpsc::unbounded_channel(),
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
                        core.commit_delivered(consumer).await;
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
                        core.commit_acknowledged(consumer);
                        // Rows that came due while it ran go now (group commit).
                        core.flush_due(consumer, max_delay).await?;
                    }
                    _ = tick.tick() => {
                        core.handle_rebalances().await?;
                        core.complete_finished(consumer).await?;
                        core.flush_due(consumer, max_delay).await?;
                        core.commit_acknowledged(consumer);
                        core.commit_idle(consumer);
                        core.init_quiet_partitions(INIT_QUIET).await?;
                    }
                    _ = drain_check.tick(), if opts.until_drained => {
                        if last_message_at.elapsed() > Duration::from_millis(300) && core.drained(consumer).await? {
                            core.flush_all(consumer).await?;
                            core.init_quiet_partitions(Duration::ZERO).await?;
                            core.flush_producer(Duration::from_secs(10)).await;
                            core.commit_delivered(consumer).await;
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
                core.uninitialised.clear();
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

/// How long an assigned partition may stay without a message before it is initialised anyway
/// ([`Core::init_quiet_partitions`]). Long enough that a partition with traffic is initialised
/// by its first message, as a rebalance's in-flight inserts have landed by then.
const INIT_QUIET: Duration = Duration::from_secs(5);

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

    pub(crate) async fn handle_rebalances(&mut self) -> Result<(), ProcessorError> {
        for event in self.context.take_events() {
            match event {
                RebalanceEvent::Revoked(parts) => {
                    for (_, p) in parts {
                        // Another member may own p already: its rows are re-read from the fence
                        // there, so pending rows here are dropped rather than written twice.
                        self.uninitialised.remove(&p);
                        if let Some(state) = self.partitions.remove(&p) {
                            if state.pending() {
                                tracing::info!(
                                    partition = p,
                                    rows = state.batch_rows(),
                                    "dropping unwritten rows of revoked partition"
                                );
                            }
                        }
                    }
                }
                RebalanceEvent::Assigned(parts) => {
                    let now = Instant::now();
                    for (_, p) in parts {
                        self.partitions.remove(&p);
                        self.uninitialised.insert(p, now);
                    }
                }
            }
            self.relane();
        }
        self.stats.set_assigned(self.partitions.len());
        Ok(())
    }
}
