//! Invariants 1 and 2 under failure: the processor is killed with SIGKILL at random moments
//! and restarted; after the drain the ledger, every rollup and the spend topic hold exactly the
//! independently computed total, and the dead-letter topic exactly the invalid events.

use std::process::{Child, Stdio};
use std::time::Duration;

use rand::Rng;

use ledger_tests::{assert_ledger_matches, produce_synthetic, TestEnv};

fn spawn_processor(env: &TestEnv) -> Child {
    env.ledger()
        .args(["process"])
        .env("LEDGER__PROCESSOR__BATCH__MAX_ROWS", "5000")
        .env("LEDGER__PROCESSOR__BATCH__MAX_DELAY_MS", "100")
        // Two lanes: kills also land with two inserts in flight (the other tests run one).
        .env("LEDGER__PROCESSOR__BATCH__CONCURRENT_INSERTS", "2")
        .env("LEDGER__PROCESSOR__INSTANCE_ID", "crash-test-instance")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning ledger process")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_neither_loses_nor_doubles() {
    let env = TestEnv::new("crash");
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 200_000, 23, 50_000, 10_000).await;

    let mut rng = rand::thread_rng();
    let mut rows_before = 0;
    for round in 0..6 {
        let mut child = spawn_processor(&env);
        // Kill mid-stream: once this run has written something, after a random extra delay.
        let started = std::time::Instant::now();
        while env.totals().await.ledger.requests == rows_before && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let extra = Duration::from_millis(rng.gen_range(0..1_500));
        tokio::time::sleep(extra).await;
        child.kill().expect("kill -9");
        let status = child.wait().expect("wait");
        rows_before = env.totals().await.ledger.requests;
        eprintln!("round {round}: killed after {:?} ({status}); ledger holds {rows_before} rows", started.elapsed());
    }
    let drain = std::time::Instant::now();
    env.run_ledger(&["process", "--until-drained"]);
    eprintln!("final drain took {:?}", drain.elapsed());
    assert_ledger_matches(&env, &sent).await;
}
