//! Benchmarks live in `benches/`; this library holds what the event-path benchmark
//! (`benches/event_path.rs`) and its instruction counter (`examples/event_path_instructions.rs`)
//! share, so both measure the same code.

use chrono::{DateTime, Utc};
use ledger_core::aggregate::{hour_bucket, SpendAggregator};
use ledger_core::catalog::{Catalog, CatalogSource};
use ledger_core::UsageEvent;
use ledger_loadgen::{Generator, GeneratorOptions};
use ledger_schema::Codec;

/// The shipped catalog (LiteLLM's whole file, `catalog/sources/...`), in effect since the epoch:
/// what `ledger process` prices with by default.
pub fn repo_catalog() -> Catalog {
    catalog_file("sources/litellm-1.110.2-model_prices_and_context_window.json")
}

/// The earlier 65-model selection (`catalog/litellm-prices.json`), for comparison.
pub fn small_catalog() -> Catalog {
    catalog_file("litellm-prices.json")
}

fn catalog_file(path: &str) -> Catalog {
    let path = format!("{}/../catalog/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (source, _) = CatalogSource::from_litellm_json("litellm", DateTime::UNIX_EPOCH, &text).expect("catalog");
    Catalog::new(vec![source]).expect("catalog")
}

/// `count` valid events of the load generator, encoded as Kafka message values.
pub fn encoded_events(codec: &Codec<UsageEvent>, count: usize) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GeneratorOptions { start: Utc::now(), ..GeneratorOptions::default() });
    (0..count).map(|_| codec.encode(&generator.valid_event()).expect("encode")).collect()
}

/// The processor's per-event CPU path over `messages`: Avro decode to a borrowed view,
/// validate, price, and add to the hour-bucket spend map; then settle the map's pending cells,
/// as the processor does once per batch. Panics on an event that is not valid and priced.
#[inline(never)]
pub fn event_path(codec: &Codec<UsageEvent>, catalog: &Catalog, messages: &[Vec<u8>], spend: &mut SpendAggregator) {
    for m in messages {
        codec
            .decode_with(m, |event| {
                let tokens = event.validate().expect("valid");
                let priced = catalog.price_view(event, &tokens).expect("priced");
                let attribution = event.attribution.with_model(Some(priced.model));
                let bucket = hour_bucket(event.event_time.secs());
                spend.add_call(&attribution, bucket, priced.cost, &tokens, 0, event.event_time.micros()).expect("no overflow");
            })
            .expect("decode");
    }
    spend.settle().expect("no overflow");
}
