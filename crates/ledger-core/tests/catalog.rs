//! Loading LiteLLM-format catalogs: exact prices from the number text, the load report, and the
//! real LiteLLM 1.110.2 file.

mod common;

use std::path::PathBuf;

use common::{catalog, epoch, io};
use ledger_core::catalog::{CatalogError, CatalogSource, SkipReason};
use ledger_core::{Money, PriceField};

#[test]
fn float_artifacts_are_rounded_and_listed() {
    let json = r#"{
      "m": {
        "input_cost_per_token": 2.0000000000000002E-7,
        "output_cost_per_token": 0.0000029999900000000002,
        "cache_read_input_token_cost": 3.0001999999999996e-07,
        "cache_creation_input_token_cost": 1.25e-06
      }
    }"#;
    let (src, report) = CatalogSource::from_litellm_json("t", epoch(), json).unwrap();
    let rounded: Vec<(&str, &str, &str, i128)> =
        report.rounded.iter().map(|r| (r.model.as_str(), r.field.as_str(), r.text.as_str(), r.rounded.picos())).collect();
    assert_eq!(
        rounded,
        vec![
            ("m", "input_cost_per_token", "2.0000000000000002E-7", 200_000),
            ("m", "output_cost_per_token", "0.0000029999900000000002", 2_999_990),
            // 0.000000300019|99999999996 rounds up at the 12th digit
            ("m", "cache_read_input_token_cost", "3.0001999999999996e-07", 300_020),
        ]
    );
    let e = src.get("m").unwrap();
    assert_eq!(e.field(PriceField::CacheCreation).plain(), Some(Money::from_picos(1_250_000)));
    // priced with the rounded prices: 1000 * 200000 + 1000 * 2999990
    let c = catalog(json);
    assert_eq!(c.price_event(&io("m", 1_000, 1_000, None)).unwrap().cost.picos(), 3_199_990_000);
}

#[test]
fn entries_are_skipped_with_reasons() {
    let json = r#"{
      "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "one of ..."},
      "ok": {"input_cost_per_token": "2.5e-06", "output_cost_per_token": 1e-05, "litellm_provider": "openai"},
      "not-object": 5,
      "no-output": {"input_cost_per_token": 1e-06},
      "no-input": {"output_cost_per_token": 1e-06, "input_cost_per_token_batches": 1e-06},
      "per-image": {"output_cost_per_image": 0.04},
      "bad-input": {"input_cost_per_token": "cheap", "output_cost_per_token": 1e-06},
      "null-output": {"input_cost_per_token": 1e-06, "output_cost_per_token": null},
      "negative": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06}
    }"#;
    let (src, report) = CatalogSource::from_litellm_json("t", epoch(), json).unwrap();
    assert_eq!(report.entries, 9);
    assert_eq!(report.priced, 1);
    assert_eq!(src.len(), 1);
    assert_eq!(src.get("ok").unwrap().litellm_provider(), Some("openai"));
    // a string price is read exactly
    assert_eq!(src.get("ok").unwrap().field(PriceField::Input).plain(), Some(Money::from_picos(2_500_000)));
    let skipped: Vec<(&str, &SkipReason)> = report.skipped.iter().map(|s| (s.model.as_str(), &s.reason)).collect();
    let invalid = |field: &str, detail: &str| SkipReason::InvalidPrice { field: field.into(), detail: detail.into() };
    assert_eq!(
        skipped,
        vec![
            ("sample_spec", &SkipReason::SampleSpec),
            ("not-object", &SkipReason::NotAnObject),
            ("no-output", &SkipReason::MissingOutputCost),
            ("no-input", &SkipReason::MissingInputCost),
            ("per-image", &SkipReason::MissingInputAndOutputCost),
            ("bad-input", &invalid("input_cost_per_token", "not a number")),
            ("null-output", &invalid("output_cost_per_token", "null")),
            ("negative", &invalid("input_cost_per_token", "negative price")),
        ]
    );
    let by_reason = report.skipped_by_reason();
    assert_eq!(by_reason["invalid_price"], 3);
    assert_eq!(report.priced + report.skipped.len(), report.entries);
}

#[test]
fn ignored_fields_are_listed_and_variants_parsed() {
    let json = r#"{
      "m": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06,
        "input_cost_per_token_above_200k_tokens_priority": 5e-06,
        "input_cost_per_token_above_128k_tokens": 3e-06,
        "input_cost_per_token_above_272k_tokens": 4e-06,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 9e-06,
        "cache_creation_input_token_cost_above_12hr": 7e-06,
        "output_cost_per_reasoning_token_batches": 1e-06,
        "cache_read_input_token_cost": -1e-07,
        "output_cost_per_token_flex": [1],
        "input_cost_per_image": 0.5,
        "max_tokens": 1000
      }
    }"#;
    let (src, report) = CatalogSource::from_litellm_json("t", epoch(), json).unwrap();
    let ignored: Vec<(&str, &str)> = report.ignored.iter().map(|i| (i.field.as_str(), i.reason.as_str())).collect();
    assert_eq!(ignored.len(), 4, "{ignored:?}");
    assert_eq!(ignored[0].0, "cache_creation_input_token_cost_above_12hr");
    assert_eq!(ignored[1].0, "output_cost_per_reasoning_token_batches");
    assert_eq!(ignored[2], ("cache_read_input_token_cost", "negative price"));
    assert_eq!(ignored[3], ("output_cost_per_token_flex", "not a number"));
    let e = src.get("m").unwrap();
    let input = e.field(PriceField::Input);
    assert_eq!(input.above(), &[(272_000, Money::from_picos(4_000_000)), (128_000, Money::from_picos(3_000_000))]);
    assert_eq!(&*input.tiers()[0].tier, "priority");
    assert_eq!(input.tiers()[0].above, vec![(200_000, Money::from_picos(5_000_000))]);
    assert_eq!(e.field(PriceField::CacheCreation1h).above(), &[(200_000, Money::from_picos(9_000_000))]);
    assert!(e.field(PriceField::CacheCreation).is_empty());
    assert!(e.field(PriceField::CacheRead).is_empty());
}

#[test]
fn invalid_catalogs_are_errors() {
    let err = |json: &str| CatalogSource::from_litellm_json("t", epoch(), json).unwrap_err();
    assert!(matches!(err("[1, 2]"), CatalogError::NotAnObject { .. }));
    assert!(matches!(err("{\"a\": "), CatalogError::Json { .. }));
    assert!(matches!(err("{}"), CatalogError::NoPriceableModel { .. }));
    assert!(matches!(
        err(r#"{"a": {"input_cost_per_token": 1, "output_cost_per_token": 1}, "a": {}}"#),
        CatalogError::DuplicateKey { .. }
    ));
    let ok = r#"{"a": {"input_cost_per_token": 1, "output_cost_per_token": 1}}"#;
    assert!(matches!(CatalogSource::from_litellm_json("a@b", epoch(), ok).unwrap_err(), CatalogError::InvalidName(_)));
    assert!(matches!(CatalogSource::from_litellm_json("", epoch(), ok).unwrap_err(), CatalogError::InvalidName(_)));
}

/// The real LiteLLM file kept in the repository (catalog/sources/README.md); missing is a failure.
fn real_file() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../catalog/sources/litellm-1.110.2-model_prices_and_context_window.json");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the real LiteLLM file {} must be in the repository: {e}", path.display()))
}

#[test]
fn real_litellm_1_110_2_file() {
    let text = real_file();
    let (src, report) = CatalogSource::from_litellm_json("litellm-1.110.2", epoch(), &text).unwrap();
    assert_eq!(report.entries, 4_878);
    assert_eq!(report.priced + report.skipped.len(), 4_878);
    // counted independently with python3: 3,882 entries with both fields (sample_spec aside), 98
    // alias_of entries (all of priceable targets) and 49 tiered_pricing entries priced only
    // through their tiers (56 have tiered_pricing: 5 with plain prices too, 2 per-query searches)
    assert_eq!(report.priced, 3_882 + 98 + 49);
    assert_eq!((report.aliases, report.tiered, report.off_peak), (98, 54, 12));
    let by_reason = report.skipped_by_reason();
    assert_eq!(by_reason.get("sample_spec"), Some(&1));
    assert_eq!(by_reason.get("missing_input_and_output_cost_per_token"), Some(&(932 - 98 - 49)));
    assert_eq!(by_reason.get("missing_output_cost_per_token"), Some(&40));
    assert_eq!(by_reason.get("missing_input_cost_per_token"), Some(&23));
    assert_eq!(by_reason.len(), 4, "{by_reason:?}");
    assert_eq!(src.len(), 4_029);
    // the weekday_timezone of two off-peak entries is listed as not used
    assert_eq!(report.ignored.iter().filter(|i| i.field == "off_peak_pricing.weekday_timezone").count(), 2);
    let has = |model: &str, field: &str, text: &str, picos: i128| {
        report.rounded.iter().any(|r| r.model == model && r.field == field && r.text == text && r.rounded.picos() == picos)
    };
    assert!(has("databricks/databricks-claude-sonnet-4-1", "input_cost_per_token", "2.9999900000000002e-06", 2_999_990));
    assert!(has("databricks/databricks-claude-sonnet-4-1", "output_cost_per_token", "1.5000020000000002e-05", 15_000_020));
    assert!(has("databricks/databricks-gemini-2-5-flash", "input_cost_per_token", "3.0001999999999996e-07", 300_020));
    eprintln!(
        "real file: {} priced, {} skipped, {} rounded, {} ignored fields",
        report.priced,
        report.skipped.len(),
        report.rounded.len(),
        report.ignored.len()
    );
    // every rounding is below half a pico-dollar of the text and is listed once
    assert!(report.rounded.len() >= 3);
    // a well-known entry prices as its provider's page says: gpt-4o $2.50 / $10 per 1M tokens
    let c = ledger_core::Catalog::new(vec![src]).unwrap();
    let p = c.price_event(&io("gpt-4o", 100_000, 10_000, None)).unwrap();
    assert_eq!(p.cost.picos(), 350_000_000_000);
    // and refuses what gpt-4o cannot have served: 128k context, 16,384 output tokens (twice each)
    let over = |i, o| c.price_event(&io("gpt-4o", i, o, None)).unwrap_err().reason;
    assert_eq!(over(256_001, 0), ledger_core::event::RejectReason::ImplausibleTokens);
    assert_eq!(over(0, 32_769), ledger_core::event::RejectReason::ImplausibleTokens);
    assert!(c.price_event(&io("gpt-4o", 256_000, 32_768, None)).is_ok());
    // LiteLLM 1.110.2 has claude-sonnet-4-20250514 only as Bedrock ids: step 2.7 finds the
    // unregioned one, at Anthropic's $3 / $15 (below its 200k long-context tier)
    let mut e = io("claude-sonnet-4-20250514", 100_000, 100_000, None);
    e.provider = "anthropic".into();
    let p = c.price_event(&e).unwrap();
    assert_eq!((p.model.as_ref(), p.cost.picos()), ("anthropic.claude-sonnet-4-20250514-v1:0", 1_800_000_000_000));
    // an alias_of entry keeps its name and records its target
    let p = c.price_event(&io("bedrock/claude-opus-latest", 1_000, 0, None)).unwrap();
    assert_eq!(p.model.as_ref(), "bedrock/claude-opus-latest");
    assert_eq!(p.alias_of.as_deref(), Some("global.anthropic.claude-opus-5-5"));
    assert_eq!(p.price_version.as_ref(), "litellm-1.110.2@1970-01-01T00:00:00Z;alias_of=global.anthropic.claude-opus-5-5");
}

#[test]
fn tokens_beyond_twice_the_models_limits_are_implausible() {
    let json = r#"{
      "m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "max_input_tokens": 1000, "max_output_tokens": 100},
      "legacy": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "max_tokens": 50},
      "open": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    }"#;
    let c = catalog(json);
    let reason = |model: &str, input: i64, output: i64| c.price_event(&io(model, input, output, None)).err().map(|r| r.reason);
    use ledger_core::event::RejectReason::ImplausibleTokens;
    assert_eq!(reason("m", 2_000, 200), None, "twice the limit is still plausible");
    assert_eq!(reason("m", 2_001, 0), Some(ImplausibleTokens));
    assert_eq!(reason("m", 0, 201), Some(ImplausibleTokens));
    assert_eq!(reason("legacy", 10_000_000, 100), None, "max_tokens limits only the output");
    assert_eq!(reason("legacy", 0, 101), Some(ImplausibleTokens));
    assert_eq!(reason("open", 1_000_000_000, 1_000_000_000), None, "no limit in the catalog: only the acceptance cap");
    let detail = c.price_event(&io("m", 5_000, 0, None)).unwrap_err().detail;
    assert!(detail.contains("input_tokens 5000 is above 2000, 2 times the catalog's limit"), "{detail}");
}
