//! Invariant 1 when the services themselves fail: ClickHouse stopped for 30 seconds mid-run,
//! the Kafka broker restarted mid-run, and two processors sharing the partitions with
//! rebalances mid-run. These tests stop and start the shared stack (scripts/stack.sh), so they
//! run one at a time, and a guard brings the stack back even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ledger_tests::{assert_ledger_matches, produce_synthetic, workspace_root, ProcessLogs, Sent, TestEnv};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn state_dir() -> PathBuf {
    std::env::var_os("LEDGER_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".state"))
}

/// Stops one service of the stack (SIGTERM to the pid `stack.sh up` recorded).
fn stop_service(service: &str) {
    let pid_file = state_dir().join(service).join(format!("{service}.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let pid = pid.trim();
    let status = Command::new("kill").args(["-TERM", pid]).status().expect("kill");
    assert!(status.success(), "stopping {service} (pid {pid})");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{service} stopped");
}

fn stack_up() {
    let status = Command::new("bash")
        .arg(workspace_root().join("scripts/stack.sh"))
        .arg("up")
        .stdout(Stdio::null())
        .status()
        .expect("scripts/stack.sh up");
    assert!(status.success(), "scripts/stack.sh up failed");
}

/// Brings the stack back up when a test ends, however it ends.
struct StackGuard;

impl Drop for StackGuard {
    fn drop(&mut self) {
        stack_up();
    }
}

fn spawn_processor(env: &TestEnv, instance: Option<&str>, logs: &mut ProcessLogs) -> Child {
    let mut cmd = env.ledger();
    let log = logs.file(env, instance.unwrap_or("processor"));
    cmd.args(["process"])
        .env("LEDGER__PROCESSOR__BATCH__MAX_ROWS", "5000")
        .env("LEDGER__PROCESSOR__BATCH__MAX_DELAY_MS", "100")
        .env("RUST_LOG", "warn,ledger=info,ledger_processor=info")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(id) = instance {
        cmd.env("LEDGER__PROCESSOR__INSTANCE_ID", id);
    }
    cmd.spawn().expect("spawning ledger process")
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn rows(env: &TestEnv) -> u64 {
    env.totals().await.ledger.requests
}

async fn wait_for_rows(env: &TestEnv, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = rows(env).await;
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_partitions_in_ledger(env: &TestEnv, partitions: u64, timeout: Duration) {
    let client = env.clickhouse.client().expect("clickhouse client");
    let sql = format!("SELECT uniqExact(kafka_partition) FROM {}.usage_ledger", env.clickhouse.database);
    let deadline = Instant::now() + timeout;
    loop {
        let seen = client.query(&sql).fetch_one::<u64>().await.unwrap_or(0);
        if seen >= partitions {
            return;
        }
        assert!(Instant::now() < deadline, "only {seen} of {partitions} partitions have rows in the ledger after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn drain_and_assert_exact(env: &TestEnv, sent: &Sent) {
    env.run_ledger(&["process", "--until-drained"]);
    assert_ledger_matches(env, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_30_seconds_mid_run() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("chdown");
    let mut logs = ProcessLogs::default();
    env.run_ledger(&["migrate"]);
    let mut sent = produce_synthetic(&env, 20_000, 31, 50_000, 10_000).await;
    let _guard = StackGuard;
    let processor = spawn_processor(&env, Some("chdown-1"), &mut logs);
    let before = wait_for_rows(&env, 1, Duration::from_secs(60)).await;
    assert!(before > 0, "the processor wrote nothing before the outage");
    // Every partition initialised first: otherwise the outage only delays a partition's first
    // fence read, and no insert is in flight or failing while ClickHouse is down.
    wait_for_partitions_in_ledger(&env, 4, Duration::from_secs(60)).await;
    stop_service("clickhouse");
    let stopped_at = Instant::now();
    // Events keep coming while ClickHouse is down, so the processor batches them and its
    // inserts fail and are retried (a server that drains slowly could otherwise take every
    // event before it stops, and the outage would hit nothing).
    sent.absorb(produce_synthetic(&env, 40_000, 32, 50_000, 10_000).await);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped_at.elapsed())).await;
    stack_up();
    let after = wait_for_rows(&env, sent.distinct_valid, Duration::from_secs(120)).await;
    eprintln!("rows: {before} before the outage, {after} after");
    terminate(processor);
    drain_and_assert_exact(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restarted_mid_run() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("kafkarestart");
    let mut logs = ProcessLogs::default();
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 60_000, 37, 50_000, 10_000).await;
    let _guard = StackGuard;
    let processor = spawn_processor(&env, Some("kafkarestart-1"), &mut logs);
    let before = wait_for_rows(&env, 1, Duration::from_secs(60)).await;
    assert!(before > 0, "the processor wrote nothing before the restart");
    stop_service("kafka");
    stack_up();
    let after = wait_for_rows(&env, sent.distinct_valid, Duration::from_secs(180)).await;
    eprintln!("rows: {before} before the broker restart, {after} after");
    terminate(processor);
    drain_and_assert_exact(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_with_rebalances_mid_run() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("rebalance");
    let mut logs = ProcessLogs::default();
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 100_000, 41, 50_000, 10_000).await;
    let first = spawn_processor(&env, None, &mut logs);
    let r1 = wait_for_rows(&env, 1, Duration::from_secs(60)).await;
    // A second member joins: the partitions are split between the two.
    let second = spawn_processor(&env, None, &mut logs);
    let r2 = wait_for_rows(&env, r1 + 20_000, Duration::from_secs(60)).await;
    // The first leaves gracefully: the second takes everything over.
    terminate(first);
    let r3 = wait_for_rows(&env, r2 + 10_000, Duration::from_secs(60)).await;
    // A third joins and the second is killed outright.
    let third = spawn_processor(&env, None, &mut logs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = second;
    second.kill().expect("kill -9");
    let _ = second.wait();
    let r4 = wait_for_rows(&env, sent.distinct_valid, Duration::from_secs(120)).await;
    eprintln!("rows after each step: {r1}, {r2}, {r3}, {r4}");
    terminate(third);
    drain_and_assert_exact(&env, &sent).await;
}
