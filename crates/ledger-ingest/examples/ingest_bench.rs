//! Load test of a running `ledger ingest`: batches of events posted over several concurrent
//! connections; prints accepted events per second and request latencies. Goal (issue 6):
//! at least 50,000 events/s with batches of 1,000.
//!
//! `benches/ingest.sh` starts a release `ledger ingest` on its own topics and runs this:
//!
//! ```text
//! cargo run --release -p ledger-ingest --example ingest_bench -- \
//!     --url http://127.0.0.1:18090/v1/usage --key KEY --tenant acme --connections 8 --batch 1000 --seconds 20
//! ```

use std::time::{Duration, Instant};

use ledger_loadgen::{Generator, GeneratorOptions};

struct Options {
    url: String,
    key: String,
    tenant: String,
    connections: usize,
    batch: usize,
    seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        url: "http://127.0.0.1:18090/v1/usage".to_owned(),
        key: String::new(),
        tenant: "acme".to_owned(),
        connections: 8,
        batch: 1_000,
        seconds: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag} needs a number, got {value:?}"));
        match flag.as_str() {
            "--url" => o.url = value.clone(),
            "--key" => o.key = value.clone(),
            "--tenant" => o.tenant = value.clone(),
            "--connections" => o.connections = number()? as usize,
            "--batch" => o.batch = number()? as usize,
            "--seconds" => o.seconds = number()?,
            _ => return Err(format!("unknown flag {flag}; flags: --url --key --tenant --connections --batch --seconds")),
        }
    }
    if o.key.is_empty() {
        return Err("--key KEY is required (an API key of --tenant in the server's keys file)".to_owned());
    }
    Ok(o)
}

/// Distinct request bodies: `batch` events of the tenant each, unique event ids.
fn bodies(o: &Options, count: usize) -> Vec<bytes::Bytes> {
    let mut generator = Generator::new(GeneratorOptions {
        seed: 7,
        tenants: 1,
        id_prefix: format!("ingest-bench-{}", std::process::id()),
        ..GeneratorOptions::default()
    });
    (0..count)
        .map(|_| {
            let events: Vec<_> = (0..o.batch)
                .map(|_| {
                    let mut e = generator.valid_event();
                    e.attribution.tenant_id = o.tenant.clone();
                    e
                })
                .collect();
            bytes::Bytes::from(serde_json::to_vec(&events).expect("JSON"))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ingest_bench: {e}");
            std::process::exit(2);
        }
    };
    let bodies = bodies(&o, 64);
    let size = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len();
    eprintln!(
        "posting batches of {} events (~{} KiB each) over {} connections for {} s to {}",
        o.batch,
        size / 1024,
        o.connections,
        o.seconds,
        o.url
    );
    let client = reqwest::Client::builder().pool_max_idle_per_host(o.connections).build().expect("HTTP client");
    let started = Instant::now();
    let end = started + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    for c in 0..o.connections {
        let (client, bodies, url, key) = (client.clone(), bodies.clone(), o.url.clone(), o.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0u64;
            let mut refused = std::collections::BTreeMap::<u16, u64>::new();
            let mut i = c;
            while Instant::now() < end {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let t = Instant::now();
                match client.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        if status == 202 {
                            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                            accepted += v["accepted"].as_u64().unwrap_or(0);
                            latencies.push(t.elapsed());
                        } else {
                            *refused.entry(status).or_default() += 1;
                            if refused.values().sum::<u64>() == 1 {
                                eprintln!("answer {status}: {text}");
                            }
                        }
                    }
                    Err(e) => {
                        *refused.entry(0).or_default() += 1;
                        eprintln!("request failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (accepted, latencies, refused)
        }));
    }
    let mut accepted = 0u64;
    let mut latencies = Vec::new();
    let mut refused = std::collections::BTreeMap::<u16, u64>::new();
    for t in tasks {
        let (a, l, r) = t.await.expect("task");
        accepted += a;
        latencies.extend(l);
        for (k, v) in r {
            *refused.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies.get((latencies.len().saturating_sub(1)) * p / 100).copied().unwrap_or_default();
    let per_sec = u128::from(accepted) * 1_000_000 / elapsed.as_micros().max(1);
    println!(
        "ingest: {accepted} events accepted (202) in {elapsed:.1?} = {per_sec} events/s; {} requests, latency p50 {:.1?} p99 {:.1?} max {:.1?}; refused: {refused:?}",
        latencies.len(),
        pct(50),
        pct(99),
        pct(100)
    );
}
