//! HTTP ingest (`ledger ingest`) against the real Kafka and ClickHouse: what it acknowledges
//! is in the ledger exactly once, what it refuses is nowhere, and no input makes it answer 500.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ledger_core::UsageEvent;
use ledger_loadgen::{Generator, GeneratorOptions};
use ledger_tests::{assert_ledger_matches, random_suffix, read_topic, Sent, TestEnv};
use serde_json::{json, Value};

mod support;
use support::{metric, post, Ingest, ACME_KEY, GLOBEX_KEY};

fn generator(seed: u64, tenants: usize) -> Generator {
    Generator::new(GeneratorOptions {
        seed,
        tenants,
        id_prefix: format!("ingest-{}", random_suffix()),
        ..GeneratorOptions::default()
    })
}

fn usage_messages(env: &TestEnv) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic(env, &env.topics.usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_are_in_the_ledger_once_even_when_resent() {
    use rdkafka::Message;
    let env = TestEnv::new("ingest_ok");
    env.run_ledger(&["migrate"]);
    let ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let mut generator = generator(3, 2);
    let events: Vec<UsageEvent> = (0..2_400).map(|_| generator.valid_event()).collect();
    let (acme, globex): (Vec<&UsageEvent>, Vec<&UsageEvent>) = events.iter().partition(|e| e.attribution.tenant_id == "acme");
    assert!(!acme.is_empty() && !globex.is_empty());

    let mut requests = 0u64;
    // Every body shape: arrays, {"events": [...]}, and single events.
    for (key, tenant_events) in [(ACME_KEY, &acme), (GLOBEX_KEY, &globex)] {
        let (singles, batched) = tenant_events.split_at(5.min(tenant_events.len()));
        for e in singles {
            let (status, body) = post(&client, &ingest.url(), Some(key), serde_json::to_vec(e).unwrap()).await;
            assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)), "{body}");
            requests += 1;
        }
        for (i, chunk) in batched.chunks(1_000).enumerate() {
            let body = if i % 2 == 0 { json!(chunk) } else { json!({ "events": chunk }) };
            let (status, answer) = post(&client, &ingest.url(), Some(key), body.to_string()).await;
            assert_eq!((status, answer["accepted"].as_u64()), (202, Some(chunk.len() as u64)), "{answer}");
            requests += 1;
        }
    }
    // A client that timed out resends: same event ids, acknowledged again, counted once.
    let resent: Vec<&UsageEvent> = acme.iter().take(300).copied().collect();
    let (status, answer) = post(&client, &ingest.url(), Some(ACME_KEY), json!(resent).to_string()).await;
    assert_eq!(status, 202, "{answer}");
    assert!(requests > 4);

    // Ingest keys the usage topic by tenant id, like every producer (partitioning and dedupe rely on it).
    let messages = usage_messages(&env);
    assert_eq!(messages.len(), events.len() + resent.len(), "every acknowledged event is in Kafka");
    let codec = ledger_schema::UsageEventCodec::new().unwrap();
    for m in &messages {
        let e = codec.decode(m.payload().expect("payload")).expect("Avro usage event");
        assert_eq!(m.key(), Some(e.attribution.tenant_id.as_bytes()), "message key = tenant_id");
    }

    env.run_ledger(&["process", "--until-drained"]);
    let mut sent = Sent {
        messages: messages.len() as u64,
        distinct_valid: events.len() as u64,
        duplicates: resent.len() as u64,
        invalid: 0,
        valid_jsonl: String::new(),
    };
    for e in &events {
        sent.valid_jsonl.push_str(&serde_json::to_string(e).unwrap());
        sent.valid_jsonl.push('\n');
    }
    assert_ledger_matches(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_write_nothing() {
    let env = TestEnv::new("ingest_refused");
    let ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let mut generator = generator(5, 1);
    let good: Vec<Value> = (0..10).map(|_| serde_json::to_value(generator.valid_event()).unwrap()).collect();

    // Invalid events: 400 naming index and field; the valid events of the batch are not written either.
    let mut batch = good.clone();
    batch[3]["output_tokens"] = json!(-5);
    batch[7]["cache_read_input_tokens"] = json!(10_000_000);
    // Within the absolute cap but beyond twice gpt-4o's 16,384 output tokens (catalog limit).
    for (k, v) in [("provider", json!("openai")), ("request_model", json!("gpt-4o")), ("output_tokens", json!(40_000))] {
        batch[5][k] = v;
    }
    batch[5].as_object_mut().unwrap().remove("response_model");
    batch[5]["reasoning_output_tokens"] = json!(0);
    batch[8]["input_tokenz"] = json!(10);
    batch[9].as_object_mut().unwrap().remove("tenant_id");
    let (status, answer) = post(&client, &ingest.url(), Some(ACME_KEY), json!(batch).to_string()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_events");
    let mut found: Vec<(u64, String)> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["index"].as_u64().expect("index"), e["field"].as_str().expect("field").to_owned()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            (3, "output_tokens".to_owned()),
            (5, "output_tokens".to_owned()),
            (7, "input_tokens".to_owned()),
            (8, "input_tokenz".to_owned()),
            (9, "tenant_id".to_owned())
        ]
    );
    // Not JSON at all.
    let (status, answer) = post(&client, &ingest.url(), Some(ACME_KEY), "{\"event_id\": ").await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_body")), "{answer}");

    // Oversize: more than 1,000 events, or more than 1 MiB.
    let many: Vec<Value> = (0..1_001).map(|_| good[0].clone()).collect();
    let (status, answer) = post(&client, &ingest.url(), Some(ACME_KEY), json!(many).to_string()).await;
    assert_eq!((status, answer["error"].as_str()), (413, Some("too_many_events")), "{answer}");
    let mut huge = good[0].clone();
    huge["tags"] = json!({ "blob": "x".repeat(1024 * 1024) });
    let (status, answer) = post(&client, &ingest.url(), Some(ACME_KEY), huge.to_string()).await;
    assert_eq!((status, answer["error"].as_str()), (413, Some("payload_too_large")), "{answer}");

    // Keys: none or unknown -> 401; another tenant's key -> 403 for the whole batch.
    let body = json!(good).to_string();
    let (status, _) = post(&client, &ingest.url(), None, body.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(&client, &ingest.url(), Some("not-a-key-of-anyone-at-all"), body.clone()).await;
    assert_eq!(status, 401);
    let (status, answer) = post(&client, &ingest.url(), Some(GLOBEX_KEY), body.clone()).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden_tenant")), "{answer}");
    assert_eq!(answer["errors"].as_array().map(Vec::len), Some(good.len()));

    assert_eq!(usage_messages(&env).len(), 0, "no refused request wrote anything");

    // The same events with the right key go through.
    let (status, _) = post(&client, &ingest.url(), Some(ACME_KEY), body).await;
    assert_eq!(status, 202);
    assert_eq!(usage_messages(&env).len(), good.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_answers_503_and_acknowledges_nothing() {
    let env = TestEnv::new("ingest_kafka_down");
    // Nothing listens on port 1: the shared Kafka is untouched.
    let ingest = Ingest::start(&env, &[("LEDGER__KAFKA__BROKERS", "127.0.0.1:1"), ("LEDGER__INGEST__ACK_TIMEOUT_MS", "1500")]);
    let client = reqwest::Client::new();
    let mut generator = generator(9, 1);
    let events: Vec<UsageEvent> = (0..50).map(|_| generator.valid_event()).collect();
    let resp = client.post(ingest.url()).bearer_auth(ACME_KEY).body(json!(events).to_string()).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some(), "503 says when to retry");
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(answer["error"], "kafka_unavailable");
    assert!(answer.get("accepted").is_none(), "nothing acknowledged: {answer}");
    // Invalid input is still answered 400 without Kafka: validation comes first.
    let (status, _) = post(&client, &ingest.url(), Some(ACME_KEY), "[]").await;
    assert_eq!(status, 400);
}

/// Random JSON values (any shape, nested).
fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        (-1e30f64..1e30).prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("2026-11-28T17:00:00Z")),
        Just(json!("-0.5")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "event_id",
    "event_time",
    "tenant_id",
    "team",
    "tags",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "routed_from_model",
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "service_tier",
    "provided_cost_usd",
    "latency_ms",
    "status",
];

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, Value),
    Remove(usize),
    Add(String, Value),
}

#[test]
fn fuzzed_requests_never_get_a_500() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let env = TestEnv::new("ingest_fuzz");
    let ingest = Ingest::start(&env, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let mut generator = generator(13, 1);
    let base = serde_json::to_value(generator.valid_event()).unwrap();

    let mutation = prop_oneof![
        (0..FIELDS.len(), arbitrary_json()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (0..FIELDS.len()).prop_map(Mutation::Remove),
        ("[a-z_]{1,12}", arbitrary_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
    ];
    let body = prop_oneof![
        // Mutated valid events, alone or in a batch.
        (proptest::collection::vec(mutation, 0..4), any::<bool>()).prop_map(move |(mutations, batched)| {
            let mut e = base.clone();
            for m in mutations {
                match m {
                    Mutation::Set(i, v) => e[FIELDS[i]] = v,
                    Mutation::Remove(i) => {
                        e.as_object_mut().unwrap().remove(FIELDS[i]);
                    }
                    Mutation::Add(k, v) => e[k.as_str()] = v,
                }
            }
            e["event_id"] =
                if e["event_id"].is_string() { json!(format!("fuzz-{}", random_suffix())) } else { e["event_id"].clone() };
            let body = if batched { json!([e, e]) } else { e };
            body.to_string().into_bytes()
        }),
        // Any JSON at all.
        arbitrary_json().prop_map(|v| v.to_string().into_bytes()),
        // Not JSON.
        proptest::collection::vec(any::<u8>(), 0..200),
    ];

    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
    runner
        .run(&body, |bytes| {
            let (status, answer) = runtime.block_on(async {
                let resp =
                    client.post(ingest.url()).bearer_auth(ACME_KEY).body(bytes.clone()).send().await.expect("the server answers");
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            });
            *statuses.borrow_mut().entry(status).or_insert(0u32) += 1;
            prop_assert!(
                [202u16, 400, 403, 413].contains(&status),
                "status {} for {}: {}",
                status,
                String::from_utf8_lossy(&bytes),
                answer
            );
            let parsed: Value = serde_json::from_str(&answer).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
            if status != 202 {
                prop_assert!(
                    parsed["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "every error explains itself: {}",
                    answer
                );
            }
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner();
    eprintln!("fuzz statuses: {statuses:?}");
    assert!(statuses.get(&400).copied().unwrap_or(0) > 50, "the fuzz exercises rejections: {statuses:?}");
    assert!(statuses.contains_key(&202), "the fuzz also produces acceptable events: {statuses:?}");
    ingest.wait_healthy();
}

#[test]
fn openapi_document_is_served_and_parses() {
    let env = TestEnv::new("ingest_openapi");
    let ingest = Ingest::start(&env, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let text = runtime.block_on(async {
        reqwest::get(format!("{}/openapi.yaml", ingest.base)).await.expect("GET").text().await.expect("text")
    });
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    assert!(doc["paths"]["/v1/usage"]["post"]["responses"]["503"].is_mapping());
    assert!(doc["paths"]["/v1/usage"]["post"]["responses"]["429"].is_mapping());
    assert!(doc["components"]["responses"]["RateLimited"]["headers"]["Retry-After"].is_mapping());
    assert!(doc["paths"]["/v1/traces"]["post"]["requestBody"]["content"]["application/x-protobuf"].is_mapping());
    assert!(doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/cloudevents-batch+json"].is_mapping());
    // The documented event fields are exactly the schema's.
    let mut documented: std::collections::BTreeSet<String> = doc["components"]["schemas"]["UsageEvent"]["properties"]
        .as_mapping()
        .expect("properties")
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let avsc: Value = serde_json::from_str(
        &std::fs::read_to_string(ledger_tests::workspace_root().join("schemas/avro/usage_event.avsc")).expect("avsc"),
    )
    .expect("avsc JSON");
    let schema_fields: std::collections::BTreeSet<String> =
        avsc["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect();
    assert!(documented.remove("decision_id"), "the echo of POST /v1/decide is documented (and not stored)");
    assert_eq!(documented, schema_fields);
    assert!(doc["paths"]["/v1/decide"]["post"]["responses"]["200"].is_mapping());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_genai_spans_are_in_the_ledger_once() {
    let env = TestEnv::new("ingest_otlp");
    env.run_ledger(&["migrate"]);
    let ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let end = chrono::Utc::now() - chrono::Duration::seconds(5);
    let end_nanos = end.timestamp_nanos_opt().expect("nanos");
    let trace = random_suffix();
    let attr_s = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let attr_i = |k: &str, v: i64| json!({"key": k, "value": {"intValue": v.to_string()}});
    // (span id, provider, model, input, cache read, output, reasoning)
    let genai = [
        ("0000000000000001", "openai", "gpt-4o-mini", 1_200, 1_000, 300, 0),
        ("0000000000000002", "openai", "o4-mini", 5_000, 0, 2_000, 1_500),
        ("0000000000000003", "anthropic", "claude-haiku-4-5", 9_000, 8_000, 100, 0),
    ];
    let mut spans: Vec<Value> = genai
        .iter()
        .map(|(id, provider, model, input, cache, output, reasoning)| {
            json!({"traceId": format!("{trace}{trace}"), "spanId": id, "name": "chat",
                   "startTimeUnixNano": (end_nanos - 800_000_000).to_string(), "endTimeUnixNano": end_nanos.to_string(),
                   "attributes": [attr_s("gen_ai.provider.name", provider), attr_s("gen_ai.request.model", model),
                                  attr_s("gen_ai.operation.name", "chat"),
                                  attr_i("gen_ai.usage.input_tokens", *input), attr_i("gen_ai.usage.cache_read.input_tokens", *cache),
                                  attr_i("gen_ai.usage.output_tokens", *output), attr_i("gen_ai.usage.reasoning.output_tokens", *reasoning),
                                  attr_s("ledger.team", "search")]})
        })
        .collect();
    // Not a GenAI span: ignored. An inconsistent GenAI span: reported as rejected.
    spans.push(
        json!({"traceId": format!("{trace}{trace}"), "spanId": "0000000000000004", "endTimeUnixNano": end_nanos.to_string(),
                      "attributes": [attr_s("http.route", "/search")]}),
    );
    spans.push(json!({"traceId": format!("{trace}{trace}"), "spanId": "0000000000000005", "endTimeUnixNano": end_nanos.to_string(),
                      "attributes": [attr_s("gen_ai.provider.name", "openai"), attr_s("gen_ai.request.model", "gpt-4o"),
                                     attr_i("gen_ai.usage.input_tokens", 10), attr_i("gen_ai.usage.cache_read.input_tokens", 11)]}));
    let request = json!({"resourceSpans": [{"resource": {"attributes": [attr_s("service.name", "search-api")]},
                                             "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]});
    let url = format!("{}/v1/traces", ingest.base);
    for _ in 0..2 {
        // The second export repeats the first (an exporter retry): counted once.
        let (status, answer) = post(&client, &url, Some(ACME_KEY), request.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["partialSuccess"]["rejectedSpans"], 1, "{answer}");
    }
    // Protobuf and gRPC are tests/tests/otlp.rs; other encodings are refused.
    let text = client.post(&url).bearer_auth(ACME_KEY).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(text.status().as_u16(), 415);

    env.run_ledger(&["process", "--until-drained"]);
    let mut sent = Sent { messages: 6, distinct_valid: 3, duplicates: 3, invalid: 0, valid_jsonl: String::new() };
    for (id, provider, model, input, cache, output, reasoning) in genai {
        let expected = json!({"event_id": format!("otlp-{trace}{trace}-{id}"), "event_time": end.to_rfc3339(), "tenant_id": "acme",
                              "provider": provider, "request_model": model, "input_tokens": input,
                              "cache_read_input_tokens": cache, "output_tokens": output, "reasoning_output_tokens": reasoning});
        sent.valid_jsonl.push_str(&expected.to_string());
        sent.valid_jsonl.push('\n');
    }
    assert_ledger_matches(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_ingest_gracefully() {
    let env = TestEnv::new("ingest_sigterm");
    let mut ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let event = generator(17, 1).valid_event();
    let (status, _) = post(&client, &ingest.url(), Some(ACME_KEY), serde_json::to_vec(&event).unwrap()).await;
    assert_eq!(status, 202);
    let pid = ingest.child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = ingest.child.wait().expect("wait");
        (status, ingest)
    })
    .await
    .unwrap()
    .0;
    assert!(exit.success(), "ledger ingest exits cleanly on SIGTERM: {exit}");
    assert_eq!(usage_messages(&env).len(), 1);
}

/// Posts `body` with `key` until the answer has `status`; the time it took.
async fn until_status(client: &reqwest::Client, url: &str, key: &str, body: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (got, answer) = post(client, url, Some(key), body.to_owned()).await;
        if got == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "still {got} after {within:?}, expected {status}: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_added_and_revoked_while_running_take_effect_without_a_restart() {
    let env = TestEnv::new("ingest_keys");
    let mut ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let mut generator = generator(19, 1);
    let mut body = || serde_json::to_string(&generator.valid_event()).unwrap();
    let pid = ingest.child.id();

    // A key added while the server runs works within the reload interval (1 s).
    let key = ingest.keys(&env, &["add", "--tenant", "acme", "--name", "reload test"]);
    let id = key[3..15].to_owned();
    let took = until_status(&client, &ingest.url(), &key, &body(), 202, Duration::from_secs(5)).await;
    eprintln!("new key accepted after {took:?}");

    // Revoked: 401 within about a second, saying so; the other keys keep working.
    ingest.keys(&env, &["revoke", &id]);
    let took = until_status(&client, &ingest.url(), &key, &body(), 401, Duration::from_secs(3)).await;
    eprintln!("revoked key refused after {took:?}");
    let (status, answer) = post(&client, &ingest.url(), Some(&key), body()).await;
    assert_eq!(status, 401);
    assert!(answer["message"].as_str().unwrap_or_default().contains("revoked"), "{answer}");
    assert_eq!(post(&client, &ingest.url(), Some(ACME_KEY), body()).await.0, 202);

    // A broken file is logged and the keys in force stay, until the file is fixed.
    let good = std::fs::read_to_string(&ingest.keys_file).unwrap();
    std::fs::write(&ingest.keys_file, "[[keys]]\nbroken = ").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&ingest.metrics(&client).await, "ledger_ingest_key_reload_failures_total") != Some(1) {
        assert!(Instant::now() < deadline, "the broken file was never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(post(&client, &ingest.url(), Some(ACME_KEY), body()).await.0, 202, "keys in force stay");
    assert_eq!(post(&client, &ingest.url(), Some(&key), body()).await.0, 401, "and the revocation with them");
    std::fs::write(&ingest.keys_file, good).unwrap();
    // An imported key (of the plain-text era) is revoked by its id like any other.
    let acme_id = imported_key_id(&ingest.keys_file, "acme");
    ingest.keys(&env, &["revoke", &acme_id]);
    until_status(&client, &ingest.url(), ACME_KEY, &body(), 401, Duration::from_secs(3)).await;
    let mut globex: Value = serde_json::from_str(&body()).unwrap();
    globex["tenant_id"] = json!("globex");
    assert_eq!(post(&client, &ingest.url(), Some(GLOBEX_KEY), globex.to_string()).await.0, 202);
    let text = ingest.metrics(&client).await;
    assert_eq!(metric(&text, "ledger_ingest_api_keys_active"), Some(1), "{text}");
    assert!(metric(&text, "ledger_ingest_key_reloads_total").unwrap_or(0) >= 3, "{text}");

    assert_eq!(ingest.child.try_wait().unwrap(), None, "the same process throughout");
    assert_eq!(ingest.child.id(), pid);
}

/// The id of the imported key of `tenant` in a keys file.
fn imported_key_id(file: &std::path::Path, tenant: &str) -> String {
    let text = std::fs::read_to_string(file).expect("keys file");
    let entry = text
        .split("[[keys]]")
        .find(|e| e.contains(&format!("tenant_id = \"{tenant}\"")) && e.contains("imported = true"))
        .unwrap_or_else(|| panic!("no imported key of {tenant} in\n{text}"));
    entry.lines().find_map(|l| l.strip_prefix("id = \"")?.strip_suffix('"')).expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_rate_limit_a_key_gets_429_and_what_was_acknowledged_is_in_the_ledger_once() {
    let env = TestEnv::new("ingest_rate");
    env.run_ledger(&["migrate"]);
    let ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let key = ingest.keys(&env, &["add", "--tenant", "acme", "--rate-limit", "40", "--burst", "60"]);
    ingest.wait_keys_active(&client, 3).await;
    let mut generator = generator(23, 1);
    let mut acknowledged: Vec<UsageEvent> = Vec::new();
    let (mut limited, mut honoured, mut waited) = (0u64, 0u32, false);
    // A client sending batches of 10 as fast as it can for about 3 s (at most 400 requests),
    // waiting Retry-After after every 10th refusal.
    let started = Instant::now();
    for _ in 0..400 {
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        let batch: Vec<UsageEvent> = (0..10).map(|_| generator.valid_event()).collect();
        let resp = client.post(ingest.url()).bearer_auth(&key).json(&batch).send().await.expect("request");
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().expect("whole seconds"));
        let answer: Value = resp.json().await.expect("JSON");
        match status {
            202 => {
                assert_eq!(answer["accepted"], 10);
                acknowledged.extend(batch);
                honoured += u32::from(std::mem::take(&mut waited));
            }
            429 => {
                limited += 1;
                let secs = retry_after.expect("429 carries Retry-After");
                assert!(secs >= 1, "rounded up to whole seconds");
                assert_eq!((answer["error"].as_str(), answer["retry_after_secs"].as_u64()), (Some("rate_limited"), Some(secs)));
                assert!(answer["message"].as_str().unwrap().contains("40 events per second"), "{answer}");
                if limited % 10 == 0 {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    waited = true;
                }
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    let elapsed_ms = started.elapsed().as_millis() as usize;
    assert!(limited > 0, "the client went over its limit");
    assert!(honoured > 0, "a client that waits Retry-After gets through");
    // The bucket's 60 plus 40/s over the run (and one batch of slack for the clock).
    let allowed = 60 + 40 * elapsed_ms / 1000 + 10;
    assert!(acknowledged.len() <= allowed, "{} acknowledged in {elapsed_ms} ms, at most {allowed}", acknowledged.len());

    // More events than the burst could never pass: 413, not 429. Other keys have their own limit.
    let over: Vec<UsageEvent> = (0..61).map(|_| generator.valid_event()).collect();
    let (status, answer) = post(&client, &ingest.url(), Some(&key), json!(over).to_string()).await;
    assert_eq!((status, answer["error"].as_str()), (413, Some("too_many_events")), "{answer}");
    let other = generator.valid_event();
    assert_eq!(post(&client, &ingest.url(), Some(ACME_KEY), json!([other]).to_string()).await.0, 202);
    acknowledged.push(other);

    let text = ingest.metrics(&client).await;
    assert_eq!(metric(&text, "ledger_ingest_requests_total{status=\"429\"}"), Some(limited), "{text}");
    assert_eq!(metric(&text, "ledger_ingest_requests_total{status=\"413\"}"), Some(1), "{text}");
    assert_eq!(metric(&text, "ledger_ingest_events_accepted_total"), Some(acknowledged.len() as u64), "{text}");

    // Nothing of a refused request reached Kafka, and the ledger holds each acknowledged event once.
    assert_eq!(usage_messages(&env).len(), acknowledged.len(), "Kafka holds exactly the acknowledged events");
    env.run_ledger(&["process", "--until-drained"]);
    let n = acknowledged.len() as u64;
    let mut sent = Sent { messages: n, distinct_valid: n, ..Sent::default() };
    for e in &acknowledged {
        sent.valid_jsonl.push_str(&serde_json::to_string(e).unwrap());
        sent.valid_jsonl.push('\n');
    }
    assert_ledger_matches(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_answers_events_and_the_time_to_kafka_acknowledgement() {
    let env = TestEnv::new("ingest_metrics");
    let ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let mut generator = generator(29, 1);
    let one = json!([generator.valid_event()]).to_string();
    let three = json!([generator.valid_event(), generator.valid_event(), generator.valid_event()]).to_string();
    assert_eq!(post(&client, &ingest.url(), Some(ACME_KEY), one.clone()).await.0, 202);
    assert_eq!(post(&client, &ingest.url(), Some(ACME_KEY), three).await.0, 202);
    assert_eq!(post(&client, &ingest.url(), Some(ACME_KEY), "[]").await.0, 400);
    assert_eq!(post(&client, &ingest.url(), None, one.clone()).await.0, 401);
    assert_eq!(post(&client, &ingest.url(), Some(GLOBEX_KEY), one).await.0, 403);

    let resp = client.get(format!("{}/metrics", ingest.base)).send().await.expect("GET /metrics");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for (series, value) in [
        ("ledger_ingest_requests_total{status=\"202\"}", 2),
        ("ledger_ingest_requests_total{status=\"400\"}", 1),
        ("ledger_ingest_requests_total{status=\"401\"}", 1),
        ("ledger_ingest_requests_total{status=\"403\"}", 1),
        ("ledger_ingest_requests_total{status=\"429\"}", 0),
        ("ledger_ingest_events_accepted_total", 4),
        ("ledger_ingest_kafka_ack_seconds_count", 2),
        ("ledger_ingest_kafka_ack_seconds_bucket{le=\"+Inf\"}", 2),
        ("ledger_ingest_kafka_ack_seconds_bucket{le=\"30\"}", 2),
        ("ledger_ingest_api_keys_active", 2),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series} in\n{text}");
    }
    let sum = text.lines().find_map(|l| l.strip_prefix("ledger_ingest_kafka_ack_seconds_sum ")).expect("the histogram's sum");
    assert!(sum != "0.000000", "acknowledgements take time: {sum}");
    // `/metrics`, `/healthz` and the like are not counted as ingest requests.
    assert_eq!(usage_messages(&env).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_serves_https_with_the_configured_certificate() {
    let env = TestEnv::new("ingest_tls");
    let dir = std::env::temp_dir().join(format!("ledger-test-tls-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // A self-signed test certificate for 127.0.0.1, made now.
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("running openssl (scripts/install-deps.sh installs it)");
    assert!(made.success(), "openssl could not make a test certificate");
    let tls_env =
        [("LEDGER__INGEST__TLS_CERT_FILE", cert.to_str().unwrap()), ("LEDGER__INGEST__TLS_KEY_FILE", key.to_str().unwrap())];
    let ingest = Ingest::spawn(&env, &tls_env, "https");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).expect("PEM certificate");
    let client = reqwest::Client::builder().add_root_certificate(ca).build().expect("HTTPS client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.get(format!("{}/healthz", ingest.base)).send().await {
            Ok(r) if r.status() == 200 => break,
            other => assert!(Instant::now() < deadline, "no HTTPS answer from {}: {other:?}", ingest.base),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let event = generator(31, 1).valid_event();
    let (status, answer) = post(&client, &ingest.url(), Some(ACME_KEY), json!([event]).to_string()).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(1)), "{answer}");
    assert_eq!(usage_messages(&env).len(), 1);
    let text = ingest.metrics(&client).await;
    assert_eq!(metric(&text, "ledger_ingest_requests_total{status=\"202\"}"), Some(1), "{text}");

    // Only HTTPS is served, and a client that does not trust the certificate gets nothing.
    let plain = reqwest::Client::new().get(ingest.base.replace("https://", "http://") + "/healthz").send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200), "plain HTTP is not served");
    let untrusting = reqwest::Client::new().get(format!("{}/healthz", ingest.base)).send().await;
    assert!(untrusting.is_err(), "the handshake fails without trusting the certificate");
    let _ = std::fs::remove_dir_all(&dir);
}
