//! The processor's per-event CPU path: Avro decode + validate + price + aggregate into the
//! hour-bucket spend map. Goal (issue "Pricing engine"): 1,000,000 events/s per core.
//!
//! `cargo bench -p ledger-benches --bench event_path` prints the time per event and the
//! throughput (criterion's `thrpt` line, in events per second), and the time to load the shipped
//! catalog (`catalog_load`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger_core::aggregate::SpendAggregator;
use ledger_core::catalog::CatalogSource;
use ledger_core::UsageEvent;
use ledger_schema::Codec;

/// The `ledger` binary's allocator, so the numbers are the processor's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;

fn event_path(c: &mut Criterion) {
    let codec = Codec::<UsageEvent>::new().expect("codec");
    let catalog = ledger_benches::repo_catalog();
    let messages = ledger_benches::encoded_events(&codec, EVENTS);

    let mut group = c.benchmark_group("event_path");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("decode (borrowed view)", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(codec.decode_with(m, |e| e.input_tokens).expect("decode"));
            }
        })
    });
    let events: Vec<UsageEvent> = messages.iter().map(|m| codec.decode(m).expect("decode")).collect();
    group.bench_function("validate+price", |b| {
        b.iter(|| {
            for e in &events {
                black_box(catalog.price_event(e).expect("priced"));
            }
        })
    });
    // The same events with the earlier 65-model catalog: lookups are by hash, so the size of
    // the catalog (4,029 priced entries against 65) must not show.
    let small = ledger_benches::small_catalog();
    group.bench_function("validate+price (65-model catalog)", |b| {
        b.iter(|| {
            for e in &events {
                black_box(small.price_event(e).expect("priced"));
            }
        })
    });
    // The window map persists across batches in the processor (one per partition), so the
    // steady state is measured: the keys of the load exist, every call adds to eight of them
    // (two at once, six through its cell), and each iteration of 10,000 events ends its batch
    // by settling the cells into those keys, as the processor does once per batch.
    let mut spend = SpendAggregator::new();
    group.bench_function("decode+validate+price+aggregate", |b| {
        b.iter(|| {
            ledger_benches::event_path(&codec, &catalog, &messages, &mut spend);
            black_box(spend.len());
        })
    });
    // What the processor adds per accepted event before the insert: the owned copy of the
    // strings that the ledger row keeps (reported separately; not part of the goal's path).
    group.bench_function("decode to an owned event", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(codec.decode(m).expect("decode"));
            }
        })
    });
    group.finish();
}

/// Loading the shipped catalog, as `ledger process` does at start (parse, read every price from
/// its text, resolve the price tables): docs/pricing.md's 300 ms budget, in release.
fn catalog_load(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog/sources/litellm-1.110.2-model_prices_and_context_window.json");
    let text = std::fs::read_to_string(path).expect("the shipped catalog");
    let mut group = c.benchmark_group("catalog_load");
    group.sample_size(20);
    group.bench_function("shipped catalog (4,878 entries)", |b| {
        b.iter(|| {
            let (source, _) =
                CatalogSource::from_litellm_json("litellm", chrono::DateTime::UNIX_EPOCH, black_box(&text)).expect("loads");
            black_box(source.len())
        })
    });
    group.finish();
}

criterion_group!(benches, event_path, catalog_load);
criterion_main!(benches);
