//! Shared helpers for the integration and end-to-end tests.
//!
//! Every test gets its own topics (a random prefix) and its own ClickHouse database, so tests
//! run in parallel and re-run cleanly. The services are the real ones started by
//! `scripts/stack.sh up` (addresses from `LEDGER_TEST_KAFKA_BROKERS` and
//! `LEDGER_TEST_CLICKHOUSE_URL`, defaulting to the stack's loopback ports). A test that cannot
//! reach them fails with a message saying how to start them; it never skips silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ledger_clickhouse::report::{LedgerReader, LedgerTotals};
use ledger_clickhouse::ClickHouseConfig;
use ledger_kafka::{KafkaConfig, TopicNames};
use rand::Rng;

pub mod burst;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The `ledger` binary, built once per test process (a nested `cargo build`, quick when fresh).
pub fn ledger_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "ledger-cli"])
            .current_dir(&root)
            .status()
            .expect("running cargo build -p ledger-cli");
        assert!(status.success(), "cargo build -p ledger-cli failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let target = if target.is_absolute() { target } else { root.join(target) };
        let bin = target.join("debug").join(if cfg!(windows) { "ledger.exe" } else { "ledger" });
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// Kafka bootstrap servers of the test stack.
pub fn kafka_brokers() -> String {
    std::env::var("LEDGER_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// ClickHouse HTTP URL of the test stack.
pub fn clickhouse_url() -> String {
    std::env::var("LEDGER_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

/// Base URL of the stack's schema registry (Confluent-compatible API): `LEDGER_TEST_REGISTRY_URL`,
/// else the API of `scripts/stack.sh up --registry` on `LEDGER_REGISTRY_PORT` (8081).
pub fn registry_url() -> String {
    std::env::var("LEDGER_TEST_REGISTRY_URL").unwrap_or_else(|_| {
        let port = std::env::var("LEDGER_REGISTRY_PORT").unwrap_or_else(|_| "8081".to_owned());
        format!("http://127.0.0.1:{port}/apis/ccompat/v7")
    })
}

/// [`registry_url`], after checking that the registry answers; panics saying how to start it.
pub fn running_registry() -> String {
    let url = registry_url();
    let authority = url.trim_start_matches("http://").trim_start_matches("https://").split('/').next().unwrap_or_default();
    let reachable =
        authority.parse().ok().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "the schema registry is not reachable at {url}: start it with `scripts/stack.sh up --registry` \
         (scripts/test.sh does), or set LEDGER_TEST_REGISTRY_URL"
    );
    url
}

/// A random lowercase hex suffix.
pub fn random_suffix() -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// The secure profile's files (`scripts/stack.sh up --secure` writes them under
/// `$LEDGER_STATE_DIR/secure/`, by default `.state/secure/`).
#[derive(Debug, Clone)]
pub struct SecureFiles {
    /// The folder.
    pub dir: PathBuf,
    /// The ledger config file that reaches the secure listeners.
    pub config: PathBuf,
    /// The Kafka user's password.
    pub kafka_password: PathBuf,
    /// The ClickHouse user's password.
    pub clickhouse_password: PathBuf,
    /// The CA that signed both servers' certificates.
    pub ca: PathBuf,
}

impl SecureFiles {
    /// The files of the running stack's secure profile; panics with what to do when it is off.
    pub fn of_stack() -> SecureFiles {
        let state = std::env::var_os("LEDGER_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".state"));
        let dir = state.join("secure");
        let files = SecureFiles {
            config: dir.join("ledger.toml"),
            kafka_password: dir.join("kafka-password"),
            clickhouse_password: dir.join("clickhouse-password"),
            ca: dir.join("ca.pem"),
            dir,
        };
        assert!(
            files.config.exists(),
            "{} is missing: start the stack with `scripts/stack.sh up --secure` (scripts/test.sh does)",
            files.config.display()
        );
        files
    }

    /// Every secret the profile holds, to search logs for.
    pub fn secrets(&self) -> Vec<String> {
        [&self.kafka_password, &self.clickhouse_password]
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("reading a password file").trim().to_owned())
            .collect()
    }
}

/// One test's private topics, consumer group and ClickHouse database.
#[derive(Debug)]
pub struct TestEnv {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// This test's topics.
    pub topics: TopicNames,
    /// This test's ClickHouse database.
    pub clickhouse: ClickHouseConfig,
    /// This test's consumer group.
    pub group: String,
    /// Set when the test talks to the secure listeners (SASL_SSL Kafka, HTTPS ClickHouse).
    pub secure: Option<SecureFiles>,
}

impl TestEnv {
    /// Fresh names for a test called `name`; checks that both services answer.
    pub fn new(name: &str) -> TestEnv {
        let suffix = random_suffix();
        let env = TestEnv {
            kafka: KafkaConfig { brokers: kafka_brokers(), ..KafkaConfig::default() },
            topics: TopicNames::with_prefix(&format!("test.{name}.{suffix}.")),
            clickhouse: ClickHouseConfig::new(clickhouse_url(), format!("ledger_test_{name}_{suffix}")),
            group: format!("test-{name}-{suffix}"),
            secure: None,
        };
        env.check_services();
        env
    }

    /// [`TestEnv::new`] whose clients, and the `ledger` commands it runs, reach the stack's
    /// secure listeners: Kafka over SASL_SSL with SCRAM-SHA-512, ClickHouse over HTTPS with a
    /// password, both verified against the profile's CA.
    pub fn secure(name: &str) -> TestEnv {
        let mut env = TestEnv::new(name);
        let files = SecureFiles::of_stack();
        let text = std::fs::read_to_string(&files.config).expect("reading the secure ledger.toml");
        let doc: toml::Table = text.parse().expect("the secure ledger.toml parses");
        let kafka = doc["kafka"].as_table().expect("[kafka]");
        env.kafka.brokers = kafka["brokers"].as_str().expect("kafka.brokers").to_owned();
        env.kafka.options = kafka["options"]
            .as_table()
            .expect("[kafka.options]")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a string option").to_owned()))
            .collect();
        env.kafka.sasl_password_file = Some(files.kafka_password.clone());
        env.kafka.resolve_secrets().expect("reading the Kafka password");
        let ch = doc["clickhouse"].as_table().expect("[clickhouse]");
        env.clickhouse.url = ch["url"].as_str().expect("clickhouse.url").to_owned();
        env.clickhouse.user = ch["user"].as_str().map(str::to_owned);
        env.clickhouse.password_file = Some(files.clickhouse_password.clone());
        env.clickhouse.ca_file = Some(files.ca.clone());
        env.secure = Some(files);
        env
    }

    fn check_services(&self) {
        fn reachable(addr: &str) -> bool {
            addr.parse().ok().map(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()).unwrap_or(false)
        }
        let kafka_addr = self.kafka.brokers.split(',').next().unwrap_or_default().to_owned();
        assert!(
            reachable(&kafka_addr),
            "Kafka is not reachable at {kafka_addr}: start the stack with `scripts/stack.sh up` (or set LEDGER_TEST_KAFKA_BROKERS)"
        );
        let ch = self.clickhouse.url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
        assert!(
            reachable(ch),
            "ClickHouse is not reachable at {}: start the stack with `scripts/stack.sh up` (or set LEDGER_TEST_CLICKHOUSE_URL)",
            self.clickhouse.url
        );
    }

    /// `ledger` with this test's settings in its environment, run from the workspace root.
    pub fn ledger(&self) -> Command {
        let mut cmd = Command::new(ledger_bin());
        cmd.current_dir(workspace_root())
            .env("LEDGER__KAFKA__BROKERS", &self.kafka.brokers)
            .env("LEDGER__CLICKHOUSE__URL", &self.clickhouse.url)
            .env("LEDGER__CLICKHOUSE__DATABASE", &self.clickhouse.database)
            .env("LEDGER__TOPICS__USAGE", &self.topics.usage)
            .env("LEDGER__TOPICS__DEAD_LETTER", &self.topics.dead_letter)
            .env("LEDGER__TOPICS__SPEND", &self.topics.spend)
            .env("LEDGER__TOPICS__SIGNALS", &self.topics.signals)
            .env("LEDGER__TOPICS__LEASE_REQUESTS", &self.topics.lease_requests)
            .env("LEDGER__TOPICS__LEASE_GRANTS", &self.topics.lease_grants)
            .env("LEDGER__PROCESSOR__GROUP_ID", &self.group)
            .env("LEDGER__TOPICS__REPLICATION_FACTOR", self.topics.replication_factor.to_string())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
        if let Some(m) = self.topics.min_insync_replicas {
            cmd.env("LEDGER__TOPICS__MIN_INSYNC_REPLICAS", m.to_string());
        }
        if let Some(files) = &self.secure {
            for (k, v) in &self.kafka.options {
                cmd.env(format!("LEDGER__KAFKA__OPTIONS__{}", k.replace('.', "_").to_uppercase()), v);
            }
            cmd.env("LEDGER__KAFKA__SASL_PASSWORD_FILE", &files.kafka_password)
                .env("LEDGER__CLICKHOUSE__USER", self.clickhouse.user.as_deref().unwrap_or("ledger"))
                .env("LEDGER__CLICKHOUSE__PASSWORD_FILE", &files.clickhouse_password)
                .env("LEDGER__CLICKHOUSE__CA_FILE", &files.ca);
        }
        cmd
    }

    /// Runs `ledger ARGS...` to completion; panics with its output when it fails.
    pub fn run_ledger(&self, args: &[&str]) -> std::process::Output {
        let out = self.ledger().args(args).output().expect("running ledger");
        assert!(
            out.status.success(),
            "ledger {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The ledger's and every rollup's totals.
    pub async fn totals(&self) -> LedgerTotals {
        let client = self.clickhouse.client().expect("clickhouse client");
        LedgerReader::new(client, self.clickhouse.database.clone())
            .expect("reader")
            .ledger_totals()
            .await
            .expect("reading totals")
    }

    /// Number of records in the dead-letter topic.
    pub fn dead_letter_count(&self) -> i64 {
        ledger_kafka::reader::topic_watermarks(&self.kafka, &self.topics.dead_letter, Duration::from_secs(10))
            .expect("dead-letter watermarks")
            .unwrap_or_default()
            .iter()
            .map(ledger_kafka::reader::PartitionMarks::records)
            .sum()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping database {} and topics {}* for inspection", self.clickhouse.database, self.topics.usage);
            return;
        }
        // Through the plain listeners (the stack's default user), also for a secure test.
        let sql = format!("DROP DATABASE IF EXISTS {}", self.clickhouse.database);
        let _ = Command::new("curl").args(["-s", "--data-binary", &sql, &clickhouse_url()]).output();
        // The test's topics too (everything under its prefix, such as a second signals topic),
        // so repeated runs do not fill the broker's disk. Best effort: a test that passed is
        // not failed by its cleanup.
        // Never an empty prefix: that would name every topic on the broker.
        let Some(prefix) = self.topics.usage.strip_suffix(&TopicNames::default().usage).filter(|p| !p.is_empty()) else {
            return;
        };
        let (kafka, prefix) = (KafkaConfig { brokers: kafka_brokers(), ..KafkaConfig::default() }, prefix.to_owned());
        // Its own thread and runtime: Drop may run inside the test's runtime, which cannot be
        // blocked on from within.
        let cleanup = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime
                .block_on(ledger_kafka::admin::delete_topics_with_prefix(&kafka, &prefix, Duration::from_secs(10)))
                .map(drop)
                .map_err(|e| format!("{prefix}*: {e}"))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not delete this test's topics: {e}");
        }
    }
}

/// What a test sent, and what the ledger must hold afterwards.
#[derive(Debug, Default)]
pub struct Sent {
    /// Messages produced.
    pub messages: u64,
    /// Distinct valid events (what the ledger must count once each).
    pub distinct_valid: u64,
    /// Resent duplicates.
    pub duplicates: u64,
    /// Invalid messages (what the dead-letter topic must hold).
    pub invalid: u64,
    /// The distinct valid events as JSON lines, for the independent oracle.
    pub valid_jsonl: String,
}

impl Sent {
    /// Adds what a later `produce_synthetic` sent (with its own seed and id prefix).
    pub fn absorb(&mut self, later: Sent) {
        self.messages += later.messages;
        self.distinct_valid += later.distinct_valid;
        self.duplicates += later.duplicates;
        self.invalid += later.invalid;
        self.valid_jsonl.push_str(&later.valid_jsonl);
    }
}

/// Produces `n` synthetic messages (with the given shares of duplicates and invalid ones, in
/// parts per million) to the test's usage topic, keyed by tenant, and waits for every ack.
pub async fn produce_synthetic(env: &TestEnv, n: u64, seed: u64, duplicate_ppm: u32, invalid_ppm: u32) -> Sent {
    use ledger_loadgen::{Generator, GeneratorOptions, Synthetic};
    use rdkafka::producer::FutureRecord;

    ledger_kafka::admin::ensure_topics(&env.kafka, &ledger_kafka::admin::ledger_topics(&env.topics, 4))
        .await
        .expect("creating topics");
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let codec = ledger_schema::Codec::<ledger_core::UsageEvent>::new().expect("codec");
    let mut generator = Generator::new(GeneratorOptions {
        seed,
        duplicate_ppm,
        invalid_ppm,
        id_prefix: format!("e2e-{}", random_suffix()),
        ..GeneratorOptions::default()
    });
    let mut sent = Sent::default();
    let mut pending = Vec::new();
    for _ in 0..n {
        let message = generator.next_message();
        let (key, payload) = match &message {
            Synthetic::Valid(e) | Synthetic::Duplicate(e) | Synthetic::Invalid(_, Some(e)) => {
                (e.attribution.tenant_id.clone(), codec.encode(e).expect("encode"))
            }
            Synthetic::Invalid(_, None) => ("garbage".to_owned(), b"\xC3\x01garbage".to_vec()),
        };
        match &message {
            Synthetic::Valid(e) => {
                sent.distinct_valid += 1;
                sent.valid_jsonl.push_str(&serde_json::to_string(e).expect("json"));
                sent.valid_jsonl.push('\n');
            }
            Synthetic::Duplicate(_) => sent.duplicates += 1,
            Synthetic::Invalid(..) => sent.invalid += 1,
        }
        sent.messages += 1;
        let record = FutureRecord::to(&env.topics.usage).key(&key).payload(&payload);
        pending.push(ledger_kafka::producer::enqueue(&producer, record).await.expect("enqueue"));
        if pending.len() >= 5_000 {
            for d in pending.drain(..) {
                d.await.expect("delivery future").expect("kafka ack");
            }
        }
    }
    for d in pending.drain(..) {
        d.await.expect("delivery future").expect("kafka ack");
    }
    sent
}

/// Produces the first `n` distinct valid events of `sent` again (same event ids, same keys):
/// resends the ledger must count once. Returns how many were sent.
pub async fn resend_valid(env: &TestEnv, sent: &Sent, n: usize) -> u64 {
    use rdkafka::producer::FutureRecord;
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let codec = ledger_schema::Codec::<ledger_core::UsageEvent>::new().expect("codec");
    let mut resent = 0;
    for line in sent.valid_jsonl.lines().take(n) {
        let event: ledger_core::UsageEvent = serde_json::from_str(line).expect("sent event JSON");
        let payload = codec.encode(&event).expect("encode");
        let record = FutureRecord::to(&env.topics.usage).key(&event.attribution.tenant_id).payload(&payload);
        let delivery = ledger_kafka::producer::enqueue(&producer, record).await.expect("enqueue");
        delivery.await.expect("delivery future").expect("kafka ack");
        resent += 1;
    }
    resent
}

/// The independent oracle's total for JSON-lines events (tests/oracle/price_oracle.py), with the
/// catalog `ledger process` prices with by default: `(priced count, total cost in pico-dollars)`.
/// Panics if it rejects any event.
pub fn oracle_total(jsonl: &str) -> (u64, i128) {
    oracle_total_with(jsonl, &[ledger_processor::config::DEFAULT_CATALOG])
}

/// [`oracle_total`] with the given `--catalog` sources (`FILE[@RFC3339]`).
pub fn oracle_total_with(jsonl: &str, catalogs: &[&str]) -> (u64, i128) {
    use std::io::Write;
    let root = workspace_root();
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("tests/oracle/price_oracle.py"));
    for c in catalogs {
        cmd.args(["--catalog", c]);
    }
    let mut child = cmd
        .args(["--distinct", "--total"])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running python3 tests/oracle/price_oracle.py");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = jsonl.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle output");
    writer.join().expect("writer thread").expect("writing to oracle");
    assert!(out.status.success(), "oracle failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("oracle JSON");
    let failed = v["failed"].as_object().map(|m| m.len()).unwrap_or(0);
    assert_eq!(failed, 0, "the oracle rejected valid events: {v}");
    let total: ledger_core::Money = v["total_cost_usd"].as_str().expect("total").parse().expect("decimal");
    (v["priced"].as_u64().expect("priced"), total.picos())
}

/// Reads a whole topic (every partition, from the beginning up to the current high watermark).
pub fn read_topic(env: &TestEnv, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let group = format!("reader-{}", random_suffix());
    let mut out = Vec::new();
    ledger_kafka::reader::BoundedRead::new(&env.kafka, topic)
        .group(&group)
        .stall_timeout(Duration::from_secs(60))
        .to_end(|m| out.push(m.detach()))
        .expect("reading the topic")
        .expect("the topic exists");
    out
}

/// The spend topic's view of the tenant scope: the latest cumulative update per key, summed
/// (pico-dollars), and the sum of their request counts.
pub fn spend_topic_totals(env: &TestEnv) -> (i128, i64) {
    use rdkafka::Message;
    let codec = ledger_schema::Codec::<ledger_core::spend::SpendUpdate>::new().expect("codec");
    let mut latest = std::collections::HashMap::new();
    for m in read_topic(env, &env.topics.spend) {
        let update = codec.decode(m.payload().expect("payload")).expect("spend update decodes");
        assert_eq!(m.key(), Some(update.key().as_bytes()), "spend records are keyed by SpendUpdate::key");
        latest.insert(update.key(), update);
    }
    latest
        .values()
        .filter(|u| {
            u.scope.attribution.team.is_none()
                && u.scope.attribution.project.is_none()
                && u.scope.attribution.user_id.is_none()
                && u.scope.attribution.api_key_id.is_none()
                && u.scope.model.is_none()
        })
        .fold((0i128, 0i64), |(c, r), u| (c + u.cost_usd.picos(), r + u.request_count))
}

/// The logs of the `ledger` processes a test spawns, under `target/test-logs/`: removed when
/// the test passes (kept with `LEDGER_TEST_KEEP_LOGS` set), their ends printed when it fails,
/// so a failure in CI can be read from its output.
#[derive(Debug, Default)]
pub struct ProcessLogs(Vec<PathBuf>);

impl ProcessLogs {
    /// A new log file for the process `name` of `env`'s test, to pass as its stderr.
    pub fn file(&mut self, env: &TestEnv, name: &str) -> std::fs::File {
        let dir = workspace_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("creating target/test-logs");
        let path = dir.join(format!("{}.{name}.{}.log", env.group, self.0.len()));
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.0.push(path);
        file
    }
}

impl Drop for ProcessLogs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if std::env::var_os("LEDGER_TEST_KEEP_LOGS").is_some() {
                return;
            }
            for path in &self.0 {
                let _ = std::fs::remove_file(path);
            }
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- last lines of {} ----", path.display());
            for line in &lines[lines.len().saturating_sub(80)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// What differs between the ledger's event ids and the distinct valid events sent: the ids
/// missing from the ledger, the ids it holds more than once (with their Kafka coordinates), and
/// the ids it holds that were never sent. For failure messages.
pub async fn ledger_row_differences(env: &TestEnv, sent: &Sent) -> String {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct IdRow {
        event_id: String,
        kafka_partition: i32,
        kafka_offset: i64,
    }
    let client = env.clickhouse.client().expect("clickhouse client");
    let sql = format!("SELECT event_id, kafka_partition, kafka_offset FROM {}.usage_ledger", env.clickhouse.database);
    let rows = match client.query(&sql).fetch_all::<IdRow>().await {
        Ok(rows) => rows,
        Err(e) => return format!("(could not read the ledger's event ids: {e})"),
    };
    let mut in_ledger: std::collections::HashMap<String, Vec<(i32, i64)>> = std::collections::HashMap::new();
    for r in rows {
        in_ledger.entry(r.event_id).or_default().push((r.kafka_partition, r.kafka_offset));
    }
    let mut expected = std::collections::HashSet::new();
    let mut missing = Vec::new();
    for line in sent.valid_jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("sent JSON");
        let id = v["event_id"].as_str().expect("event_id").to_owned();
        if !in_ledger.contains_key(&id) {
            missing.push(format!("{id} (tenant {})", v["tenant_id"]));
        }
        expected.insert(id);
    }
    let doubled: Vec<String> =
        in_ledger.iter().filter(|(_, at)| at.len() > 1).map(|(id, at)| format!("{id} at (partition, offset) {at:?}")).collect();
    let unknown: Vec<String> = in_ledger.keys().filter(|id| !expected.contains(*id)).cloned().collect();
    let show = |v: &[String]| v.iter().take(20).cloned().collect::<Vec<_>>().join("; ");
    format!(
        "missing from the ledger: {} [{}]\nin the ledger more than once: {} [{}]\nin the ledger but never sent as valid: {} [{}]\n{}",
        missing.len(),
        show(&missing),
        doubled.len(),
        show(&doubled),
        unknown.len(),
        show(&unknown),
        dead_letter_summary(env, &expected)
    )
}

/// The dead-letter topic by reason, and the dead letters of events that were sent as valid.
fn dead_letter_summary(env: &TestEnv, valid_ids: &std::collections::HashSet<String>) -> String {
    use ledger_kafka::dead_letter::{
        HEADER_DETAIL, HEADER_EVENT_ID, HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    };
    use rdkafka::message::{Headers, Message};
    let header = |m: &rdkafka::message::OwnedMessage, key: &str| -> String {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned()))
            .unwrap_or_default()
    };
    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    let mut valid_dead = Vec::new();
    for m in read_topic(env, &env.topics.dead_letter) {
        let reason = header(&m, HEADER_REASON);
        *by_reason.entry(reason.clone()).or_default() += 1;
        let id = header(&m, HEADER_EVENT_ID);
        if valid_ids.contains(&id) {
            valid_dead.push(format!(
                "{id} at {}/{} ({reason}: {})",
                header(&m, HEADER_SOURCE_PARTITION),
                header(&m, HEADER_SOURCE_OFFSET),
                header(&m, HEADER_DETAIL)
            ));
        }
    }
    format!("dead letters by reason: {by_reason:?}\nvalid events in the dead-letter topic: {valid_dead:?}")
}

/// Invariants 1 and 2 after a drain: the ledger holds every distinct valid event once, to the
/// pico-dollar of the independent oracle; every rollup equals the ledger; the dead-letter topic
/// holds exactly the invalid events; the spend topic's tenant totals equal the ledger.
pub async fn assert_ledger_matches(env: &TestEnv, sent: &Sent) {
    let (expected_rows, expected_picos) = oracle_total(&sent.valid_jsonl);
    assert_eq!(expected_rows, sent.distinct_valid, "the oracle priced every valid event");
    let totals = env.totals().await;
    if totals.ledger.requests != expected_rows {
        panic!(
            "ledger rows: every distinct valid event exactly once: {} rows, expected {expected_rows}\n{}",
            totals.ledger.requests,
            ledger_row_differences(env, sent).await
        );
    }
    assert_eq!(totals.ledger.cost.picos(), expected_picos, "ledger cost to the pico-dollar");
    for (rollup, t) in &totals.rollups {
        assert_eq!(*t, totals.ledger, "rollup {rollup:?} must equal the ledger");
    }
    assert_eq!(env.dead_letter_count(), sent.invalid as i64, "dead-letter topic holds exactly the invalid events");
    assert_eq!(spend_topic_totals(env), (expected_picos, expected_rows as i64), "spend topic");
}

/// `ledger process` in the background with small batches and two inserts in flight.
pub fn spawn_processor(env: &TestEnv) -> std::process::Child {
    use std::process::Stdio;
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

/// Invariants 1 and 2 under failure: produces `events` synthetic messages, kills the
/// processor with SIGKILL at a random moment mid-stream `rounds` times, restarting it each time,
/// then drains and checks the ledger, every rollup, the spend topic and the dead-letter topic
/// against the independent pricer.
pub async fn kill_9_rounds(env: &TestEnv, events: u64, rounds: u32) {
    use rand::Rng;
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(env, events, 23, 50_000, 10_000).await;
    let mut rng = rand::thread_rng();
    let mut rows_before = 0;
    for round in 0..rounds {
        let mut child = spawn_processor(env);
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
    assert_ledger_matches(env, &sent).await;
}

/// Sends `events` (JSON objects) with `ledger produce --json` and prices them with
/// `ledger process --until-drained`, accepting events up to ten years old (finance tests use
/// fixed past months, so they never depend on today's date).
pub fn process_events(env: &TestEnv, events: &[serde_json::Value]) {
    let file = std::env::temp_dir().join(format!("events-{}.jsonl", random_suffix()));
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, text).expect("writing the events file");
    env.run_ledger(&["produce", "--json", file.to_str().expect("utf-8 path")]);
    let out = env
        .ledger()
        .args(["process", "--until-drained"])
        .env("LEDGER__PROCESSOR__ACCEPTANCE__MAX_AGE_DAYS", "3650")
        .output()
        .expect("running ledger process");
    assert!(out.status.success(), "ledger process failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(file);
}

/// The independent oracle's priced line for each event (tests/oracle/price_oracle.py): every
/// cost term as exact text. Panics if it rejects any event.
pub fn oracle_priced(events: &[serde_json::Value]) -> Vec<serde_json::Value> {
    oracle_priced_at(events, "catalog/litellm-prices.json")
}

/// [`oracle_priced`] with another catalog (a path from the workspace root, or absolute).
pub fn oracle_priced_at(events: &[serde_json::Value], catalog: &str) -> Vec<serde_json::Value> {
    use std::io::Write;
    let root = workspace_root();
    let mut child = Command::new("python3")
        .arg(root.join("tests/oracle/price_oracle.py"))
        .args(["--catalog", catalog])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running python3 tests/oracle/price_oracle.py");
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle output");
    writer.join().expect("writer thread").expect("writing to the oracle");
    assert!(out.status.success(), "oracle failed");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("oracle JSON line")).collect();
    for l in &lines {
        assert!(l.get("error").is_none(), "the oracle rejected an event: {l}");
    }
    lines
}

/// The python of the virtualenv `tests/venv.sh NAME` makes on first use, with the packages of
/// `tests/NAME/requirements.txt` from PyPI.
pub fn venv_python(name: &str) -> String {
    let out = Command::new(workspace_root().join("tests/venv.sh"))
        .arg(name)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running tests/venv.sh");
    assert!(out.status.success(), "tests/venv.sh {name} failed (python3 with venv and PyPI are needed)");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}
