//! Topic cleanup on the real broker: `topics_with_prefix` and `delete_topics`, which the test
//! environment and the benchmark scripts use to remove their topics.

use std::time::{Duration, Instant};

use ledger_kafka::admin::{delete_topics, ensure_topics, topic_replication, topics_with_prefix, Replication, TopicSpec};
use ledger_kafka::KafkaConfig;
use ledger_tests::{kafka_brokers, random_suffix};

fn spec(name: &str) -> TopicSpec {
    TopicSpec { name: name.to_owned(), partitions: 2, compacted: false, replication: Default::default() }
}

#[tokio::test]
async fn topics_under_a_prefix_are_listed_and_deleted_and_no_others() {
    let kafka = KafkaConfig { brokers: kafka_brokers(), ..KafkaConfig::default() };
    let run = random_suffix();
    let prefix = format!("test.topics.{run}.");
    let ours = [format!("{prefix}a"), format!("{prefix}b")];
    // Shares the prefix but for its last character: must survive.
    let neighbour = format!("test.topics.{run}-other");
    let all: Vec<TopicSpec> = ours.iter().chain([&neighbour]).map(|n| spec(n)).collect();
    ensure_topics(&kafka, &all).await.expect("creating topics");

    let listed = topics_with_prefix(&kafka, &prefix, Duration::from_secs(10)).expect("listing");
    assert_eq!(listed, ours.to_vec());

    let names: Vec<&str> = listed.iter().map(String::as_str).collect();
    delete_topics(&kafka, &names).await.expect("deleting");
    // Deleting again, and deleting a topic that never existed, is not an error.
    delete_topics(&kafka, &[names[0], "test.topics.never-created"]).await.expect("deleting again");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = topics_with_prefix(&kafka, &prefix, Duration::from_secs(10)).expect("listing");
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still listed 30 s after deletion: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let survivors = topics_with_prefix(&kafka, &format!("test.topics.{run}"), Duration::from_secs(10)).expect("listing");
    assert_eq!(survivors, vec![neighbour.clone()]);
    delete_topics(&kafka, &[neighbour.as_str()]).await.expect("cleanup");
}

#[tokio::test]
async fn topics_are_created_with_the_configured_replication_and_impossible_numbers_name_the_setting() {
    let kafka = KafkaConfig { brokers: kafka_brokers(), ..KafkaConfig::default() };
    let name = format!("test.topics.{}.replicated", random_suffix());
    let replication = Replication { factor: 1, min_insync_replicas: Some(1) };
    ensure_topics(&kafka, &[TopicSpec { replication, ..spec(&name) }]).await.expect("creating");
    let described = topic_replication(&kafka, &name, Duration::from_secs(10)).await.expect("describing");
    assert_eq!(described, replication);
    delete_topics(&kafka, &[name.as_str()]).await.expect("cleanup");

    // More in-sync replicas than replicas: refused before anything is created, naming the setting.
    let impossible = Replication { factor: 1, min_insync_replicas: Some(2) };
    let err = ensure_topics(&kafka, &[TopicSpec { replication: impossible, ..spec(&name) }]).await.unwrap_err();
    assert!(err.is_settings() && err.to_string().contains("topics.min_insync_replicas"), "{err}");
    // Three replicas on this one broker: the broker's refusal is passed on.
    let three = Replication { factor: 3, min_insync_replicas: Some(2) };
    let err = ensure_topics(&kafka, &[TopicSpec { replication: three, ..spec(&name) }]).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("replication"), "{err}");
    assert!(topics_with_prefix(&kafka, &name, Duration::from_secs(10)).expect("listing").is_empty());
}
