//! Open-loop latency test of a running `ledger router serve`: `POST /v1/decide` at a fixed
//! rate over several keep-alive connections; prints the achieved rate, the decisions, and the
//! latency percentiles measured from each request's *scheduled* time (so a stalled server is
//! not hidden by fewer requests being sent: no coordinated omission).
//!
//! `benches/router_http.sh` starts a release sidecar and enforcer on their own topics with a
//! lease budget and runs this:
//!
//! ```text
//! cargo run --release -p ledger-ingest --example decide_bench -- \
//!     --url http://127.0.0.1:18091/v1/decide --key KEY --rate 5000 --connections 16 --seconds 30
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct Options {
    url: String,
    key: String,
    rate: u64,
    connections: u64,
    seconds: u64,
    model: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        url: "http://127.0.0.1:18091/v1/decide".to_owned(),
        key: String::new(),
        rate: 5_000,
        connections: 16,
        seconds: 30,
        model: "gpt-4o".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag} needs a number, got {value:?}"));
        match flag.as_str() {
            "--url" => o.url = value.clone(),
            "--key" => o.key = value.clone(),
            "--rate" => o.rate = number()?.max(1),
            "--connections" => o.connections = number()?.max(1),
            "--seconds" => o.seconds = number()?,
            "--model" => o.model = value.clone(),
            _ => return Err(format!("unknown flag {flag}; flags: --url --key --rate --connections --seconds --model")),
        }
    }
    if o.key.is_empty() {
        return Err("--key KEY is required (an API key in the sidecar's keys file)".to_owned());
    }
    Ok(o)
}

#[derive(Default)]
struct Outcome {
    /// Microseconds from the scheduled send to the whole answer.
    latencies: Vec<u64>,
    /// Microseconds from the actual send to the whole answer: without the load generator's own
    /// wake-up lag (tokio's timer has a 1 ms resolution, which the scheduled figure includes).
    service: Vec<u64>,
    decisions: BTreeMap<String, u64>,
    errors: u64,
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("decide_bench: {e}");
            std::process::exit(2);
        }
    };
    let body = bytes::Bytes::from(
        serde_json::json!({"team": "bench", "model": o.model, "input_tokens": 1200, "max_tokens": 500}).to_string(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(o.connections).unwrap_or(64))
        .build()
        .expect("HTTP client");
    eprintln!("POST {} at {} decisions/s over {} connections for {} s", o.url, o.rate, o.connections, o.seconds);
    // Each connection sends every `period`, staggered, so that together they send `rate`/s.
    let period = Duration::from_nanos(1_000_000_000 * o.connections / o.rate);
    let started = Instant::now() + Duration::from_millis(200);
    let end = started + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    for c in 0..o.connections {
        let (client, body, url, key) = (client.clone(), body.clone(), o.url.clone(), o.key.clone());
        let offset = Duration::from_nanos(u64::try_from(period.as_nanos()).unwrap_or(u64::MAX) / o.connections * c);
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let mut due = started + offset;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(resp) if resp.status().is_success() => {
                        let v: serde_json::Value =
                            serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or_default();
                        out.latencies.push(u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX));
                        out.service.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        *out.decisions.entry(v["decision"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
                    }
                    Ok(resp) => {
                        out.errors += 1;
                        if out.errors == 1 {
                            eprintln!("answer {}: {}", resp.status(), resp.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        out.errors += 1;
                        if out.errors == 1 {
                            eprintln!("request failed: {e}");
                        }
                    }
                }
                due += period;
            }
            out
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await.expect("task");
        all.latencies.extend(o.latencies);
        all.service.extend(o.service);
        all.errors += o.errors;
        for (k, v) in o.decisions {
            *all.decisions.entry(k).or_default() += v;
        }
    }
    let elapsed = end.saturating_duration_since(started).max(Duration::from_millis(1));
    let answers = all.latencies.len();
    println!(
        "decide: {answers} answers in {elapsed:.1?} = {} /s (target {}); latency {}; decisions {:?}; errors {}",
        u128::try_from(answers).unwrap_or(0) * 1_000_000 / elapsed.as_micros().max(1),
        o.rate,
        percentiles(all.latencies),
        all.decisions,
        all.errors
    );
    println!("from the actual send (without the generator's timer lag): {}", percentiles(all.service));
}

/// `p50 .. p90 .. p99 .. p99.9 .. max` of latencies in microseconds.
fn percentiles(mut l: Vec<u64>) -> String {
    l.sort_unstable();
    // `per_mille` of the answers were at most this fast.
    let pct = |per_mille: usize| {
        let i = l.len().saturating_sub(1) * per_mille / 1000;
        Duration::from_micros(l.get(i).copied().unwrap_or_default())
    };
    format!("p50 {:.2?} p90 {:.2?} p99 {:.2?} p99.9 {:.2?} max {:.2?}", pct(500), pct(900), pct(990), pct(999), pct(1000))
}
