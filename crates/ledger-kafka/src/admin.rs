//! Topic administration: create the ledger's topics when missing; list and delete topics by
//! name prefix (tests and benchmarks clean up after themselves).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, KafkaError, TopicNames};

/// How one topic should look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count when creating it.
    pub partitions: i32,
    /// `cleanup.policy=compact` (latest value per key is kept forever).
    pub compacted: bool,
    /// Replicas per partition and `min.insync.replicas`.
    pub replication: Replication,
}

/// How a topic is replicated when created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas of each partition.
    pub factor: i32,
    /// `min.insync.replicas` (unset: the broker's default).
    pub min_insync_replicas: Option<i32>,
}

impl Default for Replication {
    /// One replica: a single broker.
    fn default() -> Self {
        Replication { factor: 1, min_insync_replicas: None }
    }
}

impl Replication {
    /// The replication `[topics]` asks for.
    pub fn of(names: &TopicNames) -> Replication {
        Replication { factor: names.replication_factor, min_insync_replicas: names.min_insync_replicas }
    }

    /// A settings error naming what to fix, when the numbers cannot work.
    pub fn check(&self) -> Result<(), KafkaError> {
        let problem = match self.min_insync_replicas {
            _ if self.factor < 1 => format!("replication factor {} is below 1", self.factor),
            Some(m) if m < 1 || m > self.factor => {
                format!("min.insync.replicas {m} is not between 1 and the replication factor {}", self.factor)
            }
            _ => return Ok(()),
        };
        Err(KafkaError::Config { setting: "topics.replication_factor / topics.min_insync_replicas".to_owned(), problem })
    }
}

/// The ledger's four topics with `partitions` partitions each (DLQ as many as the usage topic:
/// a source partition's dead letters go to the DLQ partition of the same number).
pub fn ledger_topics(names: &TopicNames, partitions: i32) -> Vec<TopicSpec> {
    let replication = Replication::of(names);
    vec![
        TopicSpec { name: names.usage.clone(), partitions, compacted: false, replication },
        TopicSpec { name: names.dead_letter.clone(), partitions, compacted: false, replication },
        TopicSpec { name: names.spend.clone(), partitions, compacted: true, replication },
        TopicSpec { name: names.signals.clone(), partitions, compacted: true, replication },
    ]
}

/// The quota-lease topics (requests and grants; plain, time-retained): created by the enforcer,
/// read and written by routers (docs/budgets.md).
pub fn lease_topics(names: &TopicNames, partitions: i32) -> Vec<TopicSpec> {
    let replication = Replication::of(names);
    vec![
        TopicSpec { name: names.lease_requests.clone(), partitions, compacted: false, replication },
        TopicSpec { name: names.lease_grants.clone(), partitions, compacted: false, replication },
    ]
}

/// Creates each topic that does not exist yet; existing topics are left alone. Checks the
/// connection first ([`crate::check_connection`]), so wrong settings fail at once with the
/// setting to fix instead of a timeout.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<(), KafkaError> {
    let checked = config.clone();
    tokio::task::spawn_blocking(move || crate::check_connection(&checked, Duration::from_secs(15)))
        .await
        .map_err(|e| KafkaError::Topic { topic: String::new(), problem: format!("connection check failed: {e}") })??;
    topics.iter().try_for_each(|t| t.replication.check())?;
    // Only what is missing goes to the admin API: on a cluster with a broker down, a create
    // request for topics that all exist can time out for nothing.
    let existing = {
        let (checked, names) = (config.clone(), topics.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || existing_topics(&checked, &names)).await.unwrap_or_default()
    };
    let topics: Vec<&TopicSpec> = topics.iter().filter(|t| !existing.contains(&t.name)).collect();
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin_client(config)?;
    let min_insync: Vec<Option<String>> =
        topics.iter().map(|t| t.replication.min_insync_replicas.map(|m| m.to_string())).collect();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&min_insync)
        .map(|(t, min_insync)| {
            let mut nt = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication.factor));
            if t.compacted {
                nt = nt.set("cleanup.policy", "compact").set("min.cleanable.dirty.ratio", "0.1");
            }
            if let Some(m) = min_insync {
                nt = nt.set("min.insync.replicas", m);
            }
            nt
        })
        .collect();
    let results =
        admin.create_topics(new_topics.iter(), &admin_options()).await.map_err(|e| KafkaError::client("creating topics", e))?;
    check_topic_results(results, RDKafkaErrorCode::TopicAlreadyExists, "create")
}

/// Which of `names` the brokers' metadata lists (none when the metadata cannot be read: then
/// the create request decides).
fn existing_topics(config: &KafkaConfig, names: &[String]) -> Vec<String> {
    let Ok(client) = metadata_client(config) else { return Vec::new() };
    let Ok(md) = client.fetch_metadata(None, Duration::from_secs(10)) else { return Vec::new() };
    md.topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty() && names.iter().any(|n| n == t.name()))
        .map(|t| t.name().to_owned())
        .collect()
}

/// Deletes the named topics; a topic that does not exist is not an error. Returns once the
/// broker accepted the deletions (it removes the data in the background).
pub async fn delete_topics(config: &KafkaConfig, names: &[&str]) -> Result<(), KafkaError> {
    if names.is_empty() {
        return Ok(());
    }
    let results = admin_client(config)?
        .delete_topics(names, &admin_options())
        .await
        .map_err(|e| KafkaError::client("deleting topics", e))?;
    check_topic_results(results, RDKafkaErrorCode::UnknownTopicOrPartition, "delete")
}

fn metadata_client(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
    config.client_config().create().map_err(|e| KafkaError::client("creating metadata client", e))
}

fn admin_client(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    config.client_config().create().map_err(|e| KafkaError::client("creating admin client", e))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// The first topic whose result is an error other than `expected` (the one that means the
/// work was already done: the topic exists, or is already gone).
fn check_topic_results(results: Vec<TopicResult>, expected: RDKafkaErrorCode, verb: &str) -> Result<(), KafkaError> {
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, code)) if code == expected => {}
            Err((topic, code)) => return Err(KafkaError::Topic { topic, problem: format!("cannot {verb}: {code}") }),
        }
    }
    Ok(())
}

/// Names of the topics whose name starts with `prefix`, sorted.
pub fn topics_with_prefix(config: &KafkaConfig, prefix: &str, timeout: Duration) -> Result<Vec<String>, KafkaError> {
    let consumer = metadata_client(config)?;
    let md = consumer.fetch_metadata(None, timeout).map_err(|e| KafkaError::client("fetching metadata", e))?;
    let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_owned()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    Ok(names)
}

/// Deletes every topic whose name starts with `prefix` ([`topics_with_prefix`], then
/// [`delete_topics`]) and returns their names.
pub async fn delete_topics_with_prefix(config: &KafkaConfig, prefix: &str, timeout: Duration) -> Result<Vec<String>, KafkaError> {
    let names = topics_with_prefix(config, prefix, timeout)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_topics(config, &refs).await?;
    Ok(names)
}

/// Partition count of a topic (fetched from the broker's metadata).
pub fn partition_count(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<i32, KafkaError> {
    let consumer = metadata_client(config)?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| KafkaError::client(format!("fetching metadata of {topic}"), e))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| KafkaError::Topic { topic: topic.to_owned(), problem: "not in metadata".into() })?;
    if let Some(err) = t.error() {
        return Err(KafkaError::Topic { topic: topic.to_owned(), problem: format!("{:?}", err) });
    }
    Ok(t.partitions().len() as i32)
}

/// Replicas of the topic's first partition, and its `min.insync.replicas`.
pub async fn topic_replication(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Replication, KafkaError> {
    let not_there = || KafkaError::Topic { topic: topic.to_owned(), problem: "not in metadata".into() };
    let md = metadata_client(config)?
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| KafkaError::client(format!("fetching metadata of {topic}"), e))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(not_there)?;
    let factor = t.partitions().first().map(|p| p.replicas().len() as i32).ok_or_else(not_there)?;
    let resource = rdkafka::admin::ResourceSpecifier::Topic(topic);
    let described = admin_client(config)?
        .describe_configs([&resource], &admin_options())
        .await
        .map_err(|e| KafkaError::client(format!("describing {topic}"), e))?;
    let min_insync_replicas = described
        .into_iter()
        .flatten()
        .flat_map(|r| r.entries)
        .find(|e| e.name == "min.insync.replicas")
        .and_then(|e| e.value?.parse().ok());
    Ok(Replication { factor, min_insync_replicas })
}

/// [`ensure_topics`] for a service that can start without Kafka: brokers that fail or do not
/// answer within `wait` are logged (the service's requests fail until Kafka is reachable), but
/// wrong settings ([`KafkaError::Config`]) are returned: those do not heal by waiting.
pub async fn ensure_topics_best_effort(config: &KafkaConfig, topics: &[TopicSpec], wait: Duration) -> Result<(), KafkaError> {
    match tokio::time::timeout(wait, ensure_topics(config, topics)).await {
        Ok(Ok(())) => {}
        Ok(Err(e @ KafkaError::Config { .. })) => return Err(e),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not check or create the topics; requests fail until Kafka is reachable"),
        Err(_) => tracing::warn!(brokers = %config.brokers, ?wait, "Kafka did not answer; requests fail until it is reachable"),
    }
    Ok(())
}
