//! Quick decode/encode timing of the hot path (the criterion bench lives in `benches/`).
//!
//! `cargo run --release -p ledger-schema --example decode_timing`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use ledger_core::attribution::Attribution;
use ledger_core::UsageEvent;
use ledger_schema::{UsageEventCodec, HEADER_LEN};

/// Allocation-free floor: the same datum into borrowed `&str`s (not a `UsageEvent`).
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Borrowed<'a> {
    event_id: &'a str,
    event_time: i64,
    tenant_id: &'a str,
    team: Option<&'a str>,
    project: Option<&'a str>,
    user_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    feature: Option<&'a str>,
    environment: Option<&'a str>,
    tags: BTreeMap<&'a str, &'a str>,
    provider: &'a str,
    operation: &'a str,
    request_model: &'a str,
    response_model: Option<&'a str>,
    routed_from_model: Option<&'a str>,
    input_tokens: i64,
    cache_read_input_tokens: i64,
    cache_creation_input_tokens: i64,
    cache_creation_1h_input_tokens: i64,
    output_tokens: i64,
    reasoning_output_tokens: i64,
    service_tier: Option<&'a str>,
    provided_cost_usd: Option<&'a str>,
    latency_ms: Option<i64>,
    status: &'a str,
    response_id: Option<&'a str>,
    trace_id: Option<&'a str>,
}

/// Same as `Borrowed` but fields taken by position (keys ignored), to measure key matching.
macro_rules! positional {
    ($name:ident { $($f:ident : $t:ty),* $(,)? }) => {
        #[allow(dead_code)]
        struct $name<'a> { $($f: $t),* }
        impl<'de: 'a, 'a> serde::Deserialize<'de> for $name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("record") }
                    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                        Ok($name { $($f: {
                            m.next_key::<serde::de::IgnoredAny>()?.ok_or_else(|| serde::de::Error::missing_field(stringify!($f)))?;
                            m.next_value::<$t>()?
                        }),* })
                    }
                }
                d.deserialize_struct(stringify!($name), &[], V(std::marker::PhantomData))
            }
        }
    };
}

positional!(Positional {
    event_id: &'a str, event_time: i64, tenant_id: &'a str, team: Option<&'a str>, project: Option<&'a str>,
    user_id: Option<&'a str>, api_key_id: Option<&'a str>, feature: Option<&'a str>, environment: Option<&'a str>,
    tags: BTreeMap<&'a str, &'a str>, provider: &'a str, operation: &'a str, request_model: &'a str,
    response_model: Option<&'a str>, routed_from_model: Option<&'a str>, input_tokens: i64,
    cache_read_input_tokens: i64, cache_creation_input_tokens: i64, cache_creation_1h_input_tokens: i64,
    output_tokens: i64, reasoning_output_tokens: i64, service_tier: Option<&'a str>,
    provided_cost_usd: Option<&'a str>, latency_ms: Option<i64>, status: &'a str, response_id: Option<&'a str>,
    trace_id: Option<&'a str>,
});

fn event(i: u64) -> UsageEvent {
    UsageEvent {
        event_id: format!("01JD6Q7ZK3W8X9V2N4M5P6R7S{i:06}"),
        event_time: chrono::DateTime::from_timestamp_micros(1_793_534_400_000_000 + i as i64).unwrap(),
        attribution: Attribution {
            tenant_id: "acme".into(),
            team: Some("search".into()),
            project: Some("ranker".into()),
            user_id: None,
            api_key_id: Some("key-42".into()),
        },
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

/// CPU time of this thread in nanoseconds (Linux), so a loaded machine does not inflate it.
fn thread_cpu_ns() -> Option<u128> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn time<F: FnMut(usize)>(label: &str, n: usize, mut f: F) {
    for i in 0..n / 10 {
        f(i);
    }
    let mut best_cpu = u128::MAX;
    let mut best_wall = u128::MAX;
    for _ in 0..5 {
        let cpu0 = thread_cpu_ns();
        let start = Instant::now();
        for i in 0..n {
            f(i);
        }
        best_wall = best_wall.min(start.elapsed().as_nanos());
        if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
            best_cpu = best_cpu.min(b - a);
        }
    }
    let per = |t: u128| t / n as u128;
    println!("{label:<58} cpu {:>5} ns/event   wall {:>5} ns/event (best of 5)", per(best_cpu), per(best_wall));
}

fn main() {
    let codec = UsageEventCodec::new().expect("schemas load");
    let mut with_tags = event(0);
    with_tags.tags = BTreeMap::from([("region".into(), "eu-west-1".into()), ("tier".into(), "gold".into())]);
    with_tags.provided_cost_usd = Some("0.004250000000".parse().unwrap());
    let cases = [("typical event", event(0)), ("with 2 tags + provided cost", with_tags)];
    let n = 200_000;
    for (name, e) in cases {
        let msgs: Vec<Vec<u8>> = (0..1024).map(|_| codec.encode(&e).unwrap()).collect();
        println!("{name}: {} bytes per message", msgs[0].len());
        time(&format!("  decode (fast path, {name})"), n, |i| {
            black_box(codec.decode(black_box(&msgs[i & 1023])).unwrap());
        });
        let fast = codec.schema().fast_schema();
        time("  floor: datum -> borrowed &str struct, no allocation", n, |i| {
            let m = black_box(&msgs[i & 1023]);
            black_box(serde_avro_fast::from_datum_slice::<Borrowed<'_>>(&m[HEADER_LEN..], fast).unwrap());
        });
        time("  floor, fields by position (keys not matched)", n, |i| {
            let m = black_box(&msgs[i & 1023]);
            black_box(serde_avro_fast::from_datum_slice::<Positional<'_>>(&m[HEADER_LEN..], fast).unwrap());
        });
        let mut buf = Vec::with_capacity(512);
        time(&format!("  encode_into (reused buffer, {name})"), n, |_| {
            buf.clear();
            codec.encode_into(black_box(&e), &mut buf).unwrap();
            black_box(&buf);
        });
        let schema = codec.schema().schema();
        let datum = &msgs[0][HEADER_LEN..];
        time("  apache-avro from_avro_datum, for comparison", n / 10, |_| {
            let mut r = black_box(datum);
            black_box(apache_avro::from_avro_datum(schema, &mut r, None).unwrap());
        });
    }
}
