//! The enforcer's run loop.
//!
//! One active enforcer: it assigns every partition of the spend topic to itself (no consumer
//! group balancing), because a budget sums spend across partitions. A standby instance may run
//! the same way and take over through the same path as a restart: read the signals topic to its
//! end (last signal and sequence per key), read the compacted spend topic from the beginning to
//! its end, evaluate, publish only the differences, then follow the spend topic. Two instances
//! active at once would publish the same transitions twice (same content, one higher sequence);
//! run a standby only behind a lock or orchestrator that keeps one active.
//!
//! Each signal is published with the idempotent producer, and the engine records it as published
//! only after Kafka acknowledged it: a crash in between republishes it on restart (routers see
//! the same state again, never a missed one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use ledger_core::budget::{BudgetEngine, BudgetPolicy};
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_kafka::{KafkaConfig, KafkaError, TopicNames};
use ledger_schema::{BudgetSignalCodec, SpendUpdateCodec};

use crate::config::EnforcerSettings;
use crate::error::EnforcerError;
use crate::leases::{rebuild, Leases, Rebuilt};
use crate::signals::latest_signals;
use crate::stats::Stats;
use ledger_kafka::reader::{BoundedRead, PartitionMarks};

/// Everything `ledger enforce` needs.
#[derive(Debug, Clone)]
pub struct EnforcerConfig {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// Topic names (spend in, signals out).
    pub topics: TopicNames,
    /// Enforcer settings (the budgets file path among them).
    pub settings: EnforcerSettings,
    /// The processor's consumer group (`processor.group_id`): its committed offsets tell when
    /// closed quota leases may settle.
    pub processor_group: String,
}

/// Reads and validates a budgets file.
pub fn load_policy(path: &Path) -> Result<(BudgetPolicy, String), EnforcerError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnforcerError::BudgetsFile { path: path.to_owned(), source })?;
    let policy = BudgetPolicy::parse(&text).map_err(|source| EnforcerError::Policy { path: path.to_owned(), source })?;
    Ok((policy, text))
}

/// The budget enforcer.
#[derive(Debug)]
pub struct Enforcer {
    config: EnforcerConfig,
    stats: Arc<Stats>,
    spend_codec: SpendUpdateCodec,
    signal_codec: BudgetSignalCodec,
}

enum SessionEnd {
    Shutdown,
    Reload(BudgetPolicy),
    /// A retryable failure while rebuilding: start the session over.
    Retry,
}

impl Enforcer {
    /// An enforcer; nothing is connected yet.
    pub fn new(config: EnforcerConfig, stats: Arc<Stats>) -> Result<Enforcer, EnforcerError> {
        Ok(Enforcer { config, stats, spend_codec: SpendUpdateCodec::new()?, signal_codec: BudgetSignalCodec::new()? })
    }

    /// Runs until `shutdown`: loads the budgets (an invalid file is an error), creates missing
    /// topics, rebuilds the state from the compacted topics, publishes the differences, then
    /// follows the spend topic, re-evaluates on a timer and reloads the budgets file on change.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EnforcerError> {
        let path = self.config.settings.budgets_file.clone();
        let (mut policy, text) = load_policy(&path)?;
        let mut watcher = FileWatcher { path, last_text: Some(text) };
        let mut topics = ledger_kafka::admin::ledger_topics(&self.config.topics, self.config.settings.partitions);
        topics.extend(ledger_kafka::admin::lease_topics(&self.config.topics, self.config.settings.partitions));
        ledger_kafka::admin::ensure_topics(&self.config.kafka, &topics).await?;
        let producer = ledger_kafka::producer::idempotent_producer(&self.config.kafka)?;
        let (kafka, group, topic) =
            (self.config.kafka.clone(), self.config.settings.group_id.clone(), self.config.topics.signals.clone());
        let read_signals = || {
            let (kafka, group, topic) = (kafka.clone(), group.clone(), topic.clone());
            async move {
                tokio::task::spawn_blocking(move || latest_signals(&kafka, &group, &topic))
                    .await
                    .map_err(|e| EnforcerError::Task(e.to_string()))?
                    .map_err(EnforcerError::from)
            }
        };
        let Some(mut published) = retrying("reading the signals topic", &shutdown, read_signals).await? else {
            return Ok(());
        };
        tracing::info!(signals = published.len(), budgets = policy.budgets.len(), "read the signals topic");
        let Some(rebuilt) = retrying("reading the lease topics", &shutdown, || self.rebuild_leases(&policy)).await? else {
            return Ok(());
        };
        tracing::info!(records = rebuilt.records, leases = rebuilt.book.len(), "rebuilt the quota leases");
        let c = &self.config;
        let mut leases = Leases::start(
            &c.kafka,
            &c.topics,
            &c.settings.group_id,
            &c.processor_group,
            &c.settings.leases,
            rebuilt,
            self.stats.clone(),
        )?;
        loop {
            match self.session(&policy, &published, &producer, &mut watcher, &mut leases, &shutdown).await? {
                (SessionEnd::Shutdown, _) => return Ok(()),
                (SessionEnd::Retry, last) => published = last,
                (SessionEnd::Reload(next), last) => {
                    tracing::info!(budgets = next.budgets.len(), "applying the changed budgets file");
                    Stats::inc(&self.stats.policy_reloads);
                    policy = next;
                    published = last;
                }
            }
        }
    }

    async fn rebuild_leases(&self, policy: &BudgetPolicy) -> Result<Rebuilt, EnforcerError> {
        let (kafka, topics, group, policy, settings) = (
            self.config.kafka.clone(),
            self.config.topics.clone(),
            self.config.settings.group_id.clone(),
            policy.clone(),
            self.config.settings.leases.clone(),
        );
        tokio::task::spawn_blocking(move || rebuild(&kafka, &topics, &group, &policy, &settings, Utc::now()))
            .await
            .map_err(|e| EnforcerError::Task(e.to_string()))?
            .map_err(EnforcerError::from)
    }

    /// One policy's lifetime: rebuild from the spend topic, then follow it until shutdown or a
    /// policy change. Returns how it ended and the signals published so far.
    async fn session(
        &self,
        policy: &BudgetPolicy,
        published: &BTreeMap<String, BudgetSignal>,
        producer: &FutureProducer,
        watcher: &mut FileWatcher,
        leases: &mut Leases,
        shutdown: &CancellationToken,
    ) -> Result<(SessionEnd, BTreeMap<String, BudgetSignal>), EnforcerError> {
        self.stats.budgets.store(policy.budgets.len() as u64, Ordering::Relaxed);
        self.stats.live.store(0, Ordering::Relaxed);
        let mut engine = BudgetEngine::new(policy.clone(), Utc::now());
        for s in published.values() {
            engine.restore_published(s.clone());
        }
        let (mut engine, end) = match self.catch_up(engine, shutdown.clone()).await {
            Ok(done) => done,
            Err(_) if shutdown.is_cancelled() => return Ok((SessionEnd::Shutdown, published.clone())),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "reading the spend topic failed; starting over in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Ok((SessionEnd::Retry, published.clone()));
            }
            Err(e) => return Err(e),
        };
        if shutdown.is_cancelled() {
            return Ok((SessionEnd::Shutdown, engine.published().clone()));
        }
        let now = Utc::now();
        engine.go_live(now);
        self.stats.live.store(1, Ordering::Relaxed);
        tracing::info!("spend topic read to its end; following it");
        let pending = engine.evaluate_all(now);
        self.publish(&mut engine, producer, pending).await;

        let consumer = self.follower(&end)?;
        leases.state.spend_read_from(&end);
        let mut lease_tick =
            tokio::time::interval(Duration::from_millis((self.config.settings.leases.probe_interval_ms / 2).max(10)));
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evaluate = tokio::time::interval(Duration::from_millis(self.config.settings.evaluate_interval_ms));
        let mut reload = tokio::time::interval(Duration::from_millis(self.config.settings.reload_interval_ms));
        evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok((SessionEnd::Shutdown, engine.published().clone())),
                received = consumer.recv() => {
                    match received {
                        Ok(m) => {
                            let now = Utc::now();
                            self.apply(&mut engine, m.payload(), now, m.partition(), m.offset());
                            leases.state.spend_read(m.partition(), m.offset());
                            drop(m);
                            // Take every update already fetched before evaluating: under load one
                            // evaluation and one round of acknowledgements serve many updates.
                            for _ in 0..MAX_UPDATES_PER_EVALUATION {
                                match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                                    Ok(Ok(m)) => {
                                        self.apply(&mut engine, m.payload(), now, m.partition(), m.offset());
                                        leases.state.spend_read(m.partition(), m.offset());
                                    }
                                    _ => break,
                                }
                            }
                            let pending = engine.evaluate(now);
                            self.publish(&mut engine, producer, pending).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the spend topic failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                received = leases.consumer.recv() => match received {
                    Ok(m) => leases.state.on_request(m.payload(), &engine, Utc::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the lease requests failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = lease_tick.tick() => leases.state.maintain(&engine, Utc::now()),
                _ = evaluate.tick() => {
                    let pending = engine.evaluate_all(Utc::now());
                    self.publish(&mut engine, producer, pending).await;
                }
                _ = reload.tick() => {
                    if let Some(next) = watcher.changed_policy(policy, &self.stats) {
                        return Ok((SessionEnd::Reload(next), engine.published().clone()));
                    }
                }
            }
        }
    }

    fn apply(&self, engine: &mut BudgetEngine, payload: Option<&[u8]>, now: chrono::DateTime<Utc>, partition: i32, offset: i64) {
        Stats::inc(&self.stats.spend_updates);
        let Some(payload) = payload else { return }; // a tombstone: nothing to count
        match self.spend_codec.decode(payload) {
            Ok(update) => {
                if engine.apply(&update, now) {
                    Stats::inc(&self.stats.spend_updates_counted);
                }
            }
            Err(e) => {
                Stats::inc(&self.stats.spend_decode_errors);
                tracing::warn!(partition, offset, error = %e, "skipping a spend record that does not decode");
            }
        }
    }

    /// Reads the compacted spend topic from the beginning to its end into the engine.
    async fn catch_up(
        &self,
        engine: BudgetEngine,
        shutdown: CancellationToken,
    ) -> Result<(BudgetEngine, Vec<PartitionMarks>), EnforcerError> {
        let (kafka, group, topic) =
            (self.config.kafka.clone(), self.config.settings.group_id.clone(), self.config.topics.spend.clone());
        let codec = self.spend_codec;
        let stats = self.stats.clone();
        let started = std::time::Instant::now();
        let (engine, end, count) = tokio::task::spawn_blocking(move || {
            let mut engine = engine;
            let mut count = 0u64;
            let stop = move || shutdown.is_cancelled();
            let end =
                BoundedRead::new(&kafka, &topic).group(&group).stall_timeout(Duration::from_secs(60)).stop_when(&stop).to_end(
                    |m| {
                        count += 1;
                        let (partition, offset) = (m.partition(), m.offset());
                        let Some(payload) = m.payload() else { return };
                        match codec.decode(payload) {
                            Ok(u) => {
                                let u: SpendUpdate = u;
                                // The replay is not arrivals: `now` only matters for the burn rate,
                                // which the engine ignores until `go_live`.
                                if engine.apply(&u, Utc::now()) {
                                    Stats::inc(&stats.spend_updates_counted);
                                }
                            }
                            Err(e) => {
                                Stats::inc(&stats.spend_decode_errors);
                                tracing::warn!(partition, offset, error = %e, "skipping a spend record that does not decode");
                            }
                        }
                    },
                );
            let end = end?.ok_or_else(|| KafkaError::Topic { topic: topic.clone(), problem: "does not exist".into() })?;
            Ok::<_, KafkaError>((engine, end, count))
        })
        .await
        .map_err(|e| EnforcerError::Task(e.to_string()))??;
        self.stats.spend_updates.fetch_add(count, Ordering::Relaxed);
        tracing::info!(records = count, elapsed_ms = started.elapsed().as_millis() as u64, "replayed the spend topic");
        Ok((engine, end))
    }

    /// A consumer of every spend partition, starting where the catch-up ended.
    fn follower(&self, end: &[PartitionMarks]) -> Result<StreamConsumer, EnforcerError> {
        let cfg = self.config.kafka.consumer_config(&[
            ("group.id", &self.config.settings.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "10"),
            ("fetch.min.bytes", "1"),
        ]);
        let consumer: StreamConsumer = cfg.create().map_err(|e| KafkaError::client("creating the spend consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        for m in end {
            tpl.add_partition_offset(&self.config.topics.spend, m.partition, Offset::Offset(m.high))
                .map_err(|e| KafkaError::client("assigning spend partitions", e))?;
        }
        consumer.assign(&tpl).map_err(|e| KafkaError::client("assigning spend partitions", e))?;
        Ok(consumer)
    }

    /// Publishes each signal and waits for Kafka's acknowledgement before recording it; a failed
    /// one is retried at the next evaluation.
    async fn publish(&self, engine: &mut BudgetEngine, producer: &FutureProducer, signals: Vec<BudgetSignal>) {
        // Enqueue every signal first, then wait for the acknowledgements: one round trip for the
        // batch instead of one per signal. The engine records each only once Kafka has it.
        let mut in_flight = Vec::with_capacity(signals.len());
        for signal in signals {
            let payload = match self.signal_codec.encode(&signal) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(scope = %signal.scope, error = %e, "cannot encode a budget signal; skipping it");
                    continue;
                }
            };
            let record = FutureRecord::to(&self.config.topics.signals).key(signal.key()).payload(&payload);
            let delivery = ledger_kafka::producer::enqueue(producer, record).await.map_err(|e| e.to_string());
            in_flight.push((signal, delivery));
        }
        for (signal, delivery) in in_flight {
            let delivered = match delivery {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("the producer dropped the message".to_owned()),
                },
                Err(e) => Err(e),
            };
            match delivered {
                Ok(()) => {
                    Stats::inc(&self.stats.signals_published);
                    tracing::info!(
                        scope = %signal.scope, state = %signal.state, sequence = signal.sequence,
                        spend_usd = %signal.spend_usd, reason = %signal.reason, "published a budget signal"
                    );
                    engine.confirm(signal);
                }
                Err(e) => {
                    Stats::inc(&self.stats.publish_failures);
                    tracing::error!(scope = %signal.scope, error = %e, "publishing a budget signal failed; retrying at the next evaluation");
                    engine.retry(&signal.scope);
                }
            }
        }
    }
}

/// Spend updates taken from the consumer's queue per evaluation at most.
const MAX_UPDATES_PER_EVALUATION: usize = 5_000;

/// Runs `attempt` until it succeeds, retrying retryable errors every second (a topic that was
/// just created may not have a leader yet) for up to a minute; `None` on shutdown.
async fn retrying<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut attempt: F) -> Result<Option<T>, EnforcerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EnforcerError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_retryable() && tries < 60 => {
                tries += 1;
                tracing::warn!(error = %e, "{what} failed; retrying in 1 s");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls the budgets file for changes.
struct FileWatcher {
    path: PathBuf,
    last_text: Option<String>,
}

impl FileWatcher {
    /// The new policy when the file changed to a valid one that differs from `current`. An
    /// invalid file is logged (once per change) and the current policy stays in force.
    fn changed_policy(&mut self, current: &BudgetPolicy, stats: &Stats) -> Option<BudgetPolicy> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                if self.last_text.take().is_some() {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot read the budgets file; keeping the policy in force");
                }
                return None;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last_text = Some(text.clone());
        match BudgetPolicy::parse(&text) {
            Ok(policy) if &policy == current => None,
            Ok(policy) => Some(policy),
            Err(e) => {
                Stats::inc(&stats.policy_rejected);
                tracing::error!(
                    path = %self.path.display(),
                    "the changed budgets file is invalid; keeping the policy in force. {e}"
                );
                None
            }
        }
    }
}
