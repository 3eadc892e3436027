//! Cost of `ledger_sdk::Emitter::emit` on the caller's thread. Goal (issue 6): under 2 µs per event.
//!
//! `cargo bench -p ledger-benches --bench sdk_emit` against the stack's Kafka
//! (`LEDGER_BENCH_KAFKA_BROKERS`, default 127.0.0.1:9092; topic `bench.sdk-emit.v1`). The
//! background thread delivers concurrently, as in a service; each sample's events are flushed
//! outside the timed region so that every timed `emit` takes the accept path (the bench
//! panics if any event was dropped).
//!
//! - `emit`: a built event handed to `emit` (validate + enqueue).
//! - `build_and_emit`: the whole caller cost: provider usage -> event (UUIDv7 id, clock) -> `emit`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger_kafka::KafkaConfig;
use ledger_sdk::{AnthropicUsage, Emitter, EmitterConfig, EventBuilder, OverflowPolicy, UsageEvent};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn emitter() -> Emitter {
    let brokers = std::env::var("LEDGER_BENCH_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let kafka = KafkaConfig { brokers, ..KafkaConfig::default() };
    let topic = "bench.sdk-emit.v1".to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let spec =
        ledger_kafka::admin::TopicSpec { name: topic.clone(), partitions: 4, compacted: false, replication: Default::default() };
    if let Err(e) = runtime.block_on(ledger_kafka::admin::ensure_topics(&kafka, &[spec])) {
        eprintln!("could not create {topic} ({e}); is the stack up? (`scripts/stack.sh up`)");
    }
    Emitter::new(EmitterConfig {
        kafka,
        topic,
        queue_capacity: 50_000_000,
        overflow: OverflowPolicy::DropNewest,
        drop_flush_timeout: Duration::from_secs(60),
        ..EmitterConfig::default()
    })
    .expect("emitter")
}

fn builder(i: u64) -> EventBuilder {
    EventBuilder::anthropic(
        "claude-sonnet-4-5",
        AnthropicUsage {
            input_tokens: 40 + i % 100,
            output_tokens: 350,
            cache_read_input_tokens: 12_000,
            cache_creation_input_tokens: 2_000,
            cache_creation_1h_input_tokens: 0,
        },
    )
    .tenant("acme")
    .team("search")
    .project("search-1")
    .feature("answer")
    .environment("prod")
}

fn bench(c: &mut Criterion) {
    let emitter = emitter();
    let template: UsageEvent = builder(0).build().expect("event");
    let mut group = c.benchmark_group("sdk");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("emit", |b| {
        b.iter_custom(|iters| {
            let events: Vec<UsageEvent> = (0..iters)
                .map(|i| {
                    let mut e = template.clone();
                    e.event_id = format!("bench-{i}");
                    e
                })
                .collect();
            let started = Instant::now();
            for e in events {
                black_box(emitter.emit(e)).expect("accepted");
            }
            let elapsed = started.elapsed();
            emitter.flush(Duration::from_secs(120)).expect("flush");
            elapsed
        })
    });

    group.bench_function("build_and_emit", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for i in 0..iters {
                let event = builder(i).build().expect("event");
                black_box(emitter.emit(event)).expect("accepted");
            }
            let elapsed = started.elapsed();
            emitter.flush(Duration::from_secs(120)).expect("flush");
            elapsed
        })
    });
    group.finish();
    let m = emitter.metrics();
    eprintln!("emitter: {m:?}");
    assert_eq!(m.dropped_newest, 0, "every timed emit took the accept path");
}

criterion_group!(benches, bench);
criterion_main!(benches);
