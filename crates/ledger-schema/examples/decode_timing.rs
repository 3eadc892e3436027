//! Quick decode/encode timing of the hot path (the criterion bench lives in `benches/`).
//!
//! `cargo run --release -p ledger-schema --example decode_timing`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use ledger_core::UsageEvent;
use ledger_schema::{UsageEventCodec, HEADER_LEN};

fn event(i: u64) -> UsageEvent {
    UsageEvent {
        event_id: format!("01JD6Q7ZK3W8X9V2N4M5P6R7S{i:06}"),
        event_time: chrono::DateTime::from_timestamp_micros(1_793_534_400_000_000 + i as i64).unwrap(),
        tenant_id: "acme".into(),
        team: Some("search".into()),
        project: Some("ranker".into()),
        user_id: None,
        api_key_id: Some("key-42".into()),
        feature: None,
        environment: Some("prod".into()),
        tags: BTreeMap::new(),
        provider: "openai".into(),
        operation: "chat".into(),
        request_model: "gpt-4o".into(),
        response_model: Some("gpt-4o-2024-08-06".into()),
        routed_from_model: None,
        input_tokens: 1200,
        cache_read_input_tokens: 200,
        cache_creation_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        output_tokens: 300,
        reasoning_output_tokens: 0,
        service_tier: None,
        provided_cost_usd: None,
        latency_ms: Some(850),
        status: "ok".into(),
        response_id: Some("chatcmpl-abc".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    }
}

fn time<F: FnMut(usize)>(label: &str, n: usize, mut f: F) {
    for i in 0..n / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:<55} {ns:>8.0} ns/event");
}

fn main() {
    let codec = UsageEventCodec::new().expect("schemas load");
    let mut with_tags = event(0);
    with_tags.tags = BTreeMap::from([("region".into(), "eu-west-1".into()), ("tier".into(), "gold".into())]);
    with_tags.provided_cost_usd = Some("0.004250000000".parse().unwrap());
    let cases = [("typical event", event(0)), ("with 2 tags + provided cost", with_tags)];
    let n = 1_000_000;
    for (name, e) in cases {
        let msgs: Vec<Vec<u8>> = (0..1024).map(|_| codec.encode(&e).unwrap()).collect();
        println!("{name}: {} bytes per message", msgs[0].len());
        time(&format!("  decode (fast path, {name})"), n, |i| {
            black_box(codec.decode(black_box(&msgs[i & 1023])).unwrap());
        });
        let mut buf = Vec::with_capacity(512);
        time(&format!("  encode_into (reused buffer, {name})"), n, |_| {
            buf.clear();
            codec.encode_into(black_box(&e), &mut buf).unwrap();
            black_box(&buf);
        });
        let schema = codec.schema().schema();
        let datum = &msgs[0][HEADER_LEN..];
        time(&format!("  apache-avro from_avro_datum, for comparison"), n / 10, |_| {
            let mut r = black_box(datum);
            black_box(apache_avro::from_avro_datum(schema, &mut r, None).unwrap());
        });
    }
}
