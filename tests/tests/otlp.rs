//! OTLP acceptance: the real OpenTelemetry Python SDK (from PyPI, in the virtualenv of
//! tests/otel/setup.sh) sends GenAI spans of three providers through its OTLP/HTTP protobuf and
//! OTLP/gRPC exporters, gzip-compressed, to a running `ledger ingest`; each usage span lands in
//! the ledger once (also when re-exported through the other transport), priced exactly as the
//! independent oracle prices it, and spans without usage are skipped and counted.

use std::io::Write;
use std::process::{Command, Stdio};

use ledger_tests::{assert_ledger_matches, workspace_root, Sent, TestEnv};
use serde_json::{json, Value};

#[allow(dead_code)]
mod support;
use support::{metric, Ingest, ACME_KEY};

/// A usage span: (transport, resend via, provider attribute, provider, model, token attributes,
/// the usage event's token fields).
struct UsageSpan {
    transport: &'static str,
    resend_via: Option<&'static str>,
    provider_key: &'static str,
    provider: &'static str,
    model: &'static str,
    attributes: Value,
    expected_tokens: Value,
}

fn usage_spans() -> Vec<UsageSpan> {
    vec![
        // OTLP/HTTP protobuf: current attribute names, then deprecated ones (gen_ai.system,
        // prompt/completion tokens, cache_read_input_tokens).
        UsageSpan {
            transport: "http",
            resend_via: Some("grpc"),
            provider_key: "gen_ai.provider.name",
            provider: "openai",
            model: "gpt-4o-mini",
            attributes: json!({"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.cache_read.input_tokens": 1000,
                               "gen_ai.usage.output_tokens": 300, "ledger.team": "search"}),
            expected_tokens: json!({"input_tokens": 1200, "cache_read_input_tokens": 1000, "output_tokens": 300}),
        },
        UsageSpan {
            transport: "http",
            resend_via: None,
            provider_key: "gen_ai.system",
            provider: "anthropic",
            model: "claude-haiku-4-5",
            attributes: json!({"gen_ai.usage.prompt_tokens": 9000, "gen_ai.usage.cache_read_input_tokens": 8000,
                               "gen_ai.usage.completion_tokens": 100}),
            expected_tokens: json!({"input_tokens": 9000, "cache_read_input_tokens": 8000, "output_tokens": 100}),
        },
        UsageSpan {
            transport: "http",
            resend_via: None,
            provider_key: "gen_ai.provider.name",
            provider: "gcp.gemini",
            model: "gemini-2.5-flash",
            attributes: json!({"gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 900,
                               "gen_ai.usage.reasoning.output_tokens": 600}),
            expected_tokens: json!({"input_tokens": 3000, "output_tokens": 900, "reasoning_output_tokens": 600}),
        },
        // OTLP/gRPC.
        UsageSpan {
            transport: "grpc",
            resend_via: Some("http"),
            provider_key: "gen_ai.provider.name",
            provider: "gcp.gemini",
            model: "gemini-2.5-flash",
            attributes: json!({"gen_ai.usage.input_tokens": 5000, "gen_ai.usage.cache_read.input_tokens": 2000,
                               "gen_ai.usage.output_tokens": 2000, "gen_ai.usage.reasoning.output_tokens": 1500}),
            expected_tokens: json!({"input_tokens": 5000, "cache_read_input_tokens": 2000, "output_tokens": 2000,
                                    "reasoning_output_tokens": 1500}),
        },
        UsageSpan {
            transport: "grpc",
            resend_via: None,
            provider_key: "gen_ai.provider.name",
            provider: "anthropic",
            model: "claude-sonnet-4-5",
            attributes: json!({"gen_ai.usage.input_tokens": 20000, "gen_ai.usage.cache_read.input_tokens": 12000,
                               "gen_ai.usage.cache_creation.input_tokens": 4000, "gen_ai.usage.output_tokens": 700}),
            expected_tokens: json!({"input_tokens": 20000, "cache_read_input_tokens": 12000,
                                    "cache_creation_input_tokens": 4000, "output_tokens": 700}),
        },
        UsageSpan {
            transport: "grpc",
            resend_via: None,
            provider_key: "gen_ai.system",
            provider: "openai",
            model: "gpt-4o",
            attributes: json!({"gen_ai.usage.prompt_tokens": 800, "gen_ai.usage.completion_tokens": 50}),
            expected_tokens: json!({"input_tokens": 800, "output_tokens": 50}),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_exporters_over_http_protobuf_and_grpc_land_in_the_ledger_once() {
    let python = ledger_tests::venv_python("otel");
    let env = TestEnv::new("otlp_sdk");
    env.run_ledger(&["migrate"]);
    let ingest = Ingest::start(&env, &[]);
    let spans = usage_spans();
    let mut specs: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut attributes = s.attributes.clone();
            attributes[s.provider_key] = json!(s.provider);
            attributes["gen_ai.request.model"] = json!(s.model);
            attributes["gen_ai.operation.name"] = json!("chat");
            json!({"transport": s.transport, "resend_via": s.resend_via, "name": format!("chat {}", s.model),
                   "attributes": attributes, "duration_ms": 900})
        })
        .collect();
    // A span without usage on each transport: skipped and counted, never an event.
    for transport in ["http", "grpc"] {
        specs.push(json!({"transport": transport, "name": "GET /search", "attributes": {"http.route": "/search"}}));
    }

    let mut child = Command::new(&python)
        .arg(workspace_root().join("tests/otel/send_genai_spans.py"))
        .args(["--http", &format!("{}/v1/traces", ingest.base), "--grpc", &ingest.base, "--wrong-key-check"])
        .env("LEDGER_KEY", ACME_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running send_genai_spans.py");
    child.stdin.take().expect("stdin").write_all(Value::Array(specs).to_string().as_bytes()).expect("writing the spans");
    let out = child.wait_with_output().expect("sender output");
    assert!(
        out.status.success(),
        "the OpenTelemetry exporters did not all succeed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<Value> =
        String::from_utf8(out.stdout).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(sent.len(), spans.len() + 2);

    let client = reqwest::Client::new();
    let metrics = ingest.metrics(&client).await;
    let resends = spans.iter().filter(|s| s.resend_via.is_some()).count() as u64;
    let usage = spans.len() as u64 + resends;
    for (series, expected) in [
        ("ledger_ingest_otlp_spans_total{outcome=\"usage\"}", usage),
        ("ledger_ingest_otlp_spans_total{outcome=\"skipped\"}", 2),
        ("ledger_ingest_otlp_spans_total{outcome=\"rejected\"}", 0),
        ("ledger_ingest_events_accepted_total", usage),
        // The wrong-key exports: one 401 on HTTP, one UNAUTHENTICATED on gRPC.
        ("ledger_ingest_requests_total{status=\"401\"}", 1),
        ("ledger_ingest_grpc_requests_total{code=\"UNAUTHENTICATED\"}", 1),
    ] {
        assert_eq!(metric(&metrics, series), Some(expected), "{series} in\n{metrics}");
    }
    assert!(metric(&metrics, "ledger_ingest_grpc_requests_total{code=\"OK\"}") >= Some(2), "{metrics}");
    assert!(metric(&metrics, "ledger_ingest_requests_total{status=\"200\"}") >= Some(2), "{metrics}");

    env.run_ledger(&["process", "--until-drained"]);
    let mut expected = Sent { messages: usage, distinct_valid: spans.len() as u64, duplicates: resends, ..Sent::default() };
    for (span, ids) in spans.iter().zip(&sent) {
        let end = ids["end_time_unix_nano"].as_i64().expect("end time");
        let mut event = json!({
            "event_id": format!("otlp-{}-{}", ids["trace_id"].as_str().unwrap(), ids["span_id"].as_str().unwrap()),
            "event_time": chrono::DateTime::from_timestamp_nanos(end).to_rfc3339(),
            "tenant_id": "acme", "provider": span.provider, "request_model": span.model,
        });
        for (k, v) in span.expected_tokens.as_object().expect("token fields") {
            event[k] = v.clone();
        }
        expected.valid_jsonl.push_str(&event.to_string());
        expected.valid_jsonl.push('\n');
    }
    assert_ledger_matches(&env, &expected).await;
}
