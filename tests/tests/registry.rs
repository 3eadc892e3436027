//! The Confluent wire format end to end, on the real Kafka, ClickHouse and schema registry
//! (`scripts/stack.sh up --registry`, Apicurio's Confluent-compatible API): events in both
//! framings, mixed in one topic, from `ledger produce`, the SDK and `ledger ingest`, land in the
//! ledger exactly once with the schema fetched from the registry; configured ids work without a
//! registry; an unknown schema id is a dead letter saying so; the registry is also reached over
//! HTTPS with the secure profile's CA.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger_core::UsageEvent;
use ledger_kafka::dead_letter::{HEADER_DETAIL, HEADER_REASON};
use ledger_loadgen::{Generator, GeneratorOptions};
use ledger_registry::{value_subject, RegistryClient, RegistryConfig, SchemaSettings};
use ledger_schema::{AvroRecord, Codec, Framing, WireFormat};
use ledger_sdk::{Emitter, EmitterConfig};
use ledger_tests::{
    assert_ledger_matches, produce_synthetic, random_suffix, read_topic, running_registry, workspace_root, SecureFiles, Sent,
    TestEnv,
};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;

/// An id no registry of these tests hands out.
const UNKNOWN_ID: u32 = 2_000_000_000;

/// `count` valid synthetic events with their own ids.
fn events(count: usize, seed: u64) -> Vec<UsageEvent> {
    let mut generator = Generator::new(GeneratorOptions {
        seed,
        id_prefix: format!("registry-{}", random_suffix()),
        ..GeneratorOptions::default()
    });
    (0..count).map(|_| generator.valid_event()).collect()
}

/// Adds distinct valid events to what the ledger must hold.
fn expect_valid(sent: &mut Sent, events: &[UsageEvent]) {
    for e in events {
        sent.valid_jsonl.push_str(&serde_json::to_string(e).expect("json"));
        sent.valid_jsonl.push('\n');
    }
    sent.messages += events.len() as u64;
    sent.distinct_valid += events.len() as u64;
}

/// The environment of a `ledger` command in the Confluent framing with the registry at `url`.
fn confluent_with_registry(url: &str) -> Vec<(&'static str, String)> {
    vec![("LEDGER__SCHEMA__FRAMING", "confluent".to_owned()), ("LEDGER__SCHEMA__REGISTRY__URL", url.to_owned())]
}

/// Runs `ledger ARGS` with `vars` set; panics with its output when it fails.
fn ledger(env: &TestEnv, args: &[&str], vars: &[(&str, String)]) -> std::process::Output {
    let mut cmd = env.ledger();
    cmd.args(args).envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let out = cmd.output().expect("running ledger");
    assert!(
        out.status.success(),
        "ledger {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ledger produce --json` of `events`, with `vars` set.
fn produce_json<'e>(env: &TestEnv, events: impl IntoIterator<Item = &'e UsageEvent>, vars: &[(&str, String)]) {
    let file = std::env::temp_dir().join(format!("ledger-registry-{}.jsonl", random_suffix()));
    let lines: Vec<String> = events.into_iter().map(|e| serde_json::to_string(e).expect("json")).collect();
    std::fs::write(&file, lines.join("\n")).expect("writing the events");
    ledger(env, &["produce", "--quiet", "--json", file.to_str().expect("utf-8 path")], vars);
    std::fs::remove_file(&file).expect("removing the events file");
}

/// Sends `events` in the Confluent wire format with schema id `id`, straight to the topic.
async fn send_with_id(env: &TestEnv, events: &[UsageEvent], id: u32) {
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let codec = Codec::<UsageEvent>::new().expect("codec");
    for e in events {
        let payload = codec.encode_framed(e, WireFormat::Confluent { schema_id: id }).expect("encode");
        let record = FutureRecord::to(&env.topics.usage).key(&e.attribution.tenant_id).payload(&payload);
        let delivery = ledger_kafka::producer::enqueue(&producer, record).await.expect("enqueue");
        delivery.await.expect("delivery future").expect("kafka ack");
    }
}

/// The usage topic's messages by framing: single-object ones, and Confluent ones per schema id.
fn framings(env: &TestEnv) -> (u64, BTreeMap<u32, u64>) {
    let (mut single, mut confluent) = (0, BTreeMap::new());
    for m in read_topic(env, &env.topics.usage) {
        let payload = m.payload().unwrap_or_default();
        match ledger_schema::confluent_schema_id(payload) {
            Some(id) => *confluent.entry(id).or_default() += 1,
            None => {
                assert_eq!(payload.first(), Some(&0xC3), "neither framing");
                single += 1;
            }
        }
    }
    (single, confluent)
}

/// The dead letters' (reason, detail) headers.
fn dead_letters(env: &TestEnv) -> Vec<(String, String)> {
    let header = |m: &rdkafka::message::OwnedMessage, key: &str| {
        let h = m.headers().and_then(|h| h.iter().find(|h| h.key == key).and_then(|h| h.value));
        String::from_utf8_lossy(h.unwrap_or_default()).into_owned()
    };
    read_topic(env, &env.topics.dead_letter).iter().map(|m| (header(m, HEADER_REASON), header(m, HEADER_DETAIL))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_framings_in_one_topic_land_once_with_the_schema_from_the_registry() {
    let registry = running_registry();
    let env = TestEnv::new("registry_mixed");
    env.run_ledger(&["migrate"]);
    // Single-object, with resent duplicates and invalid messages.
    let mut sent = produce_synthetic(&env, 2_000, 31, 20_000, 10_000).await;
    // Confluent, from `ledger produce`, which registers the schema under <topic>-value: new
    // events, and resends of single-object ones (same ids: counted once across framings).
    let fresh = events(1_500, 32);
    let resent: Vec<UsageEvent> =
        sent.valid_jsonl.lines().take(100).map(|l| serde_json::from_str(l).expect("sent event")).collect();
    produce_json(&env, fresh.iter().chain(&resent), &confluent_with_registry(&registry));
    expect_valid(&mut sent, &fresh);
    sent.messages += 100;
    sent.duplicates += 100;
    // Confluent, from the SDK.
    let from_sdk = events(200, 33);
    let schema = SchemaSettings {
        framing: Framing::Confluent,
        registry: Some(RegistryConfig::new(&registry)),
        ..SchemaSettings::default()
    };
    let emitter = Emitter::new(EmitterConfig {
        kafka: env.kafka.clone(),
        topic: env.topics.usage.clone(),
        schema,
        ..EmitterConfig::default()
    })
    .expect("emitter");
    for e in &from_sdk {
        emitter.emit(e.clone()).expect("emit");
    }
    emitter.shutdown(Duration::from_secs(30)).expect("every event delivered");
    expect_valid(&mut sent, &from_sdk);
    // Confluent with an id the registry never handed out: dead letters.
    send_with_id(&env, &events(5, 34), UNKNOWN_ID).await;
    sent.messages += 5;
    sent.invalid += 5;

    // The processor knows no id of its own: every Confluent schema comes from the registry.
    ledger(&env, &["process", "--until-drained"], &[("LEDGER__SCHEMA__REGISTRY__URL", registry.clone())]);
    assert_ledger_matches(&env, &sent).await;

    let client = RegistryClient::new(&RegistryConfig::new(&registry)).expect("registry client");
    let id = client.lookup(&value_subject(&env.topics.usage), UsageEvent::AVSC).await.expect("lookup").expect("registered");
    let (single, confluent) = framings(&env);
    assert_eq!(single, 2_000, "the single-object messages");
    assert_eq!(confluent, BTreeMap::from([(id, 1_800), (UNKNOWN_ID, 5)]), "Confluent messages by schema id");
    let unknown: Vec<_> =
        dead_letters(&env).into_iter().filter(|(_, d)| d.contains(&format!("schema id {UNKNOWN_ID}"))).collect();
    assert_eq!(unknown.len(), 5, "{unknown:?}");
    for (reason, detail) in &unknown {
        assert_eq!(reason, "decode_error");
        assert!(detail.contains("unknown to the schema registry at http://127.0.0.1:"), "{detail}");
    }
    // `ledger reconcile` reads the Confluent resends back (gaps in the ledger's offsets) and
    // finds them counted already.
    let out = ledger(&env, &["reconcile", "--format", "json"], &[("LEDGER__SCHEMA__REGISTRY__URL", registry.clone())]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reconcile JSON");
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["deduplicated_resends"].as_u64(), Some(sent.duplicates), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_ids_need_no_registry_and_unknown_ids_are_dead_letters() {
    let env = TestEnv::new("registry_ids");
    env.run_ledger(&["migrate"]);
    let pinned = [("LEDGER__SCHEMA__IDS__7", "current".to_owned())];
    let mut sent = produce_synthetic(&env, 500, 41, 0, 0).await;
    let confluent = events(500, 42);
    produce_json(&env, &confluent, &[pinned[0].clone(), ("LEDGER__SCHEMA__FRAMING", "confluent".to_owned())]);
    expect_valid(&mut sent, &confluent);
    send_with_id(&env, &events(3, 43), 8).await;
    sent.messages += 3;
    sent.invalid += 3;

    ledger(&env, &["process", "--until-drained"], &pinned);
    assert_ledger_matches(&env, &sent).await;
    let (single, by_id) = framings(&env);
    assert_eq!((single, by_id), (500, BTreeMap::from([(7, 500), (8, 3)])), "`ledger produce` wrote the configured id");
    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 3);
    for (reason, detail) in letters {
        assert_eq!(reason, "decode_error");
        assert!(
            detail.contains(
                "Confluent schema id 8: unknown (not among the configured schema.ids, and no schema.registry is configured)"
            ),
            "{detail}"
        );
    }
}

/// `ledger ingest` on a free port with `vars`, killed on drop.
struct Ingest(std::process::Child, String, std::path::PathBuf);

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.2);
        let _ = std::fs::remove_file(self.2.with_extension("toml.lock"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_writes_the_confluent_framing_with_the_registry_id() {
    let registry = running_registry();
    let env = TestEnv::new("registry_ingest");
    env.run_ledger(&["migrate"]);
    let keys = std::env::temp_dir().join(format!("ledger-registry-keys-{}.toml", random_suffix()));
    let keys_arg = keys.to_str().expect("utf-8 path");
    let key = String::from_utf8(env.run_ledger(&["ingest", "keys", "add", "--tenant", "acme", "--api-keys", keys_arg]).stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let mut cmd: Command = env.ledger();
    cmd.args(["ingest", "--listen", &format!("127.0.0.1:{port}"), "--api-keys", keys_arg]);
    cmd.envs(confluent_with_registry(&registry)).stdout(Stdio::null()).stderr(Stdio::inherit());
    let ingest = Ingest(cmd.spawn().expect("starting ledger ingest"), format!("http://127.0.0.1:{port}"), keys.clone());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{}/healthz", ingest.1)).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "ledger ingest did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut posted = events(50, 51);
    for e in &mut posted {
        e.attribution.tenant_id = "acme".into();
    }
    let answer = client
        .post(format!("{}/v1/usage", ingest.1))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(serde_json::to_string(&posted).expect("json"))
        .send()
        .await
        .expect("POST /v1/usage");
    assert_eq!(answer.status().as_u16(), 202, "{}", answer.text().await.unwrap_or_default());
    drop(ingest);

    let registered = RegistryClient::new(&RegistryConfig::new(&registry)).expect("client");
    let id = registered.lookup(&value_subject(&env.topics.usage), UsageEvent::AVSC).await.expect("lookup").expect("registered");
    assert_eq!(framings(&env), (0, BTreeMap::from([(id, 50)])), "every event in the Confluent framing");
    ledger(&env, &["process", "--until-drained"], &[("LEDGER__SCHEMA__REGISTRY__URL", registry)]);
    let mut sent = Sent::default();
    expect_valid(&mut sent, &posted);
    assert_ledger_matches(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_over_https_is_verified_against_the_profiles_ca() {
    let files = SecureFiles::of_stack();
    let doc: toml::Table = std::fs::read_to_string(&files.config).expect("secure ledger.toml").parse().expect("TOML");
    let url = doc
        .get("schema")
        .and_then(|s| s.get("registry"))
        .and_then(|r| r.get("url"))
        .and_then(|u| u.as_str())
        .unwrap_or_else(|| {
            panic!(
                "{} has no [schema.registry]: start the stack with `scripts/stack.sh up --secure --registry`",
                files.config.display()
            )
        })
        .to_owned();
    assert!(url.starts_with("https://"), "{url}");
    let config = RegistryConfig { ca_file: Some(files.ca.clone()), ..RegistryConfig::new(&url) };
    let client = RegistryClient::new(&config).expect("client");
    let subject = format!("test.registry_tls.{}-value", random_suffix());
    let id = client.register(&subject, UsageEvent::AVSC).await.expect("registered over HTTPS");
    let fetched = RegistryClient::new(&config).expect("client").schema_by_id(id).await.expect("fetched").expect("known id");
    let schema = ledger_schema::schema_of::<UsageEvent>().expect("schema");
    assert!(matches!(schema.id_writer(&fetched.schema), ledger_schema::IdWriter::Current), "the registry keeps the schema");
    // Without the profile's CA the certificate is refused: verification is always on.
    let untrusted = RegistryClient::new(&RegistryConfig { retries: 0, ..RegistryConfig::new(&url) }).expect("client");
    let err = untrusted.schema_by_id(id).await.expect_err("an unknown CA").to_string();
    assert!(err.contains("certificate") || err.contains("UnknownIssuer"), "{err}");
}

/// An external reader: ClickHouse's `AvroConfluent` input format decodes the messages `ledger
/// produce` wrote, fetching the schema from the registry by the id in each message, as a
/// ClickHouse Kafka table would. The stack's ClickHouse 18.16 has no Avro formats at all (it
/// answers "Unknown format AvroConfluent"), so a current ClickHouse runs in process (chDB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_avro_confluent_decodes_our_records_by_schema_id() {
    let registry = running_registry();
    let python = ledger_tests::venv_python("chdb");
    let env = TestEnv::new("registry_chdb");
    let sent = events(40, 61);
    produce_json(&env, &sent, &confluent_with_registry(&registry));
    let messages = read_topic(&env, &env.topics.usage);
    assert_eq!(messages.len(), sent.len());
    let file = std::env::temp_dir().join(format!("ledger-registry-{}.avro-confluent", random_suffix()));
    let bytes: Vec<u8> = messages.iter().flat_map(|m| m.payload().unwrap_or_default().to_vec()).collect();
    assert_eq!(bytes.first(), Some(&ledger_schema::CONFLUENT_MAGIC));
    std::fs::write(&file, &bytes).expect("writing the messages");
    let out = Command::new(&python)
        .arg(workspace_root().join("tests/chdb/read_avro_confluent.py"))
        .args([file.to_str().expect("utf-8 path"), &registry])
        .output()
        .expect("running read_avro_confluent.py");
    std::fs::remove_file(&file).expect("removing the messages file");
    assert!(out.status.success(), "chDB could not read the messages:\n{}", String::from_utf8_lossy(&out.stderr));
    let read: BTreeMap<String, serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON row"))
        .map(|row| (row["event_id"].as_str().expect("event_id").to_owned(), row))
        .collect();
    assert_eq!(read.len(), sent.len(), "{read:?}");
    for e in &sent {
        let row = &read[&e.event_id];
        let expected = serde_json::json!({
            "event_id": e.event_id,
            "event_time": e.event_time.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "tenant_id": e.attribution.tenant_id,
            "request_model": e.request_model,
            "input_tokens": e.input_tokens,
            "output_tokens": e.output_tokens,
            "provided_cost_usd": e.provided_cost_usd.as_ref().map(|m| m.to_string()),
        });
        assert_eq!(row, &expected);
    }
}
