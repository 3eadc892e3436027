//! The notifier's run loop.
//!
//! It reads the compacted signals topic from the beginning (every partition, assigned by itself)
//! and follows it. Per signal key it keeps the last state seen in the stream; a signal is a
//! transition when its state differs from that one (or a new period starts in a state other
//! than OK). A transition to a state the budget's `alert` list names becomes a message.
//!
//! Each webhook has its own queue, delivered in order by its own task, so a receiver that is
//! down delays only its own messages. Every handled signal (alerted or not) is recorded on the
//! progress topic ([`crate::progress`]) once its message was delivered; on restart, signals at
//! or below a webhook's recorded sequence are not sent again, everything above is. A webhook's
//! first start records a baseline instead of replaying history: the current state of each
//! budget is sent once when it is one that alerts, older transitions are not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_core::budget::BudgetPolicy;
use ledger_core::signal::{BudgetSignal, BudgetState};
use ledger_kafka::admin::{Replication, TopicSpec};
use ledger_kafka::reader::BoundedRead;
use ledger_kafka::{KafkaConfig, KafkaError};
use ledger_schema::BudgetSignalCodec;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::NotifySettings;
use crate::deliver::{backoff, Webhook};
use crate::error::NotifyError;
use crate::message::Alert;
use crate::progress::{self, Progress, Recorder};

/// Everything `ledger notify` needs.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// The signals topic (read).
    pub signals_topic: String,
    /// Partitions of the signals topic when the notifier has to create it.
    pub partitions: i32,
    /// Replication of the topics the notifier creates (`[topics]`).
    pub replication: Replication,
    /// The notifier's settings.
    pub settings: NotifySettings,
    /// The budgets file.
    pub budgets_file: PathBuf,
}

/// Counters of a running notifier.
#[derive(Debug, Default)]
pub struct Stats {
    /// Signals read from the topic.
    pub signals: AtomicU64,
    /// Messages delivered (2xx), over all webhooks.
    pub delivered: AtomicU64,
    /// Failed delivery attempts (each retried).
    pub failed_attempts: AtomicU64,
}

/// One handled signal in a webhook's queue.
#[derive(Debug, Clone)]
struct Item {
    key: String,
    sequence: i64,
    state: BudgetState,
    alert: Option<Alert>,
}

/// Reads and validates a budgets file.
pub fn load_policy(path: &std::path::Path) -> Result<BudgetPolicy, NotifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| NotifyError::BudgetsFile { path: path.to_owned(), source })?;
    BudgetPolicy::parse(&text).map_err(|source| NotifyError::Policy { path: path.to_owned(), source })
}

/// The budget alerts service.
#[derive(Debug)]
pub struct Notifier {
    config: NotifierConfig,
    policy: BudgetPolicy,
    webhooks: Vec<Webhook>,
    stats: Arc<Stats>,
    codec: BudgetSignalCodec,
}

impl Notifier {
    /// Checks the settings and the budgets file and prepares the webhooks; connects to nothing.
    pub fn new(config: NotifierConfig, stats: Arc<Stats>) -> Result<Notifier, NotifyError> {
        config.settings.validate().map_err(NotifyError::Settings)?;
        let policy = load_policy(&config.budgets_file)?;
        let webhooks = config
            .settings
            .webhooks
            .iter()
            .map(|w| Webhook::new(w, &config.settings))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NotifyError::Settings(vec![e]))?;
        Ok(Notifier { config, policy, webhooks, stats, codec: BudgetSignalCodec::new()? })
    }

    /// Runs until `shutdown` (see the module documentation).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NotifyError> {
        let c = &self.config;
        let topics = [
            TopicSpec { name: c.signals_topic.clone(), partitions: c.partitions, compacted: true, replication: c.replication },
            TopicSpec { name: c.settings.progress_topic.clone(), partitions: 1, compacted: true, replication: c.replication },
        ];
        ledger_kafka::admin::ensure_topics(&c.kafka, &topics).await?;
        let Some(mut progress) = self.blocking("reading the progress topic", &shutdown, Self::read_progress).await? else {
            return Ok(());
        };
        let producer = ledger_kafka::producer::idempotent_producer(&c.kafka)?;
        let recorder = Recorder::new(producer, &c.settings.progress_topic);
        let fresh: Vec<&Webhook> = self.webhooks.iter().filter(|w| progress.handled(&w.name, "").is_none()).collect();
        if !fresh.is_empty() {
            let Some(latest) = self.blocking("reading the signals topic", &shutdown, Self::latest_signals).await? else {
                return Ok(());
            };
            for w in fresh {
                self.baseline(w, &latest, &recorder, &mut progress).await?;
            }
        }
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for w in &self.webhooks {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push((w.name.clone(), tx));
            let (w, recorder, settings) = (w.clone(), recorder.clone(), c.settings.clone());
            tasks.push(tokio::spawn(deliver_loop(w, rx, recorder, settings, shutdown.clone(), self.stats.clone())));
        }
        let consumer = self.follower().await?;
        tracing::info!(webhooks = self.webhooks.len(), budgets = self.policy.budgets.len(), "following the signals topic");
        let mut seen: HashMap<String, (BudgetState, DateTime<Utc>, i64)> = HashMap::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                received = consumer.recv() => match received {
                    Ok(m) => {
                        let Some(payload) = m.payload() else { continue };
                        match self.codec.decode(payload) {
                            Ok(signal) => self.handle(&signal, &mut seen, &progress, &queues),
                            Err(e) => tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "skipping a signal that does not decode"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the signals topic failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        drop(queues);
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }

    /// Decides, for one signal, what each webhook's queue gets.
    fn handle(
        &self,
        s: &BudgetSignal,
        seen: &mut HashMap<String, (BudgetState, DateTime<Utc>, i64)>,
        progress: &Progress,
        queues: &[(String, mpsc::UnboundedSender<Item>)],
    ) {
        Stats::inc(&self.stats.signals);
        let last = seen.get(&s.scope).copied();
        if last.is_some_and(|(_, _, seq)| s.sequence <= seq) {
            return;
        }
        let previous = last.map_or(BudgetState::Ok, |l| l.0);
        let new_period = last.is_some_and(|l| l.1 != s.period_start) && s.state != BudgetState::Ok;
        seen.insert(s.scope.clone(), (s.state, s.period_start, s.sequence));
        let budget = self.policy.by_key(&s.scope);
        let alerts = (previous != s.state || new_period) && budget.is_none_or(|b| b.alert.contains(&s.state));
        for (name, queue) in queues {
            if progress.handled(name, &s.scope).is_some_and(|done| s.sequence <= done) {
                continue;
            }
            let alert = alerts.then(|| Alert::new(s, previous, budget.map(|b| b.name.as_str())));
            let item = Item { key: s.scope.clone(), sequence: s.sequence, state: s.state, alert };
            let _ = queue.send(item);
        }
    }

    /// A webhook's first start: its progress starts at the current signals, so history is not
    /// replayed; a current state that alerts is left to be sent once.
    async fn baseline(
        &self,
        w: &Webhook,
        latest: &HashMap<String, BudgetSignal>,
        recorder: &Recorder,
        progress: &mut Progress,
    ) -> Result<(), NotifyError> {
        let mut pending = 0;
        for s in latest.values() {
            let alerts = s.state != BudgetState::Ok && self.policy.by_key(&s.scope).is_none_or(|b| b.alert.contains(&s.state));
            let start = if alerts { s.sequence - 1 } else { s.sequence };
            pending += usize::from(alerts);
            recorder.record(&w.name, &s.scope, start, s.state, false).await?;
            progress.add(&progress::progress_key(&w.name, &s.scope), start);
        }
        recorder.record(&w.name, "", 0, BudgetState::Ok, false).await?;
        progress.add(&progress::progress_key(&w.name, ""), 0);
        tracing::info!(webhook = %w.name, budgets = latest.len(), current_alerts = pending, "first start of this webhook: baseline recorded");
        Ok(())
    }

    fn read_progress(&self) -> Result<Progress, KafkaError> {
        let c = &self.config;
        progress::read(&c.kafka, &c.settings.progress_topic, &c.settings.group_id)
    }

    fn latest_signals(&self) -> Result<HashMap<String, BudgetSignal>, KafkaError> {
        let mut latest: HashMap<String, BudgetSignal> = HashMap::new();
        let c = &self.config;
        BoundedRead::new(&c.kafka, &c.signals_topic).group(&c.settings.group_id).stall_timeout(Duration::from_secs(60)).to_end(
            |m| {
                if let Some(Ok(s)) = m.payload().map(|p| self.codec.decode(p)) {
                    if latest.get(&s.scope).is_none_or(|old| old.sequence <= s.sequence) {
                        latest.insert(s.scope.clone(), s);
                    }
                }
            },
        )?;
        Ok(latest)
    }

    /// Runs a blocking Kafka read, retrying retryable failures every second for up to a minute
    /// (a topic that was just created may not have a leader yet); `None` on shutdown.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        shutdown: &CancellationToken,
        read: fn(&Notifier) -> Result<T, KafkaError>,
    ) -> Result<Option<T>, NotifyError> {
        let mut tries = 0;
        loop {
            let result = tokio::task::block_in_place(|| read(self));
            match result {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.is_retryable() && tries < 60 => {
                    tries += 1;
                    tracing::warn!(error = %e, "{what} failed; retrying in 1 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A consumer of every partition of the signals topic, from the beginning.
    async fn follower(&self) -> Result<StreamConsumer, NotifyError> {
        let c = &self.config;
        let (kafka, topic) = (c.kafka.clone(), c.signals_topic.clone());
        let partitions =
            tokio::task::spawn_blocking(move || ledger_kafka::admin::partition_count(&kafka, &topic, Duration::from_secs(30)))
                .await
                .map_err(|e| NotifyError::Task(e.to_string()))??;
        let cfg = c.kafka.consumer_config(&[
            ("group.id", &c.settings.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "50"),
        ]);
        let consumer: StreamConsumer = cfg.create().map_err(|e| KafkaError::client("creating the signals consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&c.signals_topic, p, Offset::Beginning)
                .map_err(|e| KafkaError::client("assigning the signals topic", e))?;
        }
        consumer.assign(&tpl).map_err(|e| KafkaError::client("assigning the signals topic", e))?;
        Ok(consumer)
    }
}

impl Stats {
    /// One line for people: messages delivered and failed attempts.
    pub fn summary(&self) -> String {
        let (delivered, failed) = (self.delivered.load(Ordering::Relaxed), self.failed_attempts.load(Ordering::Relaxed));
        format!("{delivered} messages delivered, {failed} failed attempts (retried)")
    }

    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Delivers one webhook's queue in order: each alert until a 2xx (retrying with back-off), then
/// the progress record; stops between attempts on shutdown (an undelivered message is sent after
/// the restart).
async fn deliver_loop(
    webhook: Webhook,
    mut queue: mpsc::UnboundedReceiver<Item>,
    recorder: Recorder,
    settings: NotifySettings,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) {
    loop {
        let item = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            item = queue.recv() => match item { Some(i) => i, None => return },
        };
        if let Some(alert) = &item.alert {
            let mut attempt = 0u32;
            loop {
                match webhook.post(alert).await {
                    Ok(status) => {
                        Stats::inc(&stats.delivered);
                        tracing::info!(webhook = %webhook.name, id = %alert.id, state = %alert.state, status, attempts = attempt + 1, "delivered a budget alert");
                        break;
                    }
                    Err(e) => {
                        Stats::inc(&stats.failed_attempts);
                        let wait = backoff(&settings, attempt);
                        tracing::warn!(webhook = %webhook.name, id = %alert.id, attempt = attempt + 1, error = %e, retry_in_ms = wait.as_millis() as u64, "delivering a budget alert failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
        let mut attempt = 0u32;
        while let Err(e) = recorder.record(&webhook.name, &item.key, item.sequence, item.state, item.alert.is_some()).await {
            let wait = backoff(&settings, attempt);
            tracing::warn!(webhook = %webhook.name, key = %item.key, error = %e, "recording progress failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }
}
