//! Dead letters, end to end: events the catalog cannot price (and garbage) are dead-lettered;
//! `ledger dlq inspect` lists them by reason; after the catalog learned the model,
//! `ledger dlq replay` re-feeds them and the ledger counts each exactly once, however often
//! the replay is repeated (before or after the processor caught up). Garbage stays dead.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use ledger_core::UsageEvent;
use ledger_tests::{oracle_total_with, random_suffix, spend_topic_totals, TestEnv};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

const NEW_MODEL: &str = "brand-new-model";
const NEW_MODEL_CATALOG: &str = r#"{
  "brand-new-model": {
    "litellm_provider": "openai",
    "mode": "chat",
    "input_cost_per_token": 1e-06,
    "output_cost_per_token": 2e-06
  }
}
"#;

fn event(id: &str, tenant: &str, model: &str, input: i64, output: i64) -> UsageEvent {
    let at = (chrono::Utc::now() - chrono::Duration::minutes(2)).to_rfc3339();
    serde_json::from_value(json!({
        "event_id": id, "event_time": at, "tenant_id": tenant, "provider": "openai",
        "request_model": model, "input_tokens": input, "output_tokens": output,
    }))
    .expect("a valid usage event")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of the test's ledger for `model`: their event ids.
async fn ledger_ids(env: &TestEnv, model: &str) -> Vec<String> {
    let client = env.clickhouse.client().expect("client");
    client
        .query(&format!("SELECT event_id FROM {}.usage_ledger WHERE request_model = ?", env.clickhouse.database))
        .bind(model)
        .fetch_all::<String>()
        .await
        .expect("ledger ids")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_by_reason_and_replayed_exactly_once() {
    let env = TestEnv::new("dlq");
    env.run_ledger(&["migrate"]);

    // Nothing dead-lettered yet: a clear message, not an error.
    let out = env.run_ledger(&["dlq", "inspect"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("does not exist") || said.contains("is empty"), "missing topic explained: {said}");

    // 6 priceable events, 4 of a model the catalog does not know yet, 2 garbage messages.
    ledger_kafka::admin::ensure_topics(&env.kafka, &ledger_kafka::admin::ledger_topics(&env.topics, 4)).await.expect("topics");
    let prefix = format!("dlq-{}", random_suffix());
    let tenants = ["acme", "globex", "initech", "umbrella"];
    let known: Vec<UsageEvent> = (0..6)
        .map(|i| {
            let model = if i % 2 == 0 { "gpt-4o-mini" } else { "gpt-4o" };
            event(&format!("{prefix}-ok-{i}"), tenants[i % 4], model, 1_000 + i as i64, 200)
        })
        .collect();
    let unknown: Vec<UsageEvent> =
        (0..4).map(|i| event(&format!("{prefix}-new-{i}"), tenants[i % 4], NEW_MODEL, 1_000, 500)).collect();
    let codec = ledger_schema::Codec::<UsageEvent>::new().expect("codec");
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let mut messages: Vec<(String, Vec<u8>)> =
        known.iter().chain(&unknown).map(|e| (e.attribution.tenant_id.clone(), codec.encode(e).expect("encode"))).collect();
    messages.push(("garbage".into(), b"\xC3\x01garbage".to_vec()));
    messages.push(("garbage".into(), b"not avro at all".to_vec()));
    for (key, payload) in &messages {
        let record = FutureRecord::to(&env.topics.usage).key(key.as_str()).payload(payload.as_slice());
        producer.send(record, std::time::Duration::from_secs(30)).await.expect("kafka ack");
    }

    env.run_ledger(&["process", "--until-drained"]);
    let jsonl =
        |events: &[&UsageEvent]| -> String { events.iter().map(|e| serde_json::to_string(e).expect("json") + "\n").collect() };
    let known_jsonl = jsonl(&known.iter().collect::<Vec<_>>());
    let (n, known_picos) = oracle_total_with(&known_jsonl, &["catalog/litellm-prices.json"]);
    assert_eq!(n, 6);
    let before = env.totals().await;
    assert_eq!((before.ledger.requests, before.ledger.cost.picos()), (6, known_picos), "only the priceable events");
    assert_eq!(env.dead_letter_count(), 6, "4 unknown_model + 2 decode_error");

    // inspect --format json: one object per dead letter, with reason and source.
    let out = env.run_ledger(&["dlq", "inspect", "--format", "json"]);
    let records: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        *by_reason.entry(r["reason"].as_str().expect("reason").to_owned()).or_default() += 1;
        assert_eq!(r["source_topic"], json!(env.topics.usage), "{r}");
        assert_eq!(r["source_partition"], r["dlq_partition"], "source partition N dead-letters into N: {r}");
        assert!(r["source_offset"].as_i64().is_some() && r["rejected_at"].as_str().is_some(), "{r}");
    }
    assert_eq!(by_reason, BTreeMap::from([("decode_error".to_owned(), 2), ("unknown_model".to_owned(), 4)]));
    let listed_ids: HashSet<&str> = records
        .iter()
        .filter(|r| r["reason"] == "unknown_model")
        .map(|r| r["event_id"].as_str().expect("unknown_model dead letters carry their event_id"))
        .collect();
    let unknown_ids: HashSet<&str> = unknown.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(listed_ids, unknown_ids);
    assert!(records
        .iter()
        .filter(|r| r["reason"] == "unknown_model")
        .all(|r| r["detail"].as_str().unwrap_or("").contains(NEW_MODEL)));

    // The filters and the table.
    let out = env.run_ledger(&["dlq", "inspect", "--format", "json", "--reason", "decode_error", "--limit", "1"]);
    assert_eq!(stdout(&out).lines().count(), 1, "--limit 1");
    let table = stdout(&env.run_ledger(&["dlq", "inspect"]));
    assert!(table.contains("unknown_model") && table.contains("decode_error") && table.contains(NEW_MODEL), "{table}");
    let bad = env.ledger().args(["dlq", "inspect", "--reason", "no_such_reason"]).output().expect("run");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown_model"), "reasons are checked");

    // Replay needs a confirmation: without a terminal it refuses unless --yes.
    let refused = env.ledger().args(["dlq", "replay", "--reason", "unknown_model"]).output().expect("run");
    assert!(!refused.status.success(), "replay without --yes and without a terminal must refuse");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"), "{}", String::from_utf8_lossy(&refused.stderr));
    let dry = stdout(&env.run_ledger(&["dlq", "replay", "--reason", "unknown_model", "--dry-run"]));
    assert!(dry.contains("would replay 4 events"), "{dry}");
    let one = unknown[0].event_id.as_str();
    let dry = stdout(&env.run_ledger(&["dlq", "replay", "--event-id", one, "--dry-run"]));
    assert!(dry.contains("would replay 1 events"), "{dry}");
    let garbage = stdout(&env.run_ledger(&["dlq", "replay", "--reason", "decode_error", "--dry-run"]));
    assert!(garbage.contains("nothing to replay"), "garbage has no event_id and is never replayed: {garbage}");
    assert_eq!(ledger_tests::read_topic(&env, &env.topics.usage).len(), messages.len(), "dry runs send nothing");

    // The catalog learns the model.
    let dir = std::env::temp_dir().join(format!("ledger-dlq-test-{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let new_catalog = dir.join("dlq-test-prices.json");
    std::fs::write(&new_catalog, NEW_MODEL_CATALOG).expect("write catalog");
    let new_catalog = new_catalog.to_str().expect("utf-8 path").to_owned();
    let catalogs = ["catalog/litellm-prices.json", new_catalog.as_str()];
    let process = || env.run_ledger(&["process", "--until-drained", "--catalog", catalogs[0], "--catalog", catalogs[1]]);

    // Replay twice before the processor runs: the second copy lands in the same partition and
    // is deduplicated by event_id.
    for _ in 0..2 {
        let out = stdout(&env.run_ledger(&["dlq", "replay", "--reason", "unknown_model", "--yes"]));
        assert!(out.contains("replayed 4 events"), "{out}");
    }
    let replayed: Vec<_> = ledger_tests::read_topic(&env, &env.topics.usage)
        .into_iter()
        .filter(|m| {
            use rdkafka::message::{Headers, Message};
            m.headers().is_some_and(|h| h.iter().any(|h| h.key == "ledger.replayed_from"))
        })
        .collect();
    assert_eq!(replayed.len(), 8, "two replays of 4 events, each with its lineage header");
    process();

    let (n, all_picos) = oracle_total_with(&jsonl(&known.iter().chain(&unknown).collect::<Vec<_>>()), &catalogs);
    assert_eq!(n, 10);
    // Independent of the oracle: 4 × (1000 × $1e-6 + 500 × $2e-6) = $0.008.
    assert_eq!(all_picos - known_picos, 8_000_000_000, "the new model's cost");
    let check = |label: &'static str| {
        let env = &env;
        let unknown_ids = &unknown_ids;
        async move {
            let totals = env.totals().await;
            assert_eq!((totals.ledger.requests, totals.ledger.cost.picos()), (10, all_picos), "{label}: ledger");
            for (rollup, t) in &totals.rollups {
                assert_eq!(*t, totals.ledger, "{label}: rollup {rollup:?} equals the ledger");
            }
            let ids = ledger_ids(env, NEW_MODEL).await;
            assert_eq!(ids.len(), 4, "{label}: each replayed event exactly once: {ids:?}");
            assert_eq!(ids.iter().map(String::as_str).collect::<HashSet<_>>(), *unknown_ids, "{label}");
            assert_eq!(spend_topic_totals(env), (all_picos, 10), "{label}: spend topic agrees");
            assert_eq!(env.dead_letter_count(), 6, "{label}: nothing new dead-lettered, nothing removed");
        }
    };
    check("after two replays").await;

    // Replay again once the ledger holds them: nothing is sent, nothing changes.
    let again = stdout(&env.run_ledger(&["dlq", "replay", "--reason", "unknown_model", "--yes"]));
    assert!(again.contains("nothing to replay"), "{again}");
    let all = stdout(&env.run_ledger(&["dlq", "replay", "--yes"]));
    assert!(all.contains("nothing to replay"), "{all}");
    process();
    check("after replaying again").await;

    // Garbage stays in the dead-letter topic.
    let out = env.run_ledger(&["dlq", "inspect", "--format", "json", "--reason", "decode_error"]);
    assert_eq!(stdout(&out).lines().count(), 2);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
