//! The current state of the signals topic.

use std::collections::BTreeMap;

use rdkafka::Message;

use ledger_core::signal::BudgetSignal;
use ledger_kafka::reader::BoundedRead;
use ledger_kafka::{KafkaConfig, KafkaError};
use ledger_schema::BudgetSignalCodec;

/// The last signal of every key on the signals topic (the compacted state routers see); empty
/// when the topic does not exist yet. Records that do not decode are skipped with a warning.
/// Blocking: run it on a blocking thread.
pub fn latest_signals(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<BTreeMap<String, BudgetSignal>, KafkaError> {
    let codec = BudgetSignalCodec::new().map_err(|e| KafkaError::Topic { topic: topic.to_owned(), problem: e.to_string() })?;
    let mut latest: BTreeMap<String, BudgetSignal> = BTreeMap::new();
    BoundedRead::new(kafka, topic).group(group).to_end(|m| {
        let Some(payload) = m.payload() else { return };
        match codec.decode(payload) {
            Ok(s) => {
                // Sequences only grow per key; keep the highest (robust to any replay order).
                if latest.get(&s.scope).is_none_or(|old| old.sequence <= s.sequence) {
                    latest.insert(s.scope.clone(), s);
                }
            }
            Err(e) => {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "skipping a signal that does not decode")
            }
        }
    })?;
    Ok(latest)
}
