//! The cluster profile on the real thing: a three-node Apache Kafka cluster (KRaft, every node
//! broker and controller) started by `scripts/stack.sh up --cluster` in its own state dir on free
//! ports. The ledger's topics are made with 3 replicas and min ISR 2; a broker killed with
//! SIGKILL mid-stream, and the processor killed after it, leave the ledger exact.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ledger_kafka::admin::{topic_replication, Replication};
use ledger_tests::{assert_ledger_matches, produce_synthetic, random_suffix, spawn_processor, workspace_root, TestEnv};

/// A cluster of this test's own, stopped and deleted when dropped.
struct Cluster {
    state: PathBuf,
    base: u16,
}

/// Ports of the cluster with base port `b`: each node's client and controller port (10 apart), and
/// ClickHouse's http and native ports (the profile starts one; this test uses the shared one).
fn ports(b: u16) -> Vec<u16> {
    vec![b, b + 1, b + 10, b + 11, b + 20, b + 21, b + 30, b + 31]
}

impl Cluster {
    fn up() -> Cluster {
        let base = (0..200)
            .map(|i| 20_000 + (std::process::id() as u16 % 500) * 40 + i * 40)
            .find(|&b| ports(b).iter().all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok()))
            .expect("a free port range");
        let state = std::env::temp_dir().join(format!("ledger-cluster-{}", random_suffix()));
        let cluster = Cluster { state, base };
        let out = cluster.stack(&["up", "--cluster"]);
        assert!(
            out.status.success(),
            "stack up --cluster failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn stack(&self, args: &[&str]) -> std::process::Output {
        let b = self.base;
        Command::new("bash")
            .arg(workspace_root().join("scripts/stack.sh"))
            .args(args)
            .env("LEDGER_STATE_DIR", &self.state)
            .env("LEDGER_KAFKA_PORT", b.to_string())
            .env("LEDGER_KAFKA_CONTROLLER_PORT", (b + 1).to_string())
            .env("LEDGER_CLICKHOUSE_HTTP_PORT", (b + 30).to_string())
            .env("LEDGER_CLICKHOUSE_TCP_PORT", (b + 31).to_string())
            .env("LEDGER_KAFKA_HEAP", "-Xms256m -Xmx512m")
            .output()
            .expect("running scripts/stack.sh")
    }

    fn brokers(&self) -> String {
        (0..3).map(|n| format!("127.0.0.1:{}", self.base + 10 * n)).collect::<Vec<_>>().join(",")
    }

    /// SIGKILL to node `n`'s JVM.
    fn kill_9(&self, n: u32) {
        let pid_file = self.state.join(format!("kafka-{n}/kafka-{n}.pid"));
        let pid = std::fs::read_to_string(&pid_file).expect("the node's pid file");
        let status = Command::new("kill").args(["-9", pid.trim()]).status().expect("kill");
        assert!(status.success(), "kill -9 {pid}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = self.stack(&["down", "--purge"]);
        if !out.status.success() {
            eprintln!("stack down --purge failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_topics_keep_the_ledger_exact_when_a_broker_and_the_processor_die() {
    let cluster = Cluster::up();
    let mut env = TestEnv::new("cluster");
    env.kafka.brokers = cluster.brokers();
    env.topics.replication_factor = 3;
    env.topics.min_insync_replicas = Some(2);
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 20_000, 31, 50_000, 10_000).await;
    for topic in [&env.topics.usage, &env.topics.dead_letter, &env.topics.spend, &env.topics.signals] {
        let replication = topic_replication(&env.kafka, topic, Duration::from_secs(10)).await.expect("describing");
        assert_eq!(replication, Replication { factor: 3, min_insync_replicas: Some(2) }, "{topic}");
    }

    let mut processor = spawn_processor(&env);
    let started = std::time::Instant::now();
    while env.totals().await.ledger.requests == 0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.kill_9(2);
    // The processor goes on with two of three nodes (min ISR 2), then dies itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    processor.kill().expect("kill -9 the processor");
    processor.wait().expect("wait");
    let rows = env.totals().await.ledger.requests;
    eprintln!("broker 2 and the processor killed; the ledger holds {rows} rows");
    env.run_ledger(&["process", "--until-drained"]);
    assert_ledger_matches(&env, &sent).await;
}
