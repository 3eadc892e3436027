//! CloudEvents ingest (`POST /v1/events`) against the real Kafka and ClickHouse: structured and
//! batch mode in OpenMeter's shape land in the ledger once each (a resend of the same `source` +
//! `id` counts once), priced as the independent oracle prices them; a batch with an invalid
//! event writes nothing.

use ledger_tests::{assert_ledger_matches, random_suffix, Sent, TestEnv};
use serde_json::{json, Value};

#[allow(dead_code)]
mod support;
use support::{Ingest, ACME_KEY};

async fn post_ce(client: &reqwest::Client, url: &str, content_type: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .bearer_auth(ACME_KEY)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_and_batch_cloudevents_are_in_the_ledger_once() {
    let env = TestEnv::new("ingest_cloudevents");
    env.run_ledger(&["migrate"]);
    let ingest = Ingest::start(&env, &[]);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events", ingest.base);
    let source = format!("chat-app-{}", random_suffix());
    let time = (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc3339();
    let ce = |id: &str, data: Value| {
        json!({"specversion": "1.0", "type": "llm.usage", "id": id, "source": source, "time": time,
               "subject": "customer-1", "data": data})
    };
    // OpenMeter's per-call shape with OpenAI's usage names (token counts as strings, as in OpenMeter's examples).
    let first = ce(
        "0001",
        json!({"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": "1200", "completion_tokens": "300",
               "total_tokens": "1500", "cache_read_input_tokens": 1000, "team": "search"}),
    );
    let batch = json!([
        ce(
            "0002",
            json!({"provider": "anthropic", "request_model": "claude-haiku-4-5", "input_tokens": 9000,
                          "cache_read_input_tokens": 8000, "output_tokens": 100})
        ),
        // OpenMeter's one-event-per-token-type shape: two events, two ledger rows.
        ce("0003", json!({"provider": "gcp.gemini", "model": "gemini-2.5-flash", "tokens": 4000, "type": "input"})),
        ce("0004", json!({"provider": "gcp.gemini", "model": "gemini-2.5-flash", "tokens": 700, "type": "output"})),
        // A resend of the structured event: same source and id.
        first.clone(),
    ]);

    let (status, answer) = post_ce(&client, &url, "application/cloudevents+json", &first).await;
    assert_eq!((status, answer["accepted"].clone()), (202, json!(1)), "{answer}");
    let (status, answer) = post_ce(&client, &url, "application/cloudevents-batch+json", &batch).await;
    assert_eq!((status, answer["accepted"].clone()), (202, json!(4)), "{answer}");
    // A resend through OpenMeter's path.
    let alias = format!("{}/api/v1/events", ingest.base);
    let (status, answer) = post_ce(&client, &alias, "application/cloudevents+json", &batch[0]).await;
    assert_eq!(status, 202, "{answer}");

    // A batch with one invalid event writes nothing; the problem names the CloudEvent's field.
    let bad = json!([
        ce("0005", json!({"provider": "openai", "model": "gpt-4o", "input_tokens": 10})),
        ce("0006", json!({"provider": "openai", "model": "gpt-4o", "input_token": 10})),
    ]);
    let (status, answer) = post_ce(&client, &url, "application/cloudevents-batch+json", &bad).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        (answer["errors"][0]["index"].clone(), answer["errors"][0]["field"].clone()),
        (json!(1), json!("data.input_token"))
    );
    // The wrong mode for the media type, another tenant, and an unsupported media type.
    let (status, answer) = post_ce(&client, &url, "application/cloudevents+json", &bad).await;
    assert_eq!((status, answer["error"].clone()), (400, json!("invalid_body")), "{answer}");
    let foreign = ce("0007", json!({"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "tenant_id": "globex"}));
    let (status, answer) = post_ce(&client, &url, "application/cloudevents+json", &foreign).await;
    assert_eq!((status, answer["errors"][0]["field"].clone()), (403, json!("data.tenant_id")), "{answer}");
    let (status, _) = post_ce(&client, &url, "application/xml", &first).await;
    assert_eq!(status, 415);

    env.run_ledger(&["process", "--until-drained"]);
    let mut sent = Sent { messages: 6, distinct_valid: 4, duplicates: 2, ..Sent::default() };
    let id = |n: &str| format!("ce:{}:{source}:{n}", source.len());
    for event in [
        json!({"event_id": id("0001"), "provider": "openai", "request_model": "gpt-4o-mini", "input_tokens": 1200,
               "cache_read_input_tokens": 1000, "output_tokens": 300}),
        json!({"event_id": id("0002"), "provider": "anthropic", "request_model": "claude-haiku-4-5", "input_tokens": 9000,
               "cache_read_input_tokens": 8000, "output_tokens": 100}),
        json!({"event_id": id("0003"), "provider": "gcp.gemini", "request_model": "gemini-2.5-flash", "input_tokens": 4000}),
        json!({"event_id": id("0004"), "provider": "gcp.gemini", "request_model": "gemini-2.5-flash", "output_tokens": 700}),
    ] {
        let mut event = event;
        event["event_time"] = json!(time);
        event["tenant_id"] = json!("acme");
        sent.valid_jsonl.push_str(&event.to_string());
        sent.valid_jsonl.push('\n');
    }
    assert_ledger_matches(&env, &sent).await;
}
