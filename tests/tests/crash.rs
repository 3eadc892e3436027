//! Invariants 1 and 2 under failure: the processor is killed with SIGKILL at random moments
//! and restarted; after the drain the ledger, every rollup and the spend topic hold exactly the
//! independently computed total, and the dead-letter topic exactly the invalid events.

use ledger_tests::{kill_9_rounds, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_neither_loses_nor_doubles() {
    let env = TestEnv::new("crash");
    kill_9_rounds(&env, 200_000, 6).await;
}

/// A processor killed between its insert and its spend publication leaves spend in the ledger
/// that the spend topic lacks, with nothing left to read. Stand-in for that loss: a fresh spend
/// topic. The next owner, with no message to handle, still republishes the recent buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_lost_after_the_insert_is_republished_without_a_new_message() {
    let mut env = TestEnv::new("respend");
    env.run_ledger(&["migrate"]);
    let sent = ledger_tests::produce_synthetic(&env, 3_000, 7, 0, 0).await;
    env.run_ledger(&["process", "--until-drained"]);
    ledger_tests::assert_ledger_matches(&env, &sent).await;

    env.topics.spend = format!("{}.lost", env.topics.spend);
    let topics = ledger_kafka::admin::ledger_topics(&env.topics, 4);
    ledger_kafka::admin::ensure_topics(&env.kafka, &topics).await.expect("creating the fresh spend topic");
    assert_eq!(ledger_tests::spend_topic_totals(&env), (0, 0), "the fresh spend topic starts empty");
    env.run_ledger(&["process", "--until-drained"]);
    let ledger = env.totals().await.ledger;
    assert_eq!(ledger.requests, sent.distinct_valid, "nothing read twice");
    assert_eq!(
        ledger_tests::spend_topic_totals(&env),
        (ledger.cost.picos(), ledger.requests as i64),
        "the spend of every partition republished"
    );

    // A long-running processor initialises its quiet partitions too, after a few seconds.
    env.topics.spend = format!("{}.again", env.topics.spend);
    let topics = ledger_kafka::admin::ledger_topics(&env.topics, 4);
    ledger_kafka::admin::ensure_topics(&env.kafka, &topics).await.expect("creating the second fresh spend topic");
    let mut processor = ledger_tests::spawn_processor(&env);
    let started = std::time::Instant::now();
    let expected = (ledger.cost.picos(), ledger.requests as i64);
    let mut seen = ledger_tests::spend_topic_totals(&env);
    while seen != expected && started.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        seen = ledger_tests::spend_topic_totals(&env);
    }
    processor.kill().expect("stopping the processor");
    processor.wait().expect("wait");
    assert_eq!(seen, expected, "a running processor republished every quiet partition's spend");
}
