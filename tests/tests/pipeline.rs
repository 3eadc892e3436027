//! End to end, as a user runs it: `ledger migrate`, events into Kafka, `ledger process`,
//! then the ledger, every rollup and the dead-letter topic checked against an independent
//! computation (tests/oracle/price_oracle.py).

use ledger_tests::{assert_ledger_matches, produce_synthetic, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_prices_every_distinct_event_once_and_dead_letters_the_rest() {
    let env = TestEnv::new("slice");
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 5_000, 11, 50_000, 10_000).await;
    assert!(sent.duplicates > 0 && sent.invalid > 0, "the load must contain duplicates and invalid events: {sent:?}");

    env.run_ledger(&["process", "--until-drained"]);

    assert_ledger_matches(&env, &sent).await;
    let totals = env.totals().await;

    // Running again finds nothing new: no row is written twice.
    env.run_ledger(&["process", "--until-drained"]);
    assert_eq!(env.totals().await.ledger, totals.ledger);
    assert_eq!(env.dead_letter_count(), sent.invalid as i64);

    let report = env.run_ledger(&["report", "spend"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("acme"), "report names the biggest tenant:\n{text}");
}
