//! The Rust SDK end to end: events built with every provider constructor, emitted through
//! `ledger_sdk::Emitter` into the real Kafka, processed by `ledger process`, are in the ledger
//! exactly once, priced to the pico-dollar of the independent oracle — also when the emitter
//! is shut down with events still queued and in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_core::UsageEvent;
use ledger_kafka::KafkaConfig;
use ledger_sdk::{
    AnthropicUsage, BedrockUsage, Emitter, EmitterConfig, EventBuilder, FailureReason, GeminiUsage, OpenAiUsage, OverflowPolicy,
};
use ledger_tests::{assert_ledger_matches, random_suffix, Sent, TestEnv};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Realistic usage of the four provider conventions, with cache and reasoning tokens.
fn provider_events(n: usize, seed: u64) -> Vec<UsageEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let run = random_suffix();
    (0..n)
        .map(|i| {
            let input = rng.gen_range(1..20_000u64);
            let output = rng.gen_range(1..4_000u64);
            let cached = input * rng.gen_range(0..90) / 100;
            let builder = match i % 4 {
                0 => EventBuilder::openai(
                    if i % 8 == 0 { "gpt-4o-mini" } else { "o4-mini" },
                    OpenAiUsage {
                        prompt_tokens: input,
                        completion_tokens: output,
                        cached_tokens: cached,
                        reasoning_tokens: if i % 8 == 0 { 0 } else { output / 2 },
                    },
                ),
                1 => {
                    let writes = rng.gen_range(0..5_000u64);
                    EventBuilder::anthropic(
                        "claude-haiku-4-5",
                        AnthropicUsage {
                            input_tokens: input,
                            output_tokens: output,
                            cache_read_input_tokens: cached,
                            cache_creation_input_tokens: writes,
                            cache_creation_1h_input_tokens: writes / 4,
                        },
                    )
                }
                2 => EventBuilder::gemini(
                    "gemini-2.5-flash",
                    GeminiUsage {
                        prompt_token_count: input,
                        candidates_token_count: output,
                        cached_content_token_count: cached,
                        thoughts_token_count: rng.gen_range(0..2_000),
                        tool_use_prompt_token_count: rng.gen_range(0..100),
                    },
                ),
                _ => EventBuilder::bedrock(
                    "anthropic.claude-3-5-haiku-20241022-v1:0",
                    BedrockUsage {
                        input_tokens: input,
                        output_tokens: output,
                        cache_read_input_tokens: cached,
                        cache_write_input_tokens: rng.gen_range(0..3_000),
                    },
                ),
            };
            let builder = builder.tenant(["acme", "globex", "initech"][i % 3]).team("search").feature("sdk-test");
            let builder = if i % 10 == 0 { builder.routed_from_model("gpt-4o") } else { builder };
            builder.event_id(format!("sdk-{run}-{i}")).build().expect("valid event")
        })
        .collect()
}

fn emitter_config(env: &TestEnv) -> EmitterConfig {
    EmitterConfig {
        kafka: env.kafka.clone(),
        topic: env.topics.usage.clone(),
        queue_capacity: 1_000_000,
        overflow: OverflowPolicy::BlockWithTimeout(Duration::from_secs(30)),
        ..EmitterConfig::default()
    }
}

fn sent_of(events: &[UsageEvent]) -> Sent {
    let mut sent = Sent { messages: events.len() as u64, distinct_valid: events.len() as u64, ..Sent::default() };
    for e in events {
        sent.valid_jsonl.push_str(&serde_json::to_string(e).unwrap());
        sent.valid_jsonl.push('\n');
    }
    sent
}

async fn create_topics(env: &TestEnv) {
    ledger_kafka::admin::ensure_topics(&env.kafka, &ledger_kafka::admin::ledger_topics(&env.topics, 4))
        .await
        .expect("creating topics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitted_events_are_in_the_ledger_exactly_once() {
    let env = TestEnv::new("sdk_e2e");
    env.run_ledger(&["migrate"]);
    create_topics(&env).await;
    let events = provider_events(4_000, 1);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&failures);
    let emitter =
        Emitter::with_failure_handler(emitter_config(&env), move |f| recorded.lock().unwrap().push(f.clone())).expect("emitter");
    let (first, second) = events.split_at(1_000);
    for e in first {
        emitter.emit(e.clone()).expect("emit");
    }
    emitter.flush(Duration::from_secs(60)).expect("flush delivers the first part");
    assert_eq!(emitter.metrics().delivered, first.len() as u64);
    for e in second {
        emitter.emit(e.clone()).expect("emit");
    }
    // A resend (same event id) is counted once by the ledger.
    for e in &events[..100] {
        emitter.emit(e.clone()).expect("emit");
    }
    let metrics = tokio::task::spawn_blocking(move || emitter.shutdown(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("shutdown delivers everything");
    assert_eq!(metrics.accepted, 4_100);
    assert_eq!(metrics.delivered, 4_100);
    assert_eq!((metrics.failed, metrics.outstanding, metrics.queued), (0, 0, 0));
    assert!(failures.lock().unwrap().is_empty());

    env.run_ledger(&["process", "--until-drained"]);
    let mut sent = sent_of(&events);
    sent.messages += 100;
    sent.duplicates = 100;
    assert_ledger_matches(&env, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_the_events_still_in_flight() {
    let env = TestEnv::new("sdk_shutdown");
    env.run_ledger(&["migrate"]);
    create_topics(&env).await;
    let events = provider_events(30_000, 2);
    let emitter = Emitter::new(emitter_config(&env)).expect("emitter");
    for e in &events {
        emitter.emit(e.clone()).expect("emit");
    }
    // No flush: straight to shutdown while the queue and librdkafka still hold events.
    let in_flight_at_shutdown = emitter.metrics().outstanding;
    let metrics = tokio::task::spawn_blocking(move || emitter.shutdown(Duration::from_secs(120)))
        .await
        .unwrap()
        .expect("shutdown delivers everything");
    eprintln!("outstanding when shutdown began: {in_flight_at_shutdown}");
    assert_eq!((metrics.accepted, metrics.delivered, metrics.failed), (30_000, 30_000, 0));

    env.run_ledger(&["process", "--until-drained"]);
    assert_ledger_matches(&env, &sent_of(&events)).await;
}

#[test]
fn undeliverable_events_are_reported_not_lost_silently() {
    // Nothing listens on port 1; the shared Kafka is untouched.
    let mut kafka = KafkaConfig { brokers: "127.0.0.1:1".to_owned(), ..KafkaConfig::default() };
    kafka.options.insert("message.timeout.ms".to_owned(), "1000".to_owned());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&failures);
    let emitter = Emitter::with_failure_handler(
        EmitterConfig { kafka, topic: format!("test.sdk_down.{}", random_suffix()), ..EmitterConfig::default() },
        move |f| recorded.lock().unwrap().push(f.clone()),
    )
    .expect("emitter");
    let events = provider_events(20, 3);
    for e in &events {
        emitter.emit(e.clone()).expect("emit does not wait for Kafka");
    }
    // Every event fails within the message timeout; the flush returns once all are settled.
    emitter.flush(Duration::from_secs(30)).expect("all settled (failed) within the deadline");
    let metrics = emitter.metrics();
    assert_eq!((metrics.accepted, metrics.delivered, metrics.failed, metrics.outstanding), (20, 0, 20, 0));
    let failures = failures.lock().unwrap().clone();
    let mut ids: Vec<&str> = failures.iter().map(|f| f.event_id.as_str()).collect();
    ids.sort();
    let mut expected: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    expected.sort();
    assert_eq!(ids, expected, "each failed event is reported by id, for a resend");
    assert!(failures.iter().all(|f| matches!(f.reason, FailureReason::Kafka(_))));
}
