//! The notifier's durable progress: a compacted topic with, per webhook and budget signal key,
//! the sequence of the last signal it handled (delivered, or decided not to alert on). Key
//! `<webhook>|<signal key>`; value a small JSON object. A record is written only after the
//! message it stands for was delivered, so a crash loses nothing; one that lands between the
//! receiver's acknowledgement and the record's resends that message once, with the same
//! idempotency key.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use ledger_core::signal::BudgetState;
use ledger_kafka::reader::BoundedRead;
use ledger_kafka::{KafkaConfig, KafkaError};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// What the progress topic says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    handled: HashMap<(String, String), i64>,
    webhooks: HashSet<String>,
}

/// The record key of a webhook's progress on a signal key (`""`: the webhook's start marker).
pub fn progress_key(webhook: &str, signal_key: &str) -> String {
    format!("{webhook}|{signal_key}")
}

impl Progress {
    /// The sequence of the last signal of `key` that `webhook` handled.
    pub fn handled(&self, webhook: &str, key: &str) -> Option<i64> {
        self.handled.get(&(webhook.to_owned(), key.to_owned())).copied()
    }

    /// True when `webhook` recorded anything (it started before).
    pub fn knows(&self, webhook: &str) -> bool {
        self.webhooks.contains(webhook)
    }

    /// Adds one record (keeping the highest sequence per key, whatever the order read).
    pub fn add(&mut self, record_key: &str, sequence: i64) {
        let Some((webhook, key)) = record_key.split_once('|') else { return };
        self.webhooks.insert(webhook.to_owned());
        let slot = self.handled.entry((webhook.to_owned(), key.to_owned())).or_insert(sequence);
        *slot = (*slot).max(sequence);
    }
}

/// Reads the progress topic to its end. Blocking: run it on a blocking thread.
pub fn read(kafka: &KafkaConfig, topic: &str, group: &str) -> Result<Progress, KafkaError> {
    let mut progress = Progress::default();
    BoundedRead::new(kafka, topic).group(group).stall_timeout(Duration::from_secs(60)).to_end(|m| {
        let (Some(key), Some(payload)) = (m.key(), m.payload()) else { return };
        let sequence = serde_json::from_slice::<serde_json::Value>(payload).ok().and_then(|v| v["sequence"].as_i64());
        match (std::str::from_utf8(key), sequence) {
            (Ok(key), Some(sequence)) => progress.add(key, sequence),
            _ => tracing::warn!(
                topic,
                partition = m.partition(),
                offset = m.offset(),
                "skipping a progress record that does not parse"
            ),
        }
    })?;
    Ok(progress)
}

/// Writes progress records and waits for Kafka's acknowledgement.
#[derive(Clone)]
pub struct Recorder {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing to `topic`.
    pub fn new(producer: FutureProducer, topic: &str) -> Recorder {
        Recorder { producer, topic: topic.to_owned() }
    }

    /// Records that `webhook` handled signal `sequence` of `key` (in `state`; `alerted`: a message
    /// was delivered). Returns once Kafka has the record.
    pub async fn record(
        &self,
        webhook: &str,
        key: &str,
        sequence: i64,
        state: BudgetState,
        alerted: bool,
    ) -> Result<(), KafkaError> {
        let value = serde_json::json!({
            "sequence": sequence,
            "state": state.as_str(),
            "alerted": alerted,
            "recorded_at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        })
        .to_string();
        let record_key = progress_key(webhook, key);
        let record = FutureRecord::to(&self.topic).key(&record_key).payload(&value);
        let delivery = ledger_kafka::producer::enqueue(&self.producer, record).await?;
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(KafkaError::client(format!("recording progress on {}", self.topic), e)),
            Err(_) => {
                Err(KafkaError::Topic { topic: self.topic.clone(), problem: "the producer dropped a progress record".into() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_sequence_per_key_wins_and_markers_name_the_webhook() {
        let mut p = Progress::default();
        p.add("ops|day:tenant_id=a", 3);
        p.add("ops|day:tenant_id=a", 2);
        p.add("chat|", 0);
        p.add("garbage", 9);
        assert_eq!(p.handled("ops", "day:tenant_id=a"), Some(3));
        assert_eq!(p.handled("chat", "day:tenant_id=a"), None);
        assert!(p.knows("chat") && p.knows("ops") && !p.knows("garbage"));
        assert_eq!(progress_key("ops", ""), "ops|");
    }
}
