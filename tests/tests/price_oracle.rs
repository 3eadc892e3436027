//! Cross-check of `ledger price` against the independent Python oracle (`tests/oracle/price_oracle.py`),
//! both written from `docs/pricing.md`.
//!
//! A few thousand seeded random usage events (valid and invalid, around every long-context
//! boundary, with service tiers, cache and reasoning tokens, response-model overrides and routing)
//! are priced by both against a three-source price history, and every output line must agree
//! exactly: cost terms, total, savings, price version, model key and rejection reason.
//!
//! Needs `python3` (3.11+, standard library only). Run with
//! `cargo test -p ledger-tests --test price_oracle -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use ledger_tests::{ledger_bin, workspace_root};

const SEED: u64 = 0x0000_05ee_d0f0_ac1e;
const RANDOM_EVENTS: usize = 4000;
/// The instant the modified catalog takes effect.
const NEXT_FROM: &str = "2026-06-01T00:00:00Z";
/// The instant the repository catalog takes effect when the LiteLLM release file is the oldest source.
const REPO_FROM: &str = "2000-01-01T00:00:00Z";

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("ledger-price-oracle-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command with `input` on stdin and returns (exit code, stdout, stderr).
fn run(cmd: &mut Command, input: &str) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Catalogs

fn is_priced_field(k: &str) -> bool {
    [
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "output_cost_per_reasoning_token",
    ]
    .iter()
    .any(|f| k.starts_with(f))
}

/// A random price as number text: mantissa up to 6 digits and an exponent, so that many need
/// rounding to 12 fractional digits (some of them exact ties).
fn random_price_text(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0 => format!("{}5e-{}", rng.gen_range(0..100), rng.gen_range(13..15)), // ties and near-ties
        1 => format!("{}E-{}", rng.gen_range(1..1000), rng.gen_range(6..10)),
        2 => format!("0.{:0>15}", rng.gen_range(1..10_000_000u64)),
        _ => format!("{}e-{:02}", rng.gen_range(1..100_000), rng.gen_range(6..15)),
    }
}

/// Synthetic entries of the modified catalog, as raw JSON text (exact number text matters).
const SYNTHETIC: &[(&str, &str)] = &[
    // docs/pricing.md's example: input tiers at 128k and 272k, output tier at 128k only; plus tier
    // variants, combined variants, the 1h cache write with its own long-context price, and a
    // reasoning price whose tier variant must be ignored.
    (
        "oracle-tiered",
        r#"{"litellm_provider":"openai","mode":"chat",
            "input_cost_per_token":1e-06,"input_cost_per_token_above_128k_tokens":2e-06,
            "input_cost_per_token_above_272k_tokens":3e-06,
            "output_cost_per_token":4e-06,"output_cost_per_token_above_128k_tokens":5e-06,
            "input_cost_per_token_priority":1.5e-06,"input_cost_per_token_above_128k_tokens_priority":2.5e-06,
            "output_cost_per_token_flex":2e-06,"output_cost_per_token_above_272k_tokens_flex":2.25e-06,
            "input_cost_per_token_batches":5e-07,
            "cache_read_input_token_cost":1e-07,"cache_read_input_token_cost_above_272k_tokens_priority":9e-07,
            "cache_read_input_token_cost_above_200k_tokens":1.1e-07,
            "cache_creation_input_token_cost":1.25e-06,
            "cache_creation_input_token_cost_above_1hr":6e-06,
            "cache_creation_input_token_cost_above_1hr_above_200k_tokens":7e-06,
            "cache_creation_input_token_cost_above_1hr_priority":6.5e-06,
            "output_cost_per_reasoning_token":8e-06,"output_cost_per_reasoning_token_priority":99,
            "input_cost_per_second":1,"output_cost_per_image":2}"#,
    ),
    // Float artifacts and half-to-even ties in the number text.
    (
        "oracle-rounding",
        r#"{"litellm_provider":"openai","mode":"chat",
            "input_cost_per_token":2.0000000000000002E-7,"output_cost_per_token":0.0000029999900000000002,
            "cache_read_input_token_cost":1.5e-12,"cache_creation_input_token_cost":2.5e-12,
            "cache_creation_input_token_cost_above_1hr":0.0000000000005,
            "output_cost_per_reasoning_token":3.4999999999995e-6,
            "input_cost_per_token_batches":1E-6,"output_cost_per_token_batches":1,
            "input_cost_per_token_flex":0.000001000000000000000000001,"output_cost_per_token_flex":0.0000000000015000000000000001}"#,
    ),
    // Large prices for the overflow boundary of Decimal(38, 12).
    ("oracle-huge", r#"{"litellm_provider":"openai","input_cost_per_token":9000000,"output_cost_per_token":9000000.0}"#),
    ("oracle-huge10", r#"{"litellm_provider":"openai","input_cost_per_token":1e7,"output_cost_per_token":10000000}"#),
    // Only in the new source.
    ("oracle-only-new", r#"{"litellm_provider":"openai","input_cost_per_token":3e-06,"output_cost_per_token":1.5e-05}"#),
    // Not priceable (no output price): the older source keeps pricing `gpt-4o-mini`.
    ("gpt-4o-mini", r#"{"litellm_provider":"openai","input_cost_per_token":1e-03,"output_cost_per_cha":1}"#),
    // Not priceable either (per-request only).
    ("oracle-per-request", r#"{"litellm_provider":"openai","input_cost_per_request":0.01,"output_cost_per_request":0.02}"#),
    // alias_of: a valid alias (its own price fields ignored), and the load errors of the contract.
    ("oracle-alias", r#"{"alias_of":"oracle-tiered","input_cost_per_token":1}"#),
    ("oracle-alias-missing", r#"{"alias_of":"no-such-entry"}"#),
    ("oracle-alias-chain", r#"{"alias_of":"oracle-alias"}"#),
    ("oracle-alias-unpriced", r#"{"alias_of":"oracle-per-request"}"#),
    ("oracle-alias-number", r#"{"alias_of":5}"#),
    // tiered_pricing: three tiers (the first range written with a fraction-free float), tier fields
    // replacing the entry's, a service-tier price of the entry kept, a reasoning price in one tier.
    (
        "oracle-tiered-pricing",
        r#"{"litellm_provider":"dashscope","input_cost_per_token":9e-06,"cache_read_input_token_cost":1e-07,
            "input_cost_per_token_batches":5e-07,
            "tiered_pricing":[{"input_cost_per_token":1e-06,"output_cost_per_token":4e-06,"range":[0,32000.0]},
              {"input_cost_per_token":2e-06,"output_cost_per_token":8e-06,"cache_read_input_token_cost":2e-07,"range":[32000.0,128000]},
              {"input_cost_per_token":3e-06,"output_cost_per_token":1.2e-05,"output_cost_per_reasoning_token":2e-05,
               "input_cost_per_query":1,"range":[128000,256000]}]}"#,
    ),
    (
        "oracle-tiered-gap",
        r#"{"tiered_pricing":[{"input_cost_per_token":1e-06,"output_cost_per_token":1e-06,"range":[0,1000]},{"input_cost_per_token":2e-06,"output_cost_per_token":2e-06,"range":[2000,3000]}]}"#,
    ),
    (
        "oracle-tiered-fraction",
        r#"{"tiered_pricing":[{"input_cost_per_token":1e-06,"output_cost_per_token":1e-06,"range":[0,1000.5]}]}"#,
    ),
    (
        "oracle-tiered-late-start",
        r#"{"tiered_pricing":[{"input_cost_per_token":1e-06,"output_cost_per_token":1e-06,"range":[10,1000]}]}"#,
    ),
    ("oracle-tiered-search", r#"{"tiered_pricing":[{"input_cost_per_query":0.005,"max_results_range":[0,25]}]}"#),
    (
        "oracle-tiered-no-output",
        r#"{"input_cost_per_token":1e-06,"tiered_pricing":[{"input_cost_per_token":1e-06,"range":[0,1000]}]}"#,
    ),
    // off_peak_pricing: weekday windows with a range to midnight, the whole weekend, a field the
    // contract does not use (windows are UTC).
    (
        "oracle-off-peak",
        r#"{"litellm_provider":"deepseek","input_cost_per_token":6e-07,"output_cost_per_token":2e-06,"cache_read_input_token_cost":6e-08,
            "off_peak_pricing":{"input_cost_per_token":3e-07,"output_cost_per_token":1e-06,"weekday_timezone":"Asia/Shanghai",
              "windows":[{"hours_utc":["00:00-01:00","16:30-00:00"],"weekdays":[1,2,3,4,5]},{"hours_utc":"00:00-00:00","weekdays":[6,7]}]}}"#,
    ),
    (
        "oracle-off-peak-bad",
        r#"{"input_cost_per_token":1e-06,"output_cost_per_token":1e-06,"off_peak_pricing":{"windows":[{"hours_utc":"06:00-04:00","weekdays":[1]}]}}"#,
    ),
    // xAI's inclusive long-context threshold, with tier prices.
    (
        "oracle-xai",
        r#"{"litellm_provider":"xai","input_cost_per_token":2e-06,"output_cost_per_token":1e-05,"input_cost_per_token_above_128k_tokens":4e-06,
            "output_cost_per_token_above_128k_tokens":2e-05,"cache_read_input_token_cost":5e-07,"input_cost_per_token_batches":1e-06,
            "output_cost_per_token_batches":5e-06,"input_cost_per_token_above_128k_tokens_batches":2e-06}"#,
    ),
    // The tier ratio of step 1.3: cache and reasoning prices of a tier the entry prices only for
    // input and output, with a ratio of 1/7 (rounded) and a half-way tie; a zero plain price.
    (
        "oracle-ratio",
        r#"{"litellm_provider":"anthropic","input_cost_per_token":7e-06,"output_cost_per_token":1.4e-05,
            "cache_read_input_token_cost":1e-06,"cache_creation_input_token_cost":3.5e-11,"cache_creation_input_token_cost_above_1hr":6e-06,
            "output_cost_per_reasoning_token":2.1e-05,"input_cost_per_token_batches":3.5e-06,"output_cost_per_token_batches":7e-06,
            "input_cost_per_token_priority":1e-06,"output_cost_per_token_flex":3e-06,
            "input_cost_per_token_above_200k_tokens":1.4e-05,"input_cost_per_token_above_200k_tokens_priority":2e-06}"#,
    ),
    (
        "oracle-zero",
        r#"{"input_cost_per_token":0,"output_cost_per_token":1e-06,"input_cost_per_token_batches":1e-07,"cache_read_input_token_cost":1e-07}"#,
    ),
];

/// Keys of the repository catalog that the modified catalog drops (older sources keep them).
const DROPPED: &[&str] = &["o3-mini", "claude-haiku-4-5", "deepseek-chat", "vertex_ai/claude-3-haiku"];

/// Writes the modified catalog: the repository catalog with every price replaced by random
/// number text, a few entries dropped, and the synthetic entries added.
fn write_next_catalog(repo: &Map<String, Value>, path: &Path, rng: &mut StdRng) {
    let mut out = String::from("{\n");
    let mut first = true;
    for (key, entry) in repo {
        if DROPPED.contains(&key.as_str()) || SYNTHETIC.iter().any(|(k, _)| k == key) {
            continue;
        }
        let Value::Object(fields) = entry else { continue };
        if !first {
            out.push_str(",\n");
        }
        first = false;
        write!(out, "  {}: {{", serde_json::to_string(key).unwrap()).unwrap();
        for (i, (f, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let text =
                if is_priced_field(f) && v.is_number() { random_price_text(rng) } else { serde_json::to_string(v).unwrap() };
            write!(out, "\n    {}: {text}", serde_json::to_string(f).unwrap()).unwrap();
        }
        out.push_str("\n  }");
    }
    for (key, raw) in SYNTHETIC {
        write!(out, ",\n  {}: {raw}", serde_json::to_string(key).unwrap()).unwrap();
    }
    out.push_str("\n}\n");
    serde_json::from_str::<Value>(&out).expect("modified catalog is valid JSON");
    std::fs::write(path, out).unwrap();
}

fn load_object(path: &Path) -> Map<String, Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match serde_json::from_str(&text).unwrap() {
        Value::Object(m) => m,
        _ => panic!("{} is not a JSON object", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// Events

const BOUNDARIES: &[u64] = &[32, 100, 128, 200, 256, 272, 512];
const TIERS: &[Option<&str>] =
    &[None, None, None, Some("default"), Some("batch"), Some("priority"), Some("flex"), Some("unknown"), Some("ultrafast")];
const PROVIDERS: &[&str] = &["openai", "anthropic", "gemini", "vertex_ai", "azure", "bedrock", "mistral", "groq", "acme-router"];

fn random_time(rng: &mut StdRng) -> String {
    use chrono::{DateTime, SecondsFormat};
    let special = [
        "2026-06-01T00:00:00Z",
        "2026-06-01T00:00:00.000Z",
        "2026-06-01T02:00:00+02:00",
        "2026-05-31T20:00:00-04:00",
        "2026-05-31T23:59:59.999999999Z",
        "2026-06-01T01:59:59.999+02:00",
        "2026-06-01T00:00:00.000000001Z",
        "2000-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999999999Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ];
    match rng.gen_range(0..10) {
        0..=2 => (*special.choose(rng).unwrap()).to_owned(),
        3..=6 => {
            // within a month of the switch
            let t = 1_780_272_000i64 + rng.gen_range(-2_600_000..2_600_000);
            let dt = DateTime::from_timestamp(t, rng.gen_range(0..1_000_000_000)).unwrap();
            dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        }
        _ => {
            let t = rng.gen_range(800_000_000i64..1_830_000_000);
            let dt = DateTime::from_timestamp(t, 0).unwrap();
            if rng.gen_bool(0.5) {
                dt.to_rfc3339_opts(SecondsFormat::Secs, true)
            } else {
                dt.with_timezone(&chrono::FixedOffset::east_opt(rng.gen_range(-12..14) * 3600).unwrap())
                    .to_rfc3339_opts(SecondsFormat::Millis, false)
            }
        }
    }
}

fn random_input(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..10) {
        0..=3 => {
            let n = *BOUNDARIES.choose(rng).unwrap() * 1000;
            [n - 1, n, n, n + 1, n + 1].choose(rng).copied().unwrap()
        }
        4 => 0,
        5..=7 => rng.gen_range(1..20_000),
        _ => rng.gen_range(1..2_000_000),
    }
}

/// A model name for the event, in one of the forms the lookup must handle.
fn name_form(rng: &mut StdRng, key: &str) -> (String, String) {
    let provider = (*PROVIDERS.choose(rng).unwrap()).to_owned();
    match (key.split_once('/'), rng.gen_range(0..6)) {
        // `p/m`: the provider prefix comes from the event's provider
        (Some((x, rest)), 0 | 1) => (rest.to_owned(), x.to_owned()),
        // `x/rest`: a router prefix in front of the key
        (_, 2) => (format!("myrouter/{key}"), provider),
        _ => (key.to_owned(), provider),
    }
}

struct Pools {
    repo: Vec<String>,
    data: Vec<String>,
    synthetic: Vec<String>,
}

impl Pools {
    fn model(&self, rng: &mut StdRng) -> String {
        match rng.gen_range(0..20) {
            0..=8 => self.repo.choose(rng).unwrap().clone(),
            9..=14 if !self.data.is_empty() => self.data.choose(rng).unwrap().clone(),
            15..=17 => self.synthetic.choose(rng).unwrap().clone(),
            18 => "gpt-4.1-mini".to_owned(),
            _ => ["no-such-model", "openai/no-such", "gpt-4o-mini", "oracle-only-new"].choose(rng).unwrap().to_string(),
        }
    }
}

fn random_event(rng: &mut StdRng, i: usize, pools: &Pools) -> Value {
    let key = pools.model(rng);
    let (model, provider) = name_form(rng, &key);
    let input = random_input(rng);
    let mut left = input;
    let mut part = |rng: &mut StdRng| -> u64 {
        if left == 0 || rng.gen_bool(0.5) {
            return 0;
        }
        let v = rng.gen_range(0..=left);
        left -= v;
        v
    };
    let (cr, cw, cw1h) = (part(rng), part(rng), part(rng));
    let output: u64 = if rng.gen_bool(0.1) { 0 } else { rng.gen_range(0..50_000) };
    let reasoning = if output > 0 && rng.gen_bool(0.4) { rng.gen_range(0..=output) } else { 0 };
    let mut e = json!({
        "event_id": format!("ev-{i}"),
        "event_time": random_time(rng),
        "tenant_id": format!("tenant-{}", rng.gen_range(0..5)),
        "provider": provider,
        "request_model": model,
        "input_tokens": input,
        "output_tokens": output,
    });
    let o = e.as_object_mut().unwrap();
    // token fields default to 0 when absent
    for (f, v) in [
        ("cache_read_input_tokens", cr),
        ("cache_creation_input_tokens", cw),
        ("cache_creation_1h_input_tokens", cw1h),
        ("reasoning_output_tokens", reasoning),
    ] {
        if v > 0 || rng.gen_bool(0.3) {
            o.insert(f.into(), json!(v));
        }
    }
    if let Some(t) = *TIERS.choose(rng).unwrap() {
        o.insert("service_tier".into(), json!(t));
    }
    if rng.gen_bool(0.15) {
        let r = match rng.gen_range(0..4) {
            0 => String::new(),
            1 => "unknown-response-model".to_owned(),
            _ => pools.model(rng),
        };
        o.insert("response_model".into(), json!(r));
    }
    if rng.gen_bool(0.2) {
        let r = if rng.gen_bool(0.2) { "unknown-routed-model".to_owned() } else { pools.model(rng) };
        o.insert("routed_from_model".into(), json!(r));
    }
    if rng.gen_bool(0.2) {
        o.insert("team".into(), json!("search"));
        o.insert("tags".into(), json!({"feature": "chat", "env": "prod"}));
        o.insert("provided_cost_usd".into(), json!("0.001234"));
        o.insert("latency_ms".into(), json!(rng.gen_range(1..5000)));
        o.insert("response_model_version".into(), json!("ignored-unknown-field"));
    }
    if rng.gen_bool(0.05) {
        o.insert("response_model".into(), Value::Null);
        o.insert("service_tier".into(), Value::Null);
        o.insert("routed_from_model".into(), Value::Null);
    }
    e
}

fn base(id: &str) -> Map<String, Value> {
    json!({"event_id": id, "event_time": "2026-07-01T00:00:00Z", "tenant_id": "t", "provider": "openai",
           "request_model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100})
    .as_object()
    .unwrap()
    .clone()
}

/// Hand-written lines: every rejection reason, their order of precedence, overflow boundaries.
fn edge_lines() -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut obj = |id: &str, f: &dyn Fn(&mut Map<String, Value>)| {
        let mut m = base(id);
        f(&mut m);
        lines.push(Value::Object(m).to_string());
    };
    const MAX: i64 = i64::MAX;
    obj("x-ok", &|_| {});
    obj("x-missing-event-id-field", &|m| {
        m.remove("event_id");
    });
    obj("x-missing-time", &|m| {
        m.remove("event_time");
    });
    obj("x-missing-provider", &|m| {
        m.remove("provider");
    });
    obj("x-missing-request-model", &|m| {
        m.remove("request_model");
    });
    obj("x-missing-tenant", &|m| {
        m.remove("tenant_id");
    });
    obj("x-string-tokens", &|m| {
        m.insert("input_tokens".into(), json!("1000"));
    });
    obj("x-float-tokens", &|m| {
        m.insert("output_tokens".into(), json!(1.5));
    });
    obj("x-null-tokens", &|m| {
        m.insert("output_tokens".into(), Value::Null);
    });
    obj("x-numeric-model", &|m| {
        m.insert("request_model".into(), json!(42));
    });
    obj("x-bad-time", &|m| {
        m.insert("event_time".into(), json!("yesterday"));
    });
    obj("x-time-no-offset", &|m| {
        m.insert("event_time".into(), json!("2026-07-01T00:00:00"));
    });
    obj("x-time-bad-month", &|m| {
        m.insert("event_time".into(), json!("2026-13-01T00:00:00Z"));
    });
    obj("x-time-number", &|m| {
        m.insert("event_time".into(), json!(1_780_272_000));
    });
    obj("x-tier-number", &|m| {
        m.insert("service_tier".into(), json!(1));
    });
    obj("x-tags-number", &|m| {
        m.insert("tags".into(), json!({"a": 1}));
    });
    obj("x-provided-cost-number", &|m| {
        m.insert("provided_cost_usd".into(), json!(0.5));
    });
    obj("x-provided-cost-too-precise", &|m| {
        m.insert("provided_cost_usd".into(), json!("0.0000000000001"));
    });
    obj("", &|_| {});
    obj("x-blank-tenant", &|m| {
        m.insert("tenant_id".into(), json!("  "));
    });
    obj("x-blank-provider", &|m| {
        m.insert("provider".into(), json!("\t"));
    });
    obj("x-empty-model", &|m| {
        m.insert("request_model".into(), json!(""));
    });
    obj("x-blank-model-negative", &|m| {
        m.insert("request_model".into(), json!(" "));
        m.insert("output_tokens".into(), json!(-1));
    });
    obj("x-negative-output", &|m| {
        m.insert("output_tokens".into(), json!(-1));
    });
    obj("x-negative-cache", &|m| {
        m.insert("cache_read_input_tokens".into(), json!(-5));
    });
    obj("x-negative-and-inconsistent", &|m| {
        m.insert("reasoning_output_tokens".into(), json!(-5));
        m.insert("cache_read_input_tokens".into(), json!(5000));
    });
    obj("x-cache-exceeds", &|m| {
        m.insert("cache_read_input_tokens".into(), json!(600));
        m.insert("cache_creation_input_tokens".into(), json!(300));
        m.insert("cache_creation_1h_input_tokens".into(), json!(101));
    });
    obj("x-cache-equal", &|m| {
        m.insert("cache_read_input_tokens".into(), json!(600));
        m.insert("cache_creation_input_tokens".into(), json!(300));
        m.insert("cache_creation_1h_input_tokens".into(), json!(100));
    });
    obj("x-cache-sum-beyond-i64", &|m| {
        m.insert("input_tokens".into(), json!(MAX));
        m.insert("cache_read_input_tokens".into(), json!(MAX));
        m.insert("cache_creation_input_tokens".into(), json!(MAX));
    });
    obj("x-reasoning-exceeds", &|m| {
        m.insert("reasoning_output_tokens".into(), json!(101));
    });
    obj("x-inconsistent-unknown-model", &|m| {
        m.insert("reasoning_output_tokens".into(), json!(101));
        m.insert("request_model".into(), json!("no-such-model"));
    });
    obj("x-unknown", &|m| {
        m.insert("request_model".into(), json!("no-such-model"));
    });
    obj("x-unknown-response-known-request", &|m| {
        m.insert("response_model".into(), json!("no-such-model"));
    });
    obj("x-before-any-source", &|m| {
        m.insert("event_time".into(), json!("1969-12-31T23:59:59.999999999Z"));
    });
    obj("x-only-new-before", &|m| {
        m.insert("request_model".into(), json!("oracle-only-new"));
        m.insert("event_time".into(), json!("2026-05-31T23:59:59.999999999Z"));
    });
    obj("x-only-new-at", &|m| {
        m.insert("request_model".into(), json!("oracle-only-new"));
        m.insert("event_time".into(), json!("2026-06-01T02:00:00+02:00"));
    });
    obj("x-per-request-only", &|m| {
        m.insert("request_model".into(), json!("oracle-per-request"));
    });
    // the forms of docs/pricing.md "Catalog entries": every boundary
    for model in ["oracle-alias", "oracle-alias-missing", "oracle-alias-chain", "oracle-alias-unpriced", "oracle-alias-number"] {
        obj(&format!("x-{model}"), &|m| {
            m.insert("request_model".into(), json!(model));
        });
    }
    for (i, input) in [0u64, 1, 32_000, 32_001, 128_000, 128_001, 200_000, 256_000, 256_001, 9_000_000].into_iter().enumerate() {
        for (j, tier) in [None, Some("batch"), Some("priority")].into_iter().enumerate() {
            for model in ["oracle-tiered-pricing", "oracle-xai", "oracle-ratio", "oracle-zero"] {
                obj(&format!("x-{model}-{i}-{j}"), &|m| {
                    m.insert("request_model".into(), json!(model));
                    m.insert("input_tokens".into(), json!(input));
                    m.insert("cache_read_input_tokens".into(), json!(input / 4));
                    m.insert("cache_creation_input_tokens".into(), json!(input / 8));
                    m.insert("cache_creation_1h_input_tokens".into(), json!(input / 16));
                    m.insert("output_tokens".into(), json!(3_000));
                    m.insert("reasoning_output_tokens".into(), json!(1_000));
                    if let Some(t) = tier {
                        m.insert("service_tier".into(), json!(t));
                    }
                });
            }
        }
    }
    for model in [
        "oracle-tiered-gap",
        "oracle-tiered-fraction",
        "oracle-tiered-late-start",
        "oracle-tiered-search",
        "oracle-tiered-no-output",
        "oracle-off-peak-bad",
    ] {
        obj(&format!("x-{model}"), &|m| {
            m.insert("request_model".into(), json!(model));
        });
    }
    // 2026-07-06 is a Monday, 2026-07-11 a Saturday
    for (i, at) in [
        "2026-07-06T00:00:00Z",
        "2026-07-06T00:59:59.999999Z",
        "2026-07-06T01:00:00Z",
        "2026-07-06T16:29:59Z",
        "2026-07-06T16:30:00Z",
        "2026-07-06T23:59:59Z",
        "2026-07-06T18:00:00+02:00",
        "2026-07-10T23:59:59Z",
        "2026-07-11T00:00:00Z",
        "2026-07-12T23:59:59Z",
        "2026-07-13T00:30:00-01:00",
    ]
    .into_iter()
    .enumerate()
    {
        obj(&format!("x-off-peak-{i}"), &|m| {
            m.insert("request_model".into(), json!("oracle-off-peak"));
            m.insert("event_time".into(), json!(at));
            m.insert("cache_read_input_tokens".into(), json!(100));
        });
    }
    // 9e6 $/token: each term below 10^26, the total at or beyond it
    for (id, input, output) in [
        ("x-huge-max-input", MAX, 0),
        ("x-huge-max-both", MAX, MAX),
        ("x-huge-just-below", 5_555_555_555_555_555_555i64, 5_555_555_555_555_555_555i64),
        ("x-huge-still-below", 5_555_555_555_555_555_556i64, 5_555_555_555_555_555_555i64),
        ("x-huge-just-above", 5_555_555_555_555_555_556i64, 5_555_555_555_555_555_556i64),
    ] {
        obj(id, &|m| {
            m.insert("request_model".into(), json!("oracle-huge"));
            m.insert("input_tokens".into(), json!(input));
            m.insert("output_tokens".into(), json!(output));
        });
    }
    // 10^7 $/token: a total of exactly 10^26 is out of range, one token less is not
    for (id, input, output) in [
        ("x-huge10-exact-limit", 5_000_000_000_000_000_000i64, 5_000_000_000_000_000_000i64),
        ("x-huge10-one-below", 5_000_000_000_000_000_000i64, 4_999_999_999_999_999_999i64),
    ] {
        obj(id, &|m| {
            m.insert("request_model".into(), json!("oracle-huge10"));
            m.insert("input_tokens".into(), json!(input));
            m.insert("output_tokens".into(), json!(output));
        });
    }
    obj("x-huge-routed", &|m| {
        m.insert("routed_from_model".into(), json!("oracle-huge"));
        m.insert("input_tokens".into(), json!(MAX));
        m.insert("output_tokens".into(), json!(MAX));
    });
    obj("x-routed-from-huge-ok", &|m| {
        m.insert("request_model".into(), json!("oracle-huge"));
        m.insert("routed_from_model".into(), json!("gpt-4o"));
        m.insert("input_tokens".into(), json!(MAX));
    });
    // raw lines
    lines.push(r#"{"event_id":"x-truncated","event_time":"2026-07-01T00:00:00Z""#.to_owned());
    lines.push("null".to_owned());
    lines.push("42".to_owned());
    lines.push(r#""a string""#.to_owned());
    lines.push("not json at all".to_owned());
    lines.push(r#"{"event_id":"x-trailing","event_time":"2026-07-01T00:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o"} x"#.to_owned());
    lines.push(r#"{"event_id":"x-too-big","event_time":"2026-07-01T00:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o","input_tokens":9223372036854775808}"#.to_owned());
    lines.push(r#"{"event_id":"x-exp-int","event_time":"2026-07-01T00:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o","input_tokens":1e3}"#.to_owned());
    lines.push(r#"{"event_id":"x-dup","event_time":"2026-07-01T00:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o","request_model":"o3"}"#.to_owned());
    lines.push(r#"{"event_id":"x-minimal","event_time":"2026-07-01T00:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o"}"#.to_owned());
    lines
}

// ---------------------------------------------------------------------------------------------
// Comparison

const COMPARED: &[&str] = &[
    "event_id",
    "model",
    "price_version",
    "alias_of",
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "cache_write_1h_cost_usd",
    "output_cost_usd",
    "reasoning_cost_usd",
    "cost_usd",
    "savings_usd",
    "routed_from_cost_usd",
    "routed_from_model",
];

fn by_line(out: &str, who: &str) -> BTreeMap<u64, Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{who} printed a non-JSON line {l:?}: {e}"));
            (v["line"].as_u64().unwrap_or_else(|| panic!("{who}: no line number in {l}")), v)
        })
        .collect()
}

fn picos(s: &str) -> i128 {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').expect("12 fractional digits");
    assert_eq!(frac.len(), 12, "{s} must have 12 fractional digits");
    let v = int.parse::<i128>().unwrap() * 1_000_000_000_000 + frac.parse::<i128>().unwrap();
    if neg {
        -v
    } else {
        v
    }
}

fn diff(input: &[&str], rust: &BTreeMap<u64, Value>, oracle: &BTreeMap<u64, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: std::collections::BTreeSet<u64> = rust.keys().chain(oracle.keys()).copied().collect();
    for n in lines {
        let src = input.get(n as usize - 1).copied().unwrap_or("?");
        let (Some(r), Some(o)) = (rust.get(&n), oracle.get(&n)) else {
            problems.push(format!(
                "line {n}: only one side printed it\n  rust:   {:?}\n  oracle: {:?}\n  event:  {src}",
                rust.get(&n),
                oracle.get(&n)
            ));
            continue;
        };
        let mut bad = Vec::new();
        match (o.get("error"), r.get("error")) {
            (Some(oe), Some(re)) => {
                if oe["reason"] != re["reason"] {
                    bad.push(format!("reason: rust {} oracle {}", re["reason"], oe["reason"]));
                }
                if oe["reason"] != "decode_error" && o["event_id"] != r["event_id"] {
                    bad.push(format!("event_id: rust {} oracle {}", r["event_id"], o["event_id"]));
                }
            }
            (None, None) => {
                for f in COMPARED {
                    // `ledger price` echoes an unknown routed_from_model; the oracle prints null
                    if *f == "routed_from_model" && o[*f].is_null() {
                        continue;
                    }
                    if let Some(ov) = o.get(*f) {
                        let rv = r.get(*f).unwrap_or(&Value::Null);
                        if rv != ov {
                            bad.push(format!("{f}: rust {rv} oracle {ov}"));
                        }
                    }
                }
                if let Some(c) = r["cost_usd"].as_str() {
                    let terms: i128 = COMPARED[4..10].iter().map(|f| picos(r[*f].as_str().unwrap())).sum();
                    if terms != picos(c) {
                        bad.push(format!("rust cost_usd {c} is not the sum of its terms"));
                    }
                }
            }
            _ => bad.push(format!("priced vs rejected:\n  rust:   {r}\n  oracle: {o}")),
        }
        if !bad.is_empty() {
            problems.push(format!("line {n}: {}\n  event:  {src}\n  rust:   {r}\n  oracle: {o}", bad.join("; ")));
        }
    }
    problems
}

#[test]
fn ledger_price_agrees_with_the_python_oracle() {
    let root = workspace_root();
    let bin = ledger_bin();
    let bin = bin.as_path();
    let oracle = root.join("tests/oracle/price_oracle.py");
    let dir = temp_dir();
    let mut rng = StdRng::seed_from_u64(SEED);

    // Price history: the LiteLLM release file (catalog/sources, kept in the repository, so a
    // missing file fails the test) from 1970, the repository catalog, and a modified copy from
    // NEXT_FROM.
    let repo_path = root.join("catalog/litellm-prices.json");
    let repo = load_object(&repo_path);
    let data_path = root.join("catalog/sources/litellm-1.110.2-model_prices_and_context_window.json");
    let data = load_object(&data_path);
    let next_path = dir.join("litellm-prices-next.json");
    write_next_catalog(&repo, &next_path, &mut rng);
    let catalogs: Vec<String> = vec![
        data_path.display().to_string(),
        format!("{}@{REPO_FROM}", repo_path.display()),
        format!("{}@{NEXT_FROM}", next_path.display()),
    ];

    // Model pools: the repository catalog, the release file's entries with long-context or
    // service-tier prices (and a sample of the others), the synthetic entries.
    let mut data_models: Vec<String> = Vec::new();
    let mut plain = Vec::new();
    for (k, v) in &data {
        let Some(fields) = v.as_object() else { continue };
        let variants = fields.keys().any(|f| {
            is_priced_field(f)
                && (f.contains("k_tokens") || f.ends_with("_batches") || f.ends_with("_priority") || f.ends_with("_flex"))
        });
        if variants {
            data_models.push(k.clone());
        } else {
            plain.push(k.clone());
        }
    }
    plain.shuffle(&mut rng);
    data_models.extend(plain.into_iter().take(300));
    let pools = Pools {
        repo: repo.keys().cloned().collect(),
        data: data_models,
        synthetic: SYNTHETIC.iter().map(|(k, _)| (*k).to_owned()).collect(),
    };

    let mut lines: Vec<String> = edge_lines();
    for i in 0..RANDOM_EVENTS {
        lines.push(random_event(&mut rng, i, &pools).to_string());
        if rng.gen_range(0..500) == 0 {
            lines.push(["", "   ", "\t"].choose(&mut rng).unwrap().to_string());
        }
    }
    let input = lines.join("\n") + "\n";
    std::fs::write(dir.join("events.jsonl"), &input).unwrap();
    let input_lines: Vec<&str> = input.lines().collect();

    let mut rust_cmd = Command::new(bin);
    rust_cmd.arg("price");
    let mut oracle_cmd = Command::new("python3");
    oracle_cmd.arg(&oracle);
    // docs/pricing.md leaves open how name lookup and price history combine; see tests/oracle/README.md
    if let Ok(mode) = std::env::var("LEDGER_ORACLE_LOOKUP") {
        oracle_cmd.arg("--lookup").arg(mode);
    }
    for c in &catalogs {
        rust_cmd.arg("--catalog").arg(c);
        oracle_cmd.arg("--catalog").arg(c);
    }
    let (rc, rust_out, rust_err) = run(&mut rust_cmd, &input);
    assert!(matches!(rc, Some(0 | 1)), "ledger price failed ({rc:?}):\n{rust_err}");
    let (oc, oracle_out, oracle_err) = run(&mut oracle_cmd, &input);
    assert_eq!(oc, Some(0), "oracle failed:\n{oracle_err}");
    std::fs::write(dir.join("rust.jsonl"), &rust_out).unwrap();
    std::fs::write(dir.join("oracle.jsonl"), &oracle_out).unwrap();

    let rust = by_line(&rust_out, "ledger price");
    let orc = by_line(&oracle_out, "oracle");
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for v in orc.values() {
        let k = v.get("error").map_or("priced".to_owned(), |e| e["reason"].as_str().unwrap().to_owned());
        *reasons.entry(k).or_default() += 1;
    }
    let versions: BTreeMap<String, usize> =
        orc.values().filter_map(|v| v["price_version"].as_str()).fold(BTreeMap::new(), |mut m, v| {
            *m.entry(v.to_owned()).or_default() += 1;
            m
        });
    println!("catalogs: {catalogs:?}\noutcomes: {reasons:?}\nprice versions: {versions:?}\nfiles in {}", dir.display());

    // The oracle's --total (and --distinct over the input twice) agrees with the per-line output.
    let mut total_cmd = Command::new("python3");
    total_cmd.arg(&oracle).arg("--total").arg("--distinct");
    if let Ok(mode) = std::env::var("LEDGER_ORACLE_LOOKUP") {
        total_cmd.arg("--lookup").arg(mode);
    }
    for c in &catalogs {
        total_cmd.arg("--catalog").arg(c);
    }
    let (tc, total_out, total_err) = run(&mut total_cmd, &format!("{input}{input}"));
    assert_eq!(tc, Some(0), "oracle --total failed:\n{total_err}");
    let total: Value = serde_json::from_str(total_out.trim()).unwrap();
    let priced: Vec<&Value> = orc.values().filter(|v| v.get("error").is_none()).collect();
    let mut seen = std::collections::HashSet::new();
    // (whole dollars, picos) so that sums beyond i128 picos still compare exactly
    let split = |s: &str| -> (i128, i128) {
        let (int, frac) = s.split_once('.').unwrap();
        (int.parse().unwrap(), frac.parse().unwrap())
    };
    let (mut dollars, mut frac) = (0i128, 0i128);
    for v in priced.iter().filter(|v| seen.insert(v["event_id"].as_str().unwrap().to_owned())) {
        let (d, f) = split(v["cost_usd"].as_str().unwrap());
        dollars += d;
        frac += f;
    }
    dollars += frac / 1_000_000_000_000;
    frac %= 1_000_000_000_000;
    assert_eq!(total["priced"].as_u64().unwrap() as usize, seen.len());
    assert_eq!(split(total["total_cost_usd"].as_str().unwrap()), (dollars, frac), "oracle --total --distinct");
    let problems = diff(&input_lines, &rust, &orc);
    for p in problems.iter().take(40) {
        println!("{p}\n");
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for p in &problems {
        let head = p.lines().next().unwrap_or("");
        let what = head.split_once(": ").map_or("", |(_, w)| w);
        // the first differing field names the kind (model = which entry / price version)
        let first = what.split([':', ';']).next().unwrap_or("");
        *kinds.entry(first.to_owned()).or_default() += 1;
    }
    println!("disagreements by kind: {kinds:#?}");
    assert!(
        problems.is_empty(),
        "{} of {} lines disagree (first ones above; files in {})",
        problems.len(),
        orc.len(),
        dir.display()
    );

    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The shipped catalog, entry by entry

/// The shipped catalog (processor default): LiteLLM's file itself.
const SHIPPED: &str = "catalog/sources/litellm-1.110.2-model_prices_and_context_window.json";
/// A Wednesday, outside DeepSeek's off-peak windows.
const PEAK: &str = "2026-11-04T08:00:00Z";
/// Off-peak probes: Monday 00:30 (in), Monday 01:00 (out), Monday 10:00 (in), Saturday noon (in).
const OFF_PEAK_TIMES: &[&str] = &["2026-11-02T00:30:00Z", "2026-11-02T01:00:00Z", "2026-11-02T10:00:00Z", "2026-11-07T12:00:00Z"];
/// docs/pricing.md's provider table, written down again here: OpenTelemetry name, LiteLLM prefix.
const OTEL: &[(&str, &str)] = &[
    ("gcp.gemini", "gemini"),
    ("gcp.vertex_ai", "vertex_ai"),
    ("aws.bedrock", "bedrock"),
    ("azure.ai.openai", "azure"),
    ("azure.ai.inference", "azure_ai"),
    ("x_ai", "xai"),
    ("mistral_ai", "mistral"),
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("deepseek", "deepseek"),
    ("groq", "groq"),
    ("cohere", "cohere"),
    ("perplexity", "perplexity"),
    ("ibm.watsonx.ai", "watsonx"),
];

/// Local rules of the test: aliases (global and per provider), a tenant's provider-wide discount
/// with a more specific model override inside it, a provider-wide multiplier, a negotiated price
/// list for one tenant and a self-hosted model.
const RULES: &str = r#"
[aliases]
"deploy-a" = "azure/gpt-4o"
"my-claude" = "claude-sonnet-4-5"
"points-nowhere" = "no-such-entry"

[aliases_by_provider."azure.ai.openai"]
"deploy-a" = "azure/gpt-4o-mini"
"gpt4o-prod" = "azure/gpt-4o"

[[overrides]]
id = "discount-azure"
tenant = "discounted"
provider = "azure.ai.openai"
effective_from = "2026-01-01T00:00:00Z"
effective_to = "2027-01-01T00:00:00Z"
multiplier = "0.85"

[[overrides]]
id = "discount-azure-gpt4o"
tenant = "discounted"
model = "azure/gpt-4o"
effective_from = "2026-11-01T00:00:00Z"
multiplier = "0.333"

[[overrides]]
id = "xai-markup"
provider = "x_ai"
effective_from = "2026-01-01T00:00:00Z"
multiplier = "1.1"

[[overrides]]
id = "negotiated-gpt4o"
tenant = "negotiated"
model = "gpt-4o"
effective_from = "2026-01-01T00:00:00Z"
prices = { input_cost_per_token = "2e-06", output_cost_per_token = "8.000000000001e-06", input_cost_per_token_batches = 1 }

[[overrides]]
id = "llama-onprem"
model = "acme-llama-3-70b"
effective_from = "2026-06-01T00:00:00Z"
prices = { input_cost_per_token = "1e-07", output_cost_per_token = "3e-07", cache_read_input_token_cost = "1e-08" }
"#;

fn is_number(v: Option<&Value>) -> bool {
    v.is_some_and(Value::is_number)
}

/// Whether an entry has token prices, read from the JSON here (independently of both pricers):
/// an input and an output price directly, through `alias_of`, or in every `tiered_pricing` tier.
fn has_token_prices(all: &Map<String, Value>, key: &str, depth: u8) -> bool {
    let Some(e) = all.get(key).and_then(Value::as_object) else { return false };
    if key == "sample_spec" {
        return false;
    }
    if let Some(t) = e.get("alias_of") {
        let target = t.as_str().and_then(|t| all.get(t).map(|v| (t, v)));
        return depth == 0 && target.is_some_and(|(t, v)| v.get("alias_of").is_none() && has_token_prices(all, t, 1));
    }
    let plain = |f: &str| is_number(e.get(f));
    match e.get("tiered_pricing").and_then(Value::as_array) {
        Some(tiers) if tiers.iter().any(|t| t.get("range").is_some()) => tiers.iter().all(|t| {
            (plain("input_cost_per_token") || is_number(t.get("input_cost_per_token")))
                && (plain("output_cost_per_token") || is_number(t.get("output_cost_per_token")))
        }),
        _ => plain("input_cost_per_token") && plain("output_cost_per_token"),
    }
}

/// The events of one entry: its plain event, then its variants and alias forms.
struct FullEvents {
    lines: Vec<String>,
    /// The line (1-based) of each entry's plain event.
    base_line: BTreeMap<String, usize>,
    /// Events per kind, for the summary.
    kinds: BTreeMap<&'static str, usize>,
    /// The current entry's output limit: its events stay within it (input limits are crossed
    /// on purpose by the long-context events).
    max_output: u64,
}

impl FullEvents {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: &'static str,
        provider: &str,
        model: &str,
        tier: Option<&str>,
        input: u64,
        at: &str,
        tenant: &str,
    ) -> usize {
        let n = self.lines.len();
        let output = (1_500 + (n as u64 % 7) * 100).min(self.max_output);
        let mut e = json!({
            "event_id": format!("full-{n}"), "event_time": at, "tenant_id": tenant, "provider": provider,
            "request_model": model, "input_tokens": input, "cache_read_input_tokens": input / 4,
            "cache_creation_input_tokens": input / 8, "cache_creation_1h_input_tokens": input / 16,
            "output_tokens": output, "reasoning_output_tokens": output.min(300),
        });
        if let Some(t) = tier {
            e["service_tier"] = json!(t);
        }
        if n % 11 == 5 {
            e["routed_from_model"] = json!("gpt-4o");
        }
        self.lines.push(e.to_string());
        *self.kinds.entry(kind).or_default() += 1;
        n + 1
    }
}

/// The service tiers (event spelling) and long-context thresholds an entry's field names carry.
fn variants(e: &Map<String, Value>) -> (BTreeSet<String>, BTreeSet<u64>) {
    let (mut tiers, mut above) = (BTreeSet::new(), BTreeSet::new());
    let fields = e
        .iter()
        .chain(e.get("tiered_pricing").and_then(Value::as_array).into_iter().flatten().flat_map(|t| t.as_object()).flatten());
    for (f, _) in fields {
        let Some(base) = ["input_cost_per_token", "output_cost_per_token"].into_iter().find(|b| f.starts_with(b)) else {
            continue;
        };
        let mut rest = &f[base.len()..];
        if let Some(r) = rest.strip_prefix("_above_") {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u64>() {
                above.insert(n);
            }
            rest = r.split_once("k_tokens").map_or("", |(_, t)| t);
        }
        if let Some(t) = rest.strip_prefix('_') {
            tiers.insert(if t == "batches" { "batch".to_owned() } else { t.to_owned() });
        }
    }
    (tiers, above)
}

fn generate_full(all: &Map<String, Value>) -> FullEvents {
    let mut g = FullEvents { lines: Vec::new(), base_line: BTreeMap::new(), kinds: BTreeMap::new(), max_output: u64::MAX };
    let limit = |e: &Map<String, Value>, name: &str| e.get(name).and_then(Value::as_u64).filter(|n| *n > 0);
    let otel_of = |litellm: &str| OTEL.iter().find(|(_, l)| litellm.starts_with(l)).map(|(o, _)| *o);
    for (i, (key, v)) in all.iter().enumerate() {
        let Some(e) = v.as_object() else { continue };
        let litellm = e.get("litellm_provider").and_then(Value::as_str).unwrap_or("openai");
        let provider = otel_of(litellm).unwrap_or(litellm);
        // the plain event is one the model can serve: within its context and output limits
        g.max_output = limit(e, "max_output_tokens").or_else(|| limit(e, "max_tokens")).unwrap_or(u64::MAX);
        let input = (1_000 + (i as u64 % 97) * 37).min(limit(e, "max_input_tokens").unwrap_or(u64::MAX));
        let line = g.push("plain", provider, key, None, input, PEAK, "t");
        g.base_line.insert(key.clone(), line);
        let (tiers, above) = variants(e);
        for t in &tiers {
            g.push("service tier", provider, key, Some(t), input, PEAK, "t");
        }
        let first_tier = tiers.iter().next().map(String::as_str);
        for n in &above {
            for input in [n * 1000, n * 1000 + 1] {
                g.push("long context", provider, key, None, input, PEAK, "t");
                g.push("long context", provider, key, first_tier, input, PEAK, "t");
            }
        }
        for t in e.get("tiered_pricing").and_then(Value::as_array).into_iter().flatten() {
            // the real file's bounds are integers, some written `256000.0`
            let hi = t.get("range").and_then(|r| r.get(1)).map(Value::to_string).unwrap_or_default();
            let hi = hi.split('.').next().and_then(|h| h.parse::<u64>().ok()).unwrap_or(0);
            for input in [hi, hi + 1] {
                g.push("tiered", provider, key, None, input, PEAK, "t");
            }
        }
        if e.contains_key("off_peak_pricing") {
            for at in OFF_PEAK_TIMES {
                g.push("off-peak", provider, key, None, input, at, "t");
                g.push("off-peak", provider, key, first_tier, input, at, "t");
            }
        }
        // alias forms: the OpenTelemetry provider with the bare name, a Bedrock cross-region
        // prefix, an Anthropic model name of a Bedrock id, a date after an undated name
        if let Some((prefix, rest)) = key.split_once('/') {
            if let Some((otel, _)) = OTEL.iter().find(|(_, l)| *l == prefix) {
                g.push("alias: provider prefix", otel, rest, None, input, PEAK, "t");
            }
        }
        if key.contains("anthropic.") || key.starts_with("meta.") || key.starts_with("amazon.") {
            let bare = ["us.", "eu.", "apac.", "global."].iter().find_map(|r| key.strip_prefix(r)).unwrap_or(key);
            g.push(
                "alias: Bedrock region",
                "aws.bedrock",
                &format!("{}.{bare}", ["us", "eu", "apac", "global"][i % 4]),
                None,
                input,
                PEAK,
                "t",
            );
            if let Some(name) = bare.strip_prefix("anthropic.").and_then(|n| n.rsplit_once("-v")).map(|(n, _)| n) {
                g.push("alias: Anthropic name of a Bedrock id", "anthropic", name, None, input, PEAK, "t");
            }
        }
        if i % 3 == 0 && !key.contains('@') {
            let dated = if i % 2 == 0 { format!("{key}-20991231") } else { format!("{key}-2099-12-31") };
            g.push("alias: dated name", provider, &dated, None, input, PEAK, "t");
        }
    }
    // the local rules
    g.max_output = u64::MAX;
    for (provider, model, tenant, at) in [
        ("azure.ai.openai", "deploy-a", "t", PEAK),
        ("openai", "deploy-a", "t", PEAK),
        ("azure.ai.openai", "gpt4o-prod", "t", PEAK),
        ("openai", "gpt4o-prod", "t", PEAK),
        ("anthropic", "my-claude", "t", PEAK),
        ("openai", "points-nowhere", "t", PEAK),
        ("azure.ai.openai", "gpt4o-prod", "discounted", PEAK),
        ("azure.ai.openai", "gpt4o-prod", "discounted", "2026-10-31T23:59:59Z"),
        ("azure.ai.openai", "deploy-a", "discounted", PEAK),
        ("azure.ai.openai", "deploy-a", "discounted", "2027-01-01T00:00:00Z"),
        ("openai", "azure/gpt-4o-mini", "discounted", PEAK),
        ("x_ai", "grok-4.3", "t", PEAK),
        ("x_ai", "xai/grok-code-fast-1", "t", "2025-12-31T23:59:59Z"),
        ("openai", "gpt-4o", "negotiated", PEAK),
        ("openai", "gpt-4o", "someone-else", PEAK),
        ("vllm", "acme-llama-3-70b", "t", PEAK),
        ("vllm", "acme-llama-3-70b", "t", "2026-05-31T23:59:59Z"),
    ] {
        for tier in [None, Some("batch")] {
            g.push("local rules", provider, model, tier, 12_345, at, tenant);
        }
    }
    g
}

#[test]
fn every_priced_model_of_the_shipped_catalog_agrees_with_the_python_oracle() {
    let root = workspace_root();
    let bin = ledger_bin();
    let oracle = root.join("tests/oracle/price_oracle.py");
    let dir = temp_dir();
    let shipped = root.join(SHIPPED);
    let all = load_object(&shipped);
    let rules = dir.join("pricing-rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let g = generate_full(&all);
    let input = g.lines.join("\n") + "\n";
    std::fs::write(dir.join("events.jsonl"), &input).unwrap();
    let input_lines: Vec<&str> = input.lines().collect();

    let started = std::time::Instant::now();
    let mut rust_cmd = Command::new(bin.as_path());
    rust_cmd.arg("price").arg("--catalog").arg(&shipped).arg("--rules").arg(&rules);
    let (rc, rust_out, rust_err) = run(&mut rust_cmd, &input);
    assert!(matches!(rc, Some(0 | 1)), "ledger price failed ({rc:?}):\n{rust_err}");
    let rust_time = started.elapsed();
    let started = std::time::Instant::now();
    let mut oracle_cmd = Command::new("python3");
    oracle_cmd.arg(&oracle).arg("--catalog").arg(&shipped).arg("--rules").arg(&rules);
    let (oc, oracle_out, oracle_err) = run(&mut oracle_cmd, &input);
    assert_eq!(oc, Some(0), "oracle failed:\n{oracle_err}");
    let oracle_time = started.elapsed();
    std::fs::write(dir.join("rust.jsonl"), &rust_out).unwrap();
    std::fs::write(dir.join("oracle.jsonl"), &oracle_out).unwrap();
    let rust = by_line(&rust_out, "ledger price");
    let orc = by_line(&oracle_out, "oracle");

    let with_prices: Vec<&String> = all.keys().filter(|k| has_token_prices(&all, k, 0)).collect();
    let unpriced: Vec<(&String, &Value)> =
        with_prices.iter().map(|k| (*k, &rust[&(g.base_line[*k] as u64)])).filter(|(_, v)| v.get("error").is_some()).collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for v in orc.values() {
        let k = v.get("error").map_or("priced".to_owned(), |e| e["reason"].as_str().unwrap().to_owned());
        *outcomes.entry(k).or_default() += 1;
    }
    println!(
        "{} entries, {} with token prices; {} events ({:?}); outcomes {outcomes:?}; ledger price {:.1?}, oracle {:.1?}; files in {}",
        all.len(),
        with_prices.len(),
        g.lines.len(),
        g.kinds,
        rust_time,
        oracle_time,
        dir.display()
    );
    println!("models the catalog lists but the ledger cannot price: {} among entries with token prices", unpriced.len());
    for (k, v) in unpriced.iter().take(20) {
        println!("  {k}: {}", v["error"]);
    }
    let problems = diff(&input_lines, &rust, &orc);
    for p in problems.iter().take(40) {
        println!("{p}\n");
    }
    assert!(unpriced.is_empty(), "{} entries with token prices are not priced (first ones above)", unpriced.len());
    // long-context events beyond twice a model's context check the per-model limit on both sides
    assert!(outcomes.get("implausible_tokens").is_some_and(|n| *n > 50), "too few implausible_tokens lines: {outcomes:?}");
    assert!(
        problems.is_empty(),
        "{} of {} lines disagree (first ones above; files in {})",
        problems.len(),
        orc.len(),
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
