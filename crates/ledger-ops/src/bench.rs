//! The benchmark scripts' helpers: the consume-only baseline of `benches/pipeline.sh`, and
//! removing a run's topics afterwards.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use ledger_kafka::{KafkaConfig, TopicNames};

use crate::OpsError;

/// What the consume-only baseline read.
#[derive(Debug, Clone, Copy)]
pub struct Consumed {
    /// Messages.
    pub messages: u64,
    /// Payload bytes touched.
    pub bytes: u64,
    /// Time from the first poll.
    pub elapsed: Duration,
}

/// Reads `expect` messages of `topic` from the beginning with a fresh group and the
/// processor's consumer settings, touching every payload.
pub async fn consume_baseline(kafka: &KafkaConfig, topic: &str, expect: u64) -> Result<Consumed, OpsError> {
    let group = format!("bench-consume-{}", std::process::id());
    let (consumer, _context): (StreamConsumer<_>, _) =
        ledger_kafka::consumer::manual_offset_consumer(kafka, &group, None, Default::default())?;
    consumer.subscribe(&[topic]).map_err(|e| ledger_kafka::KafkaError::client(format!("subscribing to {topic}"), e))?;
    let started = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    while messages < expect {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(m)) => {
                bytes += m.payload().map_or(0, |p| p.len() as u64);
                messages += 1;
            }
            Ok(Err(e)) => return Err(ledger_kafka::KafkaError::client(format!("consuming {topic}"), e).into()),
            Err(_) => {
                return Err(OpsError::Inconsistent(format!("no message for 30 s after {messages} of {expect} from {topic}")))
            }
        }
    }
    Ok(Consumed { messages, bytes, elapsed: started.elapsed() })
}

/// Deletes every topic whose name starts with `prefix`, refusing a prefix shorter than three
/// characters or one that would match the ledger's own topics; returns the names deleted.
pub async fn delete_run_topics(kafka: &KafkaConfig, prefix: &str) -> Result<Vec<String>, OpsError> {
    let prefix = prefix.trim();
    let defaults = TopicNames::default();
    let guarded = [&defaults.usage, &defaults.dead_letter, &defaults.spend, &defaults.signals];
    if prefix.len() < 3 || guarded.iter().any(|t| t.starts_with(prefix)) {
        return Err(OpsError::Invalid(format!(
            "refusing prefix {prefix:?}: it is shorter than 3 characters or matches the ledger's own topics; \
             pass a benchmark run's prefix, such as bench1795901717."
        )));
    }
    Ok(ledger_kafka::admin::delete_topics_with_prefix(kafka, prefix, Duration::from_secs(10)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_ledgers_own_topics_are_refused_before_any_connection() {
        let kafka = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
        for prefix in ["ll", "llm.", "llm.usage"] {
            let err = delete_run_topics(&kafka, prefix).await.unwrap_err().to_string();
            assert!(err.starts_with("refusing prefix"), "{prefix}: {err}");
        }
    }
}
