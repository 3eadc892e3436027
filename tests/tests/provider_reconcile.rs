//! `ledger reconcile provider` on the real Kafka and ClickHouse: OpenAI and Anthropic usage of
//! two days goes through `ledger process`; exports in each provider's own API format (usage and
//! costs, built from the events sent and the independent oracle's prices) are compared with it.
//!
//! * A matching export passes (exit 0), as JSON and as CSV.
//! * An export that differs from the ledger in three known ways (calls the ledger lacks or the
//!   provider does not bill, tokens in another cache class, a different price) finds exactly
//!   those three, each classified correctly, and exits 2.
//! * Within a tolerance wide enough the same gaps are listed but do not fail the run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ledger_ops::focus::scaled_text;
use ledger_tests::{oracle_priced, process_events, random_suffix, TestEnv};
use serde_json::{json, Value};

const DAYS: [&str; 2] = ["2025-07-01", "2025-07-02"];
const GPT4O: &str = "gpt-4o-2024-08-06";
const MINI: &str = "gpt-4o-mini-2024-07-18";
const SONNET: &str = "claude-sonnet-4-5-20250929";
const HAIKU: &str = "claude-haiku-4-5-20251001";
const COSTS: [&str; 6] = [
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "cache_write_1h_cost_usd",
    "output_cost_usd",
    "reasoning_cost_usd",
];

/// One (day, model) as the provider would report it: requests, tokens and cost per token class.
#[derive(Debug, Clone, Default)]
struct Figures {
    requests: u64,
    tokens: [u64; 6],
    cost: [i128; 6],
}

type Book = BTreeMap<(usize, String), Figures>;

fn events() -> Vec<Value> {
    let mut out = Vec::new();
    for (d, day) in DAYS.iter().enumerate() {
        for (provider, request, served) in [
            ("openai", "gpt-4o", GPT4O),
            ("openai", "gpt-4o-mini", MINI),
            ("anthropic", "claude-sonnet-4-5", SONNET),
            ("anthropic", "claude-haiku-4-5", HAIKU),
        ] {
            for i in 0..3u64 {
                let anthropic = provider == "anthropic";
                out.push(json!({
                    "event_id": format!("{served}-{d}-{i}"), "event_time": format!("{day}T{:02}:30:00Z", 8 + i),
                    "tenant_id": "acme", "provider": provider, "request_model": request, "response_model": served,
                    "input_tokens": 10_000 + 100 * i, "cache_read_input_tokens": 2_000,
                    "cache_creation_input_tokens": if anthropic { 1_000 } else { 0 },
                    "cache_creation_1h_input_tokens": if served == SONNET { 500 } else { 0 },
                    "output_tokens": 800 + i,
                }));
            }
        }
    }
    out
}

/// What the provider bills: the events' tokens, priced by the oracle.
fn book(events: &[Value]) -> Book {
    let mut book = Book::new();
    for (e, priced) in events.iter().zip(oracle_priced(events)) {
        let day = DAYS.iter().position(|d| e["event_time"].as_str().unwrap().starts_with(d)).unwrap();
        let f = book.entry((day, e["response_model"].as_str().unwrap().to_owned())).or_default();
        let n = |k: &str| e[k].as_u64().unwrap_or(0);
        let parts = [n("cache_read_input_tokens"), n("cache_creation_input_tokens"), n("cache_creation_1h_input_tokens")];
        f.requests += 1;
        f.tokens[0] += n("input_tokens") - parts.iter().sum::<u64>();
        f.tokens[1] += parts[0];
        f.tokens[2] += parts[1];
        f.tokens[3] += parts[2];
        f.tokens[4] += n("output_tokens");
        for (i, c) in COSTS.iter().enumerate() {
            f.cost[i] += priced[c].as_str().unwrap().parse::<ledger_core::Money>().unwrap().picos();
        }
    }
    book
}

fn day_start(d: usize) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{}T00:00:00Z", DAYS[d])).unwrap().with_timezone(&Utc)
}

fn models_of(book: &Book, provider_models: &[&str]) -> Vec<(usize, Vec<(String, Figures)>)> {
    (0..DAYS.len())
        .map(|d| {
            let rows = book.iter().filter(|((day, m), _)| *day == d && provider_models.contains(&m.as_str()));
            (d, rows.map(|((_, m), f)| (m.clone(), f.clone())).collect())
        })
        .collect()
}

/// OpenAI's usage page and costs page (amounts as JSON numbers in dollars, written as text).
fn openai_exports(book: &Book) -> (String, String) {
    let mut usage = Vec::new();
    let mut costs = Vec::new();
    for (d, rows) in models_of(book, &[GPT4O, MINI]) {
        let (start, end) = (day_start(d).timestamp(), day_start(d).timestamp() + 86_400);
        let results: Vec<Value> = rows
            .iter()
            .map(|(m, f)| {
                json!({"object": "organization.usage.completions.result", "input_tokens": f.tokens[..4].iter().sum::<u64>(),
                       "input_cached_tokens": f.tokens[1], "output_tokens": f.tokens[4] + f.tokens[5],
                       "num_model_requests": f.requests, "project_id": "proj_1", "model": m})
            })
            .collect();
        usage.push(json!({"object": "bucket", "start_time": start, "end_time": end, "results": results}));
        let lines: Vec<String> = rows
            .iter()
            .flat_map(|(m, f)| {
                [("input", f.cost[0]), ("cached input", f.cost[1]), ("output", f.cost[4] + f.cost[5])].map(|(kind, picos)| {
                    format!(
                        r#"{{"object":"organization.costs.result","amount":{{"value":{},"currency":"usd"}},"line_item":"{m}, {kind}","project_id":"proj_1"}}"#,
                        scaled_text(picos, 12)
                    )
                })
            })
            .collect();
        costs.push(format!(r#"{{"object":"bucket","start_time":{start},"end_time":{end},"results":[{}]}}"#, lines.join(",")));
    }
    let usage = json!({"object": "page", "data": usage, "has_more": false, "next_page": null}).to_string();
    (usage, format!(r#"{{"object":"page","data":[{}],"has_more":false,"next_page":null}}"#, costs.join(",")))
}

/// Anthropic's usage report and cost report (amounts as decimal strings in cents).
fn anthropic_exports(book: &Book) -> (String, String) {
    let mut usage = Vec::new();
    let mut costs = Vec::new();
    for (d, rows) in models_of(book, &[SONNET, HAIKU]) {
        let (start, end) = (day_start(d).to_rfc3339(), (day_start(d) + chrono::Duration::days(1)).to_rfc3339());
        let results: Vec<Value> = rows
            .iter()
            .map(|(m, f)| {
                json!({"uncached_input_tokens": f.tokens[0], "cache_read_input_tokens": f.tokens[1],
                       "cache_creation": {"ephemeral_5m_input_tokens": f.tokens[2], "ephemeral_1h_input_tokens": f.tokens[3]},
                       "output_tokens": f.tokens[4] + f.tokens[5], "server_tool_use": {"web_search_requests": 0},
                       "workspace_id": "wrkspc_1", "model": m})
            })
            .collect();
        usage.push(json!({"starting_at": start, "ending_at": end, "results": results}));
        let lines: Vec<Value> = rows
            .iter()
            .flat_map(|(m, f)| {
                [
                    ("uncached_input_tokens", f.cost[0]),
                    ("cache_read_input_tokens", f.cost[1]),
                    ("cache_creation.ephemeral_5m_input_tokens", f.cost[2]),
                    ("cache_creation.ephemeral_1h_input_tokens", f.cost[3]),
                    ("output_tokens", f.cost[4] + f.cost[5]),
                ]
                .map(|(token_type, picos)| {
                    json!({"currency": "USD", "amount": scaled_text(picos, 10), "model": m, "cost_type": "tokens",
                           "token_type": token_type, "workspace_id": "wrkspc_1", "description": format!("{m} {token_type}")})
                })
            })
            .collect();
        costs.push(json!({"starting_at": start, "ending_at": end, "results": lines}));
    }
    let page = |data: Vec<Value>| json!({"data": data, "has_more": false, "next_page": null}).to_string();
    (page(usage), page(costs))
}

fn write(text: &str, ext: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("provider-{}.{ext}", random_suffix()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `ledger reconcile provider` with JSON output: (exit code, report).
fn reconcile(env: &TestEnv, provider: &str, files: &[&PathBuf], tolerance: &str) -> (i32, Value) {
    let mut cmd = env.ledger();
    cmd.args(["reconcile", "provider", "--provider", provider, "--format", "json", "--tolerance", tolerance]);
    for f in files {
        cmd.arg("--file").arg(f);
    }
    let out = cmd.output().expect("running ledger");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("JSON report ({e}):\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), report)
}

/// `(day, model, kind)` of every gap, and whether each is beyond the tolerance.
fn gaps(report: &Value) -> Vec<(String, String, String, bool)> {
    report["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let kind = format!("{} / {}", g["kind"].as_str().unwrap(), g["description"].as_str().unwrap());
            (g["day"].as_str().unwrap().to_owned(), g["model"].as_str().unwrap().to_owned(), kind, g["beyond_tolerance"] == true)
        })
        .collect()
}

fn gap(day: usize, model: &str, kind: &str) -> (String, String, String, bool) {
    (DAYS[day].to_owned(), model.to_owned(), kind.to_owned(), true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_exports_reconcile_and_three_known_differences_are_found_and_classified() {
    let env = TestEnv::new("provider");
    env.run_ledger(&["migrate"]);
    let events = events();
    process_events(&env, &events);
    let matching = book(&events);

    // Matching exports pass: OpenAI as JSON and as CSV, Anthropic as JSON.
    let (usage, costs) = openai_exports(&matching);
    let (ou, oc) = (write(&usage, "json"), write(&costs, "json"));
    let (code, report) = reconcile(&env, "openai", &[&ou, &oc], "0");
    assert_eq!((code, gaps(&report)), (0, vec![]), "{report:#}");
    assert_eq!((report["compared"].as_u64(), report["prices_compared"].as_bool()), (Some(4), Some(true)));
    let mut csv = "start_time,end_time,model,input_tokens,input_cached_tokens,output_tokens,num_model_requests\n".to_owned();
    for ((d, m), f) in matching.iter().filter(|((_, m), _)| m.starts_with("gpt")) {
        let start = day_start(*d).timestamp();
        let input: u64 = f.tokens[..4].iter().sum();
        csv.push_str(&format!("{start},{},{m},{input},{},{},{}\n", start + 86_400, f.tokens[1], f.tokens[4], f.requests));
    }
    let ocsv = write(&csv, "csv");
    assert_eq!(reconcile(&env, "openai", &[&ocsv, &oc], "0").0, 0, "the CSV form passes too");
    let (usage, costs) = anthropic_exports(&matching);
    let (au, ac) = (write(&usage, "json"), write(&costs, "json"));
    let (code, report) = reconcile(&env, "anthropic", &[&au, &ac], "0");
    assert_eq!((code, gaps(&report)), (0, vec![]), "{report:#}");
    let wrong = env.ledger().args(["reconcile", "provider", "--provider", "openai", "--file"]).arg(&au).output().unwrap();
    assert_eq!(wrong.status.code(), Some(1), "an Anthropic file is not an OpenAI export");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("pass the matching --provider"));

    // OpenAI, three differences: two billed calls the ledger lacks, 1,000 tokens reported as cached
    // instead of uncached, and an output price 10% above the catalog's.
    let mut openai = matching.clone();
    let f = openai.get_mut(&(0, GPT4O.to_owned())).unwrap();
    f.requests += 2;
    f.tokens[0] += 3_000;
    f.tokens[4] += 500;
    let f = openai.get_mut(&(1, MINI.to_owned())).unwrap();
    f.tokens[0] -= 1_000;
    f.tokens[1] += 1_000;
    let f = openai.get_mut(&(1, GPT4O.to_owned())).unwrap();
    f.cost[4] = f.cost[4] * 11 / 10;
    let (usage, costs) = openai_exports(&openai);
    let (du, dc) = (write(&usage, "json"), write(&costs, "json"));
    let (code, report) = reconcile(&env, "openai", &[&du, &dc], "0");
    assert_eq!(code, 2, "gaps beyond the tolerance fail the run: {report:#}");
    assert_eq!(
        gaps(&report),
        vec![
            gap(0, GPT4O, "missing_calls / missing calls (not in the ledger)"),
            gap(1, GPT4O, "price_mismatch / price mismatch"),
            gap(1, MINI, "token_class_mismatch / token class mismatch (cache)"),
        ]
    );
    // Within a 50% tolerance the same three are listed, and the run passes.
    let (code, report) = reconcile(&env, "openai", &[&du, &dc], "50");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(gaps(&report).iter().filter(|g| !g.3).count(), 3, "listed, within the tolerance: {report:#}");

    // Anthropic, three differences: a day's model the provider does not bill, 200 tokens of 5
    // minute cache writes reported as 1 hour writes, and an output amount one cent higher.
    let mut anthropic = matching.clone();
    anthropic.remove(&(1, HAIKU.to_owned()));
    let f = anthropic.get_mut(&(0, SONNET.to_owned())).unwrap();
    f.tokens[2] -= 200;
    f.tokens[3] += 200;
    anthropic.get_mut(&(0, HAIKU.to_owned())).unwrap().cost[4] += 10_000_000_000;
    let (usage, costs) = anthropic_exports(&anthropic);
    let (du2, dc2) = (write(&usage, "json"), write(&costs, "json"));
    let (code, report) = reconcile(&env, "anthropic", &[&du2, &dc2], "0");
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        gaps(&report),
        vec![
            gap(0, HAIKU, "price_mismatch / price mismatch"),
            gap(0, SONNET, "token_class_mismatch / token class mismatch (cache)"),
            gap(1, HAIKU, "missing_calls / missing calls (not billed by the provider)"),
        ]
    );
    let table = env
        .ledger()
        .args(["reconcile", "provider", "--provider", "anthropic", "--file"])
        .arg(&du2)
        .arg("--file")
        .arg(&dc2)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("FAIL: 3 gap(s) beyond the tolerance") && text.contains("cache write 1h"), "{text}");
    for f in [ou, oc, ocsv, au, ac, du, dc, du2, dc2] {
        let _ = std::fs::remove_file(f);
    }
}
