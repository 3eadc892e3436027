//! Topic cleanup on the real broker: `topics_with_prefix` and `delete_topics`, which the test
//! environment and the benchmark scripts use to remove their topics.

use std::time::{Duration, Instant};

use ledger_kafka::admin::{delete_topics, ensure_topics, topics_with_prefix, TopicSpec};
use ledger_kafka::KafkaConfig;
use ledger_tests::{kafka_brokers, random_suffix};

fn spec(name: &str) -> TopicSpec {
    TopicSpec { name: name.to_owned(), partitions: 2, compacted: false }
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
