//! The enforcer's side of quota leases (docs/budgets.md): requests in, grants out, leases
//! expired and settled.
//!
//! [`rebuild`] reads back the grants and requests of the last lease lifetimes into a
//! [`LeaseBook`] (after a restart, or on a standby taking over); `Leases` then follows the
//! requests topic from where the rebuild ended. Its state lives across the enforcer's sessions
//! (a budgets reload keeps every lease).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use ledger_core::budget::{period_of, BudgetEngine, BudgetFacts, BudgetPolicy, LeaseBook};
use ledger_core::lease::{LeaseGrant, LeaseRequest, LeaseStatus};
use ledger_core::signal::Enforcement;
use ledger_core::Money;
use ledger_kafka::reader::{BoundedRead, PartitionMarks};
use ledger_kafka::{KafkaConfig, KafkaError, TopicNames};
use ledger_schema::{LeaseGrantCodec, LeaseRequestCodec};

use crate::config::LeaseSettings;
use crate::coverage::{Coverage, Probe, Prober};
use crate::stats::Stats;

/// A book rebuilt from the lease topics, and where the requests topic ended.
#[derive(Debug)]
pub struct Rebuilt {
    /// The book.
    pub book: LeaseBook,
    /// The requests topic's high watermarks when it was read (the live consumer starts there).
    pub requests_end: Vec<PartitionMarks>,
    /// Grants and requests read.
    pub records: u64,
}

/// Reads the grants and requests of the last [`LeaseSettings::rebuild_window_ms`] into a book
/// (blocking). A restarting enforcer then calls [`LeaseBook::finish_restore`]; a status read
/// settles what the processor's progress covers.
pub fn rebuild(
    kafka: &KafkaConfig,
    topics: &TopicNames,
    group: &str,
    policy: &BudgetPolicy,
    settings: &LeaseSettings,
    now: DateTime<Utc>,
) -> Result<Rebuilt, KafkaError> {
    let mut book = LeaseBook::new(settings.rules());
    let since = now.timestamp_millis() - i64::try_from(settings.rebuild_window_ms()).unwrap_or(i64::MAX / 2);
    let (grants, requests) = (LeaseGrantCodec::new(), LeaseRequestCodec::new());
    let (grants, requests) = match (grants, requests) {
        (Ok(g), Ok(r)) => (g, r),
        (Err(e), _) | (_, Err(e)) => {
            return Err(KafkaError::Topic { topic: topics.lease_grants.clone(), problem: e.to_string() })
        }
    };
    let mut records = 0u64;
    BoundedRead::new(kafka, &topics.lease_grants).group(group).since(since, |m| {
        records += 1;
        match m.payload().map(|p| grants.decode(p)) {
            Some(Ok(g)) => {
                if let Some(b) = policy.by_key(&g.budget) {
                    book.restore_grant(&g, period_of(b.period, b.timezone, g.granted_at).start);
                }
            }
            Some(Err(e)) => tracing::warn!(offset = m.offset(), error = %e, "skipping a lease grant that does not decode"),
            None => {}
        }
    })?;
    let requests_end = BoundedRead::new(kafka, &topics.lease_requests)
        .group(group)
        .since(since, |m| {
            records += 1;
            match m.payload().map(|p| requests.decode(p)) {
                Some(Ok(r)) => {
                    let appended = m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or(now);
                    book.restore_request(&r, appended)
                }
                Some(Err(e)) => tracing::warn!(offset = m.offset(), error = %e, "skipping a lease request that does not decode"),
                None => {}
            }
        })?
        .unwrap_or_default();
    Ok(Rebuilt { book, requests_end, records })
}

/// The live lease service: the requests consumer and the state it feeds.
pub(crate) struct Leases {
    pub(crate) consumer: StreamConsumer,
    pub(crate) state: LeaseState,
}

/// Everything but the consumer (so a `select!` can borrow both).
pub(crate) struct LeaseState {
    book: LeaseBook,
    producer: FutureProducer,
    grants_topic: String,
    requests: LeaseRequestCodec,
    grants: LeaseGrantCodec,
    coverage: Coverage,
    probes: tokio::sync::mpsc::UnboundedReceiver<Probe>,
    probe_wanted: Arc<AtomicBool>,
    /// Next offset of each spend partition the enforcer has applied.
    spend_read: HashMap<i32, i64>,
    stats: Arc<Stats>,
    /// Since when settlement has waited with nothing covered (for one warning).
    stuck_since: Option<DateTime<Utc>>,
}

impl Leases {
    /// Starts following the requests topic at `rebuilt.requests_end`, the grants producer and
    /// the settlement prober.
    pub(crate) fn start(
        kafka: &KafkaConfig,
        topics: &TopicNames,
        group: &str,
        processor_group: &str,
        settings: &LeaseSettings,
        rebuilt: Rebuilt,
        stats: Arc<Stats>,
    ) -> Result<Leases, KafkaError> {
        let consumer: StreamConsumer = kafka
            .consumer_config(&[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // A renewal waits for this hop: fetch as soon as a request is there.
                ("fetch.wait.max.ms", "5"),
                ("fetch.min.bytes", "1"),
            ])
            .create()
            .map_err(|e| KafkaError::client("creating the lease requests consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        for m in &rebuilt.requests_end {
            tpl.add_partition_offset(&topics.lease_requests, m.partition, Offset::Offset(m.high))
                .map_err(|e| KafkaError::client("assigning the lease requests", e))?;
        }
        consumer.assign(&tpl).map_err(|e| KafkaError::client("assigning the lease requests", e))?;
        let mut rebuilt = rebuilt;
        rebuilt.book.finish_restore(Utc::now());
        let producer = ledger_kafka::producer::low_latency_producer(kafka)?;
        let (tx, probes) = tokio::sync::mpsc::unbounded_channel();
        let probe_wanted = Arc::new(AtomicBool::new(false));
        Prober::new(kafka, processor_group, &topics.usage, &topics.spend)?
            .spawn(Duration::from_millis(settings.probe_interval_ms), probe_wanted.clone(), tx)
            .map_err(|e| KafkaError::Topic { topic: topics.usage.clone(), problem: format!("cannot start the prober: {e}") })?;
        let codec_error =
            |e: ledger_schema::SchemaError| KafkaError::Topic { topic: topics.lease_grants.clone(), problem: e.to_string() };
        Ok(Leases {
            consumer,
            state: LeaseState {
                book: rebuilt.book,
                producer,
                grants_topic: topics.lease_grants.clone(),
                requests: LeaseRequestCodec::new().map_err(codec_error)?,
                grants: LeaseGrantCodec::new().map_err(codec_error)?,
                coverage: Coverage::default(),
                probes,
                probe_wanted,
                spend_read: HashMap::new(),
                stats,
                stuck_since: None,
            },
        })
    }
}

impl LeaseState {
    /// Where the enforcer starts reading the spend topic (a new session's catch-up end).
    pub(crate) fn spend_read_from(&mut self, marks: &[PartitionMarks]) {
        self.spend_read = marks.iter().map(|m| (m.partition, m.high)).collect();
    }

    /// The enforcer applied the spend record at `offset` of `partition`.
    pub(crate) fn spend_read(&mut self, partition: i32, offset: i64) {
        let next = self.spend_read.entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }

    /// Answers one request read from the topic (at `now`) and publishes the answer.
    pub(crate) fn on_request(&mut self, payload: Option<&[u8]>, engine: &BudgetEngine, now: DateTime<Utc>) {
        let Some(payload) = payload else { return };
        let request = match self.requests.decode(payload) {
            Ok(r) => r,
            Err(e) => {
                Stats::inc(&self.stats.lease_decode_errors);
                tracing::warn!(error = %e, "skipping a lease request that does not decode");
                return;
            }
        };
        Stats::inc(&self.stats.lease_requests);
        let leased =
            engine.policy().by_key(&request.budget).filter(|b| b.enforcement == Enforcement::Lease && b.limit_usd.is_some());
        let answer = match (leased, engine.spend_of(&request.budget, now)) {
            (Some(b), Some((_, period, spend))) => {
                let facts = BudgetFacts { limit: b.limit_usd.unwrap_or(Money::ZERO), spend, period };
                self.book.handle(&request, Some(facts), now)
            }
            (Some(_), None) => {
                let wanted = request.wanted_usd.picos() > 0 || request.least_usd.picos() > 0;
                self.book.handle(&LeaseRequest { wanted_usd: Money::ZERO, least_usd: Money::ZERO, ..request.clone() }, None, now);
                wanted.then(|| self.book.wait(&request, now, "the budget's period is rolling over".into()))
            }
            (None, _) => self.book.handle(&request, None, now),
        };
        if let Some(grant) = answer {
            self.publish(grant);
        }
    }

    fn publish(&self, grant: LeaseGrant) {
        let counter = match grant.status {
            LeaseStatus::Granted => &self.stats.leases_granted,
            LeaseStatus::Wait => &self.stats.lease_waits,
            LeaseStatus::NotLeased => &self.stats.lease_not_leased,
            LeaseStatus::Exhausted => &self.stats.lease_exhausted,
        };
        Stats::inc(counter);
        let payload = match self.grants.encode(&grant) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(budget = %grant.budget, error = %e, "cannot encode a lease grant; the router will ask again");
                return;
            }
        };
        let record = FutureRecord::to(&self.grants_topic).key(grant.key()).payload(&payload);
        // Not awaited here: the lease is booked already (a lost grant only holds allowance
        // until it expires), and the loop must not wait a round trip per answer.
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    if !matches!(delivery.await, Ok(Ok(_))) {
                        Stats::inc(&stats.lease_publish_failures);
                    }
                });
            }
            Err((e, _)) => {
                Stats::inc(&self.stats.lease_publish_failures);
                tracing::warn!(error = %e, "a lease grant was not sent; the router will ask again");
            }
        }
    }

    /// Expires leases, takes the probes in, settles what they cover, and updates the gauges.
    pub(crate) fn maintain(&mut self, engine: &BudgetEngine, now: DateTime<Utc>) {
        let expired = self.book.expire(now);
        self.stats.leases_expired.fetch_add(expired as u64, Ordering::Relaxed);
        while let Ok(probe) = self.probes.try_recv() {
            self.coverage.on_probe(&probe);
        }
        if let Some(covered) = self.coverage.covered(&self.spend_read) {
            let settled = self.book.settle(covered);
            self.stats.leases_settled.fetch_add(settled as u64, Ordering::Relaxed);
        }
        let pending = self.book.earliest_settle_point();
        self.probe_wanted.store(pending.is_some(), Ordering::Relaxed);
        match (pending, self.stuck_since) {
            (None, _) => self.stuck_since = None,
            (Some(p), None) if p <= now => self.stuck_since = Some(now),
            (Some(_), Some(since)) if now - since > chrono::Duration::seconds(60) => {
                tracing::warn!(
                    waiting_probes = self.coverage.waiting(),
                    "closed leases have waited over a minute to settle: is `ledger process` running and is \
                     processor.group_id the processor's group? Until they settle, they count as spent"
                );
                self.stuck_since = Some(now);
            }
            _ => {}
        }
        let mut gauges = BTreeMap::new();
        for b in engine.policy().budgets.iter().filter(|b| b.enforcement == Enforcement::Lease) {
            let key = b.signal_key();
            if let Some((_, period, _)) = engine.spend_of(&key, now) {
                gauges.insert(key.clone(), self.book.outstanding(&key, period.start));
            }
        }
        self.stats.set_lease_gauges(gauges);
    }
}
