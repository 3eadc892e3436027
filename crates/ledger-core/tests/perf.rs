//! A rough timing of `Catalog::price` on the real LiteLLM file (ignored by default; the criterion
//! benchmark lives in `benches/`). Run: `cargo test --release -p ledger-core --test perf -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use ledger_core::catalog::{Catalog, CatalogSource};

#[test]
#[ignore = "timing, run explicitly in release mode"]
fn price_is_fast_on_the_real_catalog() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../catalog/sources/litellm-1.110.2-model_prices_and_context_window.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the real LiteLLM file {} must be in the repository: {e}", path.display()));
    let (src, _) = CatalogSource::from_litellm_json("litellm", common::epoch(), &text).unwrap();
    let catalog = Catalog::new(vec![src]).unwrap();
    let mut events = Vec::new();
    for (model, provider, tier) in [
        ("gpt-4o", "openai", None),
        ("gemini-2.5-pro", "gcp.gemini", Some("priority")),
        ("gemini-2.5-flash", "gemini", None),
        ("claude-sonnet-4-5", "anthropic", Some("batch")),
        ("mistral-large-latest", "mistral", None),
    ] {
        let mut e = common::io(model, 250_000, 1_000, tier);
        e.provider = provider.to_owned();
        e.cache_read_input_tokens = 1_000;
        e.reasoning_output_tokens = 100;
        events.push((e.validate().unwrap(), e));
    }
    // best of 400 batches of 5,000: the machine is shared, the minimum is the least disturbed
    let batch = 5_000;
    let mut best = u128::MAX;
    let mut total = 0i128;
    for _ in 0..400 {
        let start = Instant::now();
        for i in 0..batch {
            let (t, e) = &events[i % events.len()];
            total += catalog.price(e, t).unwrap().cost.picos();
        }
        best = best.min(start.elapsed().as_nanos() / batch as u128);
    }
    eprintln!("Catalog::price: {best} ns/event, best of 400 batches of 5,000 (checksum {total})");
}
