//! The formula of docs/pricing.md, branch by branch. Expected values are hand-computed integers of
//! pico-dollars (10^-12 USD); a per-token price of `1e-06` USD is 1,000,000 picos.

mod common;

use common::{at, catalog, epoch, event, io, source};
use ledger_core::catalog::{Catalog, CatalogError};
use ledger_core::event::RejectReason;
use ledger_core::{CostTerms, Money};

/// Input tiers at 128k and 272k, output tier at 128k only, batch / priority / flex variants,
/// cache prices and a reasoning price.
const TIERED: &str = r#"{
  "tiered": {
    "litellm_provider": "openai",
    "input_cost_per_token": 1e-06,
    "output_cost_per_token": 2e-06,
    "input_cost_per_token_above_128k_tokens": 2e-06,
    "input_cost_per_token_above_272k_tokens": 4e-06,
    "output_cost_per_token_above_128k_tokens": 3e-06,
    "input_cost_per_token_batches": 5e-07,
    "output_cost_per_token_batches": 1e-06,
    "input_cost_per_token_above_128k_tokens_batches": 1.1e-06,
    "input_cost_per_token_priority": 3e-06,
    "output_cost_per_token_priority": 6e-06,
    "input_cost_per_token_flex": 7e-07,
    "cache_read_input_token_cost": 1e-07,
    "cache_read_input_token_cost_above_128k_tokens": 2e-07,
    "cache_creation_input_token_cost": 1.25e-06,
    "cache_creation_input_token_cost_above_1hr": 2.2e-06,
    "output_cost_per_reasoning_token": 8e-06
  },
  "bare": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05},
  "cw-only": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
              "cache_creation_input_token_cost": 3.75e-06},
  "cheap": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
  "expensive": {"input_cost_per_token": 1e-05, "output_cost_per_token": 3e-05},
  "huge": {"input_cost_per_token": 1e20, "output_cost_per_token": 0}
}"#;

fn cost(c: &Catalog, e: &ledger_core::UsageEvent) -> i128 {
    c.price_event(e).unwrap_or_else(|r| panic!("{r}")).cost.picos()
}

#[test]
fn long_context_boundaries_and_multi_tier_example() {
    let c = catalog(TIERED);
    // (input tokens, output tokens, expected picos)
    let table: [(i64, i64, i128); 7] = [
        // plain: 1000 * 1e6 + 500 * 2e6
        (1_000, 500, 2_000_000_000),
        // exactly 128k is not above 128k: plain prices. 128000 * 1e6 + 10 * 2e6
        (128_000, 10, 128_020_000_000),
        // 128001: input 2e6, output 3e6. 128001 * 2e6 + 10 * 3e6
        (128_001, 10, 256_032_000_000),
        // exactly 272k: still the 128k tier. 272000 * 2e6 + 10 * 3e6
        (272_000, 10, 544_030_000_000),
        // 272001: input 272k tier 4e6, output keeps its 128k tier 3e6
        (272_001, 10, 1_088_034_000_000),
        // docs/pricing.md's example: 300k request pays the 272k input price and the 128k output price.
        // 300000 * 4e6 + 1000 * 3e6
        (300_000, 1_000, 1_203_000_000_000),
        // zero tokens cost zero
        (0, 0, 0),
    ];
    for (input, output, expected) in table {
        assert_eq!(cost(&c, &io("tiered", input, output, None)), expected, "input {input}, output {output}");
    }
}

#[test]
fn service_tiers_with_and_without_combined_variants() {
    let c = catalog(TIERED);
    let table: [(&str, i64, i64, i128); 10] = [
        // batch -> _batches: 1000 * 5e5 + 500 * 1e6
        ("batch", 1_000, 500, 1_000_000_000),
        // batch above 128k: input takes the combined _above_128k_tokens_batches (1.1e6);
        // output has no combined variant, and its _batches price (1e6) wins over the plain
        // tier's long-context price (3e6). 200000 * 1.1e6 + 500 * 1e6
        ("batch", 200_000, 500, 220_500_000_000),
        // batch above 272k: the batch tier only has 128k, which wins over the plain 272k price.
        // 300000 * 1.1e6 + 500 * 1e6
        ("batch", 300_000, 500, 330_500_000_000),
        // batch exactly at 128k: _batches. 128000 * 5e5 + 500 * 1e6
        ("batch", 128_000, 500, 64_500_000_000),
        // priority: 1000 * 3e6 + 500 * 6e6
        ("priority", 1_000, 500, 6_000_000_000),
        // priority has no long-context variant: _priority wins over _above_128k_tokens.
        // 200000 * 3e6 + 500 * 6e6
        ("priority", 200_000, 500, 603_000_000_000),
        // flex: input 7e5, output has no flex price -> plain 2e6. 1000 * 7e5 + 500 * 2e6
        ("flex", 1_000, 500, 1_700_000_000),
        // flex above 128k: input _flex 7e5, output falls to plain tier long-context 3e6.
        // 200000 * 7e5 + 500 * 3e6
        ("flex", 200_000, 500, 141_500_000_000),
        // an unknown tier falls back to the plain prices: 1000 * 1e6 + 500 * 2e6
        ("scale", 1_000, 500, 2_000_000_000),
        // default means no tier: 1000 * 1e6 + 500 * 2e6
        ("default", 1_000, 500, 2_000_000_000),
    ];
    for (tier, input, output, expected) in table {
        assert_eq!(cost(&c, &io("tiered", input, output, Some(tier))), expected, "{tier} {input} {output}");
    }
    // an unknown tier above 128k uses the plain tier's long-context prices: 200000*2e6 + 500*3e6
    assert_eq!(cost(&c, &io("tiered", 200_000, 500, Some("scale"))), 401_500_000_000);
}

#[test]
fn cache_reads_writes_and_reasoning_are_priced_per_class() {
    let c = catalog(TIERED);
    let mut e = io("tiered", 10_000, 1_000, None);
    e.cache_read_input_tokens = 2_000;
    e.cache_creation_input_tokens = 3_000;
    e.cache_creation_1h_input_tokens = 1_000;
    e.reasoning_output_tokens = 400;
    let p = c.price_event(&e).unwrap();
    let expected = CostTerms {
        input: Money::from_picos(4_000 * 1_000_000),          // uncached 10000-2000-3000-1000
        cache_read: Money::from_picos(2_000 * 100_000),       // 1e-07
        cache_write: Money::from_picos(3_000 * 1_250_000),    // 1.25e-06 (5 minutes)
        cache_write_1h: Money::from_picos(1_000 * 2_200_000), // 2.2e-06 (1 hour)
        output: Money::from_picos(600 * 2_000_000),           // non-reasoning output
        reasoning: Money::from_picos(400 * 8_000_000),        // output_cost_per_reasoning_token
    };
    assert_eq!(p.terms, expected);
    assert_eq!(p.cost.picos(), 14_550_000_000);
    assert_eq!(p.model.as_ref(), "tiered");

    // cache reads follow the long-context tier too: input 200000 (> 128k), 100000 read.
    let mut e = io("tiered", 200_000, 0, None);
    e.cache_read_input_tokens = 100_000;
    let p = c.price_event(&e).unwrap();
    assert_eq!(p.terms.input.picos(), 100_000 * 2_000_000);
    assert_eq!(p.terms.cache_read.picos(), 100_000 * 200_000);
    assert_eq!(p.cost.picos(), 220_000_000_000);
}

#[test]
fn fallbacks_cache_read_cache_write_1h_and_reasoning() {
    let c = catalog(TIERED);
    let tokens = |model: &str| {
        let mut e = io(model, 10_000, 1_000, None);
        e.cache_read_input_tokens = 2_000;
        e.cache_creation_input_tokens = 3_000;
        e.cache_creation_1h_input_tokens = 1_000;
        e.reasoning_output_tokens = 400;
        e
    };
    // bare: cr -> in, cw -> in, cw1h -> cw -> in (3e6), rs -> out (1.5e7)
    let p = c.price_event(&tokens("bare")).unwrap();
    assert_eq!(
        p.terms,
        CostTerms {
            input: Money::from_picos(4_000 * 3_000_000),
            cache_read: Money::from_picos(2_000 * 3_000_000),
            cache_write: Money::from_picos(3_000 * 3_000_000),
            cache_write_1h: Money::from_picos(1_000 * 3_000_000),
            output: Money::from_picos(600 * 15_000_000),
            reasoning: Money::from_picos(400 * 15_000_000),
        }
    );
    assert_eq!(p.cost.picos(), 45_000_000_000);
    // cw-only: cw1h -> cw (3.75e6), cr -> in (3e6)
    let p = c.price_event(&tokens("cw-only")).unwrap();
    assert_eq!(p.terms.cache_write_1h.picos(), 1_000 * 3_750_000);
    assert_eq!(p.terms.cache_write.picos(), 3_000 * 3_750_000);
    assert_eq!(p.terms.cache_read.picos(), 2_000 * 3_000_000);
    assert_eq!(p.terms.reasoning.picos(), 400 * 15_000_000);
    // 12e9 + 6e9 + 11.25e9 + 3.75e9 + 9e9 + 6e9
    assert_eq!(p.cost.picos(), 48_000_000_000);
}

const NAMES: &str = r#"{
  "gpt-x": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
  "openai/gpt-x": {"litellm_provider": "openai", "input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06},
  "openai/gpt-y": {"litellm_provider": "openai", "input_cost_per_token": 2e-06, "output_cost_per_token": 2e-06},
  "vendor-model": {"input_cost_per_token": 3e-06, "output_cost_per_token": 3e-06},
  "meta-llama/Llama-3": {"input_cost_per_token": 4e-06, "output_cost_per_token": 4e-06}
}"#;

#[test]
fn name_matching_m_then_p_slash_m_then_rest() {
    let c = catalog(NAMES);
    let model = |request: &str, provider: &str| {
        let mut e = io(request, 1_000, 0, None);
        e.provider = provider.to_owned();
        c.price_event(&e).map(|p| (p.model.to_string(), p.cost.picos()))
    };
    // m itself wins over p/m
    assert_eq!(model("gpt-x", "openai").unwrap(), ("gpt-x".to_owned(), 1_000_000_000));
    // p/m
    assert_eq!(model("gpt-y", "openai").unwrap(), ("openai/gpt-y".to_owned(), 2_000_000_000));
    // rest of x/rest
    assert_eq!(model("custom/vendor-model", "openai").unwrap(), ("vendor-model".to_owned(), 3_000_000_000));
    // rest splits at the first slash only
    assert_eq!(model("together_ai/meta-llama/Llama-3", "together").unwrap(), ("meta-llama/Llama-3".to_owned(), 4_000_000_000));
    // nothing fuzzier: other provider, no prefix match, no case folding
    assert_eq!(model("gpt-y", "anthropic").unwrap_err().reason, RejectReason::UnknownModel);
    assert_eq!(model("GPT-X", "openai").unwrap_err().reason, RejectReason::UnknownModel);
    assert_eq!(model("gpt-x-2099", "openai").unwrap_err().reason, RejectReason::UnknownModel);
}

#[test]
fn response_model_first_then_request_model() {
    let c = catalog(NAMES);
    let mut e = io("vendor-model", 1_000, 0, None);
    e.response_model = Some("gpt-x".into());
    assert_eq!(c.price_event(&e).unwrap().model.as_ref(), "gpt-x");
    // unknown response model: request model prices (not a date, so no undated alias either)
    e.response_model = Some("gpt-x-2099-13-01".into());
    assert_eq!(c.price_event(&e).unwrap().model.as_ref(), "vendor-model");
    // empty response model counts as absent
    e.response_model = Some(String::new());
    assert_eq!(c.price_event(&e).unwrap().model.as_ref(), "vendor-model");
}

#[test]
fn unknown_model_names_what_was_tried() {
    let c = catalog(NAMES);
    let mut e = io("acme/secret-model", 1_000, 0, None);
    e.response_model = Some("secret-model-0601".into());
    let r = c.price_event(&e).unwrap_err();
    assert_eq!(r.reason, RejectReason::UnknownModel);
    for needle in [
        "\"secret-model-0601\"",
        "\"openai/secret-model-0601\"",
        "\"acme/secret-model\"",
        "\"openai/acme/secret-model\"",
        "\"secret-model\"",
        "provider \"openai\"",
    ] {
        assert!(r.detail.contains(needle), "{needle} not in {}", r.detail);
    }
}

#[test]
fn validation_comes_first() {
    let c = catalog(NAMES);
    let mut e = io("gpt-x", 10, 10, None);
    e.cache_read_input_tokens = 11;
    assert_eq!(c.price_event(&e).unwrap_err().reason, RejectReason::InconsistentTokens);
    let mut e = io("nope", 10, 10, None);
    e.output_tokens = -1;
    assert_eq!(c.price_event(&e).unwrap_err().reason, RejectReason::NegativeTokens);
    // price() itself refuses inconsistent counts instead of wrapping
    let e = io("gpt-x", 10, 10, None);
    let t = ledger_core::TokenCounts { input: 10, cache_read: 11, ..Default::default() };
    assert_eq!(c.price(&e, &t).unwrap_err().reason, RejectReason::InconsistentTokens);
}

#[test]
fn overflow_is_a_rejection() {
    let c = catalog(TIERED);
    // 1e20 USD/token = 1e32 picos. Decimal(38, 12) holds at most 10^38 - 1 picos.
    // 999999 tokens: 9.99999e37 picos, fits.
    assert_eq!(cost(&c, &io("huge", 999_999, 0, None)), 99_999_900_000_000_000_000_000_000_000_000_000_000);
    // 1e6 tokens: exactly 10^38 picos, one more than Decimal(38, 12) holds (an i128 would).
    let e = io("huge", 1_000_000, 0, None);
    let r = c.price_event(&e).unwrap_err();
    assert_eq!(r.reason, RejectReason::Overflow);
    assert!(r.detail.contains("input cost"), "{}", r.detail);
    // 1e7 tokens: beyond i128 as well
    assert_eq!(c.price_event(&io("huge", 10_000_000, 0, None)).unwrap_err().reason, RejectReason::Overflow);
    // two terms that fit alone but not together: 600000 input + 400000 cache read at 1e32
    let mut e = io("huge", 1_000_000, 0, None);
    e.cache_read_input_tokens = 400_000;
    let r = c.price_event(&e).unwrap_err();
    assert_eq!(r.reason, RejectReason::Overflow);
    assert!(r.detail.contains("total"), "{}", r.detail);
    // a routed-from model whose cost overflows: the event is priced, without savings
    let mut e = io("cheap", 1_000_000, 0, None);
    e.routed_from_model = Some("huge".into());
    let p = c.price_event(&e).unwrap();
    assert_eq!(p.cost.picos(), 1_000_000 * 1_000_000);
    assert_eq!(p.routed_from, None);
}

#[test]
fn routing_savings() {
    let c = catalog(TIERED);
    let mut e = io("cheap", 1_000, 500, None);
    e.routed_from_model = Some("expensive".into());
    let p = c.price_event(&e).unwrap();
    // cheap: 1000*1e6 + 500*2e6 = 2e9; expensive: 1000*1e7 + 500*3e7 = 2.5e10
    assert_eq!(p.cost.picos(), 2_000_000_000);
    let r = p.routed_from.unwrap();
    assert_eq!(r.model.as_ref(), "expensive");
    assert_eq!(r.cost.picos(), 25_000_000_000);
    assert_eq!(r.savings.picos(), 23_000_000_000);
    // rerouting to a dearer model: negative savings
    let mut e = io("expensive", 1_000, 500, None);
    e.routed_from_model = Some("cheap".into());
    assert_eq!(c.price_event(&e).unwrap().routed_from.unwrap().savings.picos(), -23_000_000_000);
    // unknown routed-from model: priced, no savings, not an error
    let mut e = io("cheap", 1_000, 500, None);
    e.routed_from_model = Some("who-knows".into());
    let p = c.price_event(&e).unwrap();
    assert_eq!(p.routed_from, None);
    assert_eq!(p.cost.picos(), 2_000_000_000);
}

#[test]
fn price_history_switches_at_effective_from() {
    let v1 = source(
        "prices",
        at("2026-01-01T00:00:00Z"),
        r#"{"a": {"input_cost_per_token": 1e-06, "output_cost_per_token": 0},
            "b": {"input_cost_per_token": 5e-06, "output_cost_per_token": 0}}"#,
    )
    .0;
    let v2 =
        source("prices", at("2026-06-01T00:00:00Z"), r#"{"a": {"input_cost_per_token": 2e-06, "output_cost_per_token": 0}}"#).0;
    // given in any order
    let c = Catalog::new(vec![v2, v1]).unwrap();
    let price = |model: &str, when: &str| {
        let mut e = io(model, 1_000, 0, None);
        e.event_time = at(when);
        c.price_event(&e).map(|p| (p.price_version.to_string(), p.cost.picos()))
    };
    assert_eq!(price("a", "2026-06-01T00:00:00Z").unwrap(), ("prices@2026-06-01T00:00:00Z".to_owned(), 2_000_000_000));
    assert_eq!(price("a", "2026-05-31T23:59:59.999999Z").unwrap(), ("prices@2026-01-01T00:00:00Z".to_owned(), 1_000_000_000));
    // absent from the newer source: the older one prices it
    assert_eq!(price("b", "2026-07-01T00:00:00Z").unwrap(), ("prices@2026-01-01T00:00:00Z".to_owned(), 5_000_000_000));
    // before the first source: unknown
    let r = price("a", "2025-12-31T23:59:59Z").unwrap_err();
    assert_eq!(r.reason, RejectReason::UnknownModel);
    assert!(r.detail.contains("no catalog source is in effect"), "{}", r.detail);
}

#[test]
fn event_times_are_microseconds_and_sub_microsecond_versions_apply_from_the_next_one() {
    // Events carry microseconds (the wire's timestamp-micros); an instant given with finer
    // precision is floored. A version that takes effect inside a microsecond applies to the
    // events of the microseconds after that instant.
    let v1 =
        source("prices", at("2026-01-01T00:00:00Z"), r#"{"a": {"input_cost_per_token": 1e-06, "output_cost_per_token": 0}}"#).0;
    let v2 = source(
        "prices",
        at("2026-06-01T00:00:00.0000005Z"),
        r#"{"a": {"input_cost_per_token": 2e-06, "output_cost_per_token": 0}}"#,
    )
    .0;
    let c = Catalog::new(vec![v1, v2]).unwrap();
    let cost = |when: &str| {
        let mut e = io("a", 1_000, 0, None);
        e.event_time = at(when);
        c.price_event(&e).unwrap().cost.picos()
    };
    assert_eq!(cost("2026-06-01T00:00:00Z"), 1_000_000_000);
    assert_eq!(cost("2026-06-01T00:00:00.000000999Z"), 1_000_000_000);
    assert_eq!(cost("2026-06-01T00:00:00.000001Z"), 2_000_000_000);
}

#[test]
fn newest_source_containing_the_model_wins() {
    // The older source knows `gpt-x`; the newer one only `openai/gpt-x`. The newer source
    // contains the model (by the `provider/model` rule), so it prices the event: docs/pricing.md's
    // "the newest source whose effective_from <= event_time that contains the model".
    let old =
        source("old", at("2026-01-01T00:00:00Z"), r#"{"gpt-x": {"input_cost_per_token": 1e-06, "output_cost_per_token": 0}}"#).0;
    let new = source(
        "new",
        at("2026-06-01T00:00:00Z"),
        r#"{"openai/gpt-x": {"input_cost_per_token": 2e-06, "output_cost_per_token": 0},
            "openai/gpt-z": {"input_cost_per_token": 3e-06, "output_cost_per_token": 0}}"#,
    )
    .0;
    let c = Catalog::new(vec![old, new]).unwrap();
    let mut e = io("gpt-x", 1_000, 0, None);
    e.event_time = at("2026-07-01T00:00:00Z");
    let p = c.price_event(&e).unwrap();
    assert_eq!((p.model.as_ref(), p.price_version.as_ref()), ("openai/gpt-x", "new@2026-06-01T00:00:00Z"));
    assert_eq!(p.cost.picos(), 2_000_000_000);
    // before the newer source takes effect, the older one prices it
    e.event_time = at("2026-05-31T23:59:59Z");
    let p = c.price_event(&e).unwrap();
    assert_eq!((p.model.as_ref(), p.cost.picos()), ("gpt-x", 1_000_000_000));
    let mut e = io("gpt-z", 1_000, 0, None);
    e.event_time = at("2026-07-01T00:00:00Z");
    let p = c.price_event(&e).unwrap();
    assert_eq!((p.model.as_ref(), p.cost.picos()), ("openai/gpt-z", 3_000_000_000));
}

#[test]
fn price_version_is_shared_not_copied() {
    let c = catalog(NAMES);
    let a = c.price_event(&io("gpt-x", 1, 1, None)).unwrap();
    let b = c.price_event(&io("gpt-y", 1, 1, None)).unwrap();
    assert_eq!(a.price_version.as_ref(), "test@1970-01-01T00:00:00Z");
    assert!(std::sync::Arc::ptr_eq(&a.price_version, &b.price_version));
    assert!(std::sync::Arc::ptr_eq(&a.price_version, c.sources()[0].version()));
}

#[test]
fn catalog_assembly_errors() {
    let json = r#"{"a": {"input_cost_per_token": 1e-06, "output_cost_per_token": 0}}"#;
    let other = r#"{"z": {"input_cost_per_token": 1e-06, "output_cost_per_token": 0}}"#;
    assert_eq!(Catalog::new(vec![]).unwrap_err(), CatalogError::NoSources);
    let e = Catalog::new(vec![source("p", epoch(), json).0, source("p", epoch(), other).0]).unwrap_err();
    assert_eq!(e, CatalogError::DuplicateVersion("p@1970-01-01T00:00:00Z".into()));
    let e = Catalog::new(vec![source("p", epoch(), json).0, source("q", epoch(), json).0]).unwrap_err();
    assert!(matches!(e, CatalogError::AmbiguousSources { ref key, .. } if key == "a"), "{e}");
    // same instant, disjoint models: fine
    let c = Catalog::new(vec![source("p", epoch(), json).0, source("q", epoch(), other).0]).unwrap();
    assert_eq!(c.price_event(&io("z", 1, 0, None)).unwrap().price_version.as_ref(), "q@1970-01-01T00:00:00Z");
    // same name, different instants: a history
    assert!(Catalog::new(vec![source("p", epoch(), json).0, source("p", at("2026-01-01T00:00:00Z"), json).0]).is_ok());
}

#[test]
fn event_helper_is_valid() {
    assert!(event("x").validate().is_ok());
}
