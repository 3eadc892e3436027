//! Invariants 1 and 2 under failure: the processor is killed with SIGKILL at random moments
//! and restarted; after the drain the ledger, every rollup and the spend topic hold exactly the
//! independently computed total, and the dead-letter topic exactly the invalid events.

use ledger_tests::{kill_9_rounds, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_neither_loses_nor_doubles() {
    let env = TestEnv::new("crash");
    kill_9_rounds(&env, 200_000, 6).await;
}
