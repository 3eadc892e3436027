//! The lease client: two threads beside the router's signals consumer. One reads the grants
//! topic (every partition, from the router's start) and applies this instance's grants; the
//! other sends the requests and returns the accounts want, woken by decisions that need a
//! grant and every [`TICK`] for timeouts and returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ledger_kafka::KafkaConfig;
use ledger_schema::{LeaseGrantCodec, LeaseRequestCodec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::registry::LeaseRegistry;
use super::stats::Counters;
use crate::RouterError;

/// How often the sender looks at every account without being woken.
const TICK: Duration = Duration::from_millis(20);

/// The running client; stopping it (drop) returns every lease it holds.
#[derive(Debug)]
pub(crate) struct LeaseClient {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LeaseClient {
    /// Starts both threads. The grants consumer starts at the topic's current end: every grant
    /// this instance can get is answered after it asked.
    pub(crate) fn start(
        kafka: &KafkaConfig,
        registry: Arc<LeaseRegistry>,
        timeout: Duration,
    ) -> Result<LeaseClient, RouterError> {
        let settings = &registry.settings;
        let consumer: BaseConsumer = kafka
            .consumer_config(&[
                ("group.id", &format!("ledger-router-leases-{}", registry.instance)),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "latest"),
                ("fetch.wait.max.ms", "5"),
                ("fetch.min.bytes", "1"),
            ])
            .create()
            .map_err(|e| RouterError::kafka("creating the lease grants consumer", e))?;
        let topic = settings.grants_topic.clone();
        let partitions = crate::router::partitions_of(&consumer, &topic, timeout)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, p, timeout)
                .map_err(|e| RouterError::kafka("reading the lease grants' end", e))?;
            tpl.add_partition_offset(&topic, p, Offset::Offset(high))
                .map_err(|e| RouterError::kafka("assigning the lease grants", e))?;
        }
        consumer.assign(&tpl).map_err(|e| RouterError::kafka("assigning the lease grants", e))?;
        let producer = ledger_kafka::producer::low_latency_producer(kafka)
            .map_err(|e| RouterError::Thread(format!("lease producer: {e}")))?;
        let grants = LeaseGrantCodec::new().map_err(|e| RouterError::Schema(e.to_string()))?;
        let requests = LeaseRequestCodec::new().map_err(|e| RouterError::Schema(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| RouterError::Thread(e.to_string()))
        };
        let (reg, halt) = (registry.clone(), stop.clone());
        let reader = spawn("lease-grants", Box::new(move || read_grants(&consumer, &reg, &grants, &halt)))?;
        let (reg, halt) = (registry, stop.clone());
        let sender = spawn(
            "lease-requests",
            Box::new(move || {
                reg.set_waker(std::thread::current());
                send_requests(&producer, &reg, &requests, &halt);
            }),
        )?;
        Ok(LeaseClient { stop, threads: vec![reader, sender] })
    }
}

impl Drop for LeaseClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn read_grants(consumer: &BaseConsumer, registry: &LeaseRegistry, codec: &LeaseGrantCodec, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match result {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "lease grants consumer error (retrying)");
                continue;
            }
        };
        if message.key() != Some(registry.instance.as_bytes()) {
            continue;
        }
        let Some(payload) = message.payload() else { continue };
        match codec.decode(payload) {
            Ok(grant) => {
                if let Some(account) = registry.find(&grant.budget) {
                    if account.apply_grant(&grant, Instant::now()) {
                        Counters::inc(&registry.counters.grants_received);
                        tracing::debug!(budget = %grant.budget, status = %grant.status, amount = %grant.amount_usd, "lease answer");
                    }
                }
            }
            Err(e) => tracing::warn!(offset = message.offset(), error = %e, "skipping a lease grant that does not decode"),
        }
    }
}

fn send_requests(producer: &FutureProducer, registry: &LeaseRegistry, codec: &LeaseRequestCodec, stop: &AtomicBool) {
    let send_all = |closing: bool| {
        for account in registry.accounts() {
            if closing {
                account.close_all();
            }
            let (request, timed_out) =
                account.maintain(Instant::now(), &registry.settings, &registry.instance, || uuid::Uuid::now_v7().to_string());
            if timed_out {
                Counters::inc(&registry.counters.timeouts);
                tracing::warn!(budget = %account.key, "the enforcer did not answer a lease request in time; asking again");
            }
            let Some(request) = request else { continue };
            let payload = match codec.encode(&request) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(budget = %request.budget, error = %e, "cannot encode a lease request");
                    continue;
                }
            };
            let record = FutureRecord::to(&registry.settings.requests_topic).key(request.key()).payload(&payload);
            // Fire and forget: an unanswered request is sent again after the grant timeout, an
            // unsent return leaves its lease to expire (counted as used until it settles).
            match producer.send_result(record) {
                Ok(_) => Counters::inc(&registry.counters.requests_sent),
                Err((e, _)) => {
                    tracing::warn!(error = %e, "a lease request was not sent; it is sent again after the grant timeout")
                }
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(TICK);
        send_all(false);
    }
    send_all(true);
    let _ = producer.flush(Duration::from_secs(2));
}
