//! The entry forms and rules docs/pricing.md added for LiteLLM's whole file: `alias_of`,
//! `tiered_pricing`, `off_peak_pricing`, the service-tier ratio (formula step 1.3) and xAI's
//! inclusive threshold. Expected values are hand-computed integers of pico-dollars.

mod common;

use common::{at, catalog, epoch, io, source};
use ledger_core::catalog::SkipReason;
use ledger_core::event::RejectReason;

const FORMS: &str = r#"{
  "target": {"litellm_provider": "xai", "input_cost_per_token": 2e-06, "output_cost_per_token": 1e-05,
             "input_cost_per_token_above_128k_tokens": 4e-06},
  "alias": {"alias_of": "target", "input_cost_per_token": 1},
  "alias-missing": {"alias_of": "nowhere"},
  "alias-chain": {"alias_of": "alias"},
  "per-image": {"output_cost_per_image": 0.04},
  "alias-unpriced": {"alias_of": "per-image"},
  "alias-number": {"alias_of": 7},
  "tiered": {"litellm_provider": "dashscope", "cache_read_input_token_cost": 1e-07,
             "tiered_pricing": [{"input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06, "range": [0, 32000.0]},
                                {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06, "cache_read_input_token_cost": 2e-07,
                                 "range": [32000.0, 128000]}]},
  "tiered-gap": {"tiered_pricing": [{"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "range": [0, 10]},
                                    {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "range": [11, 20]}]},
  "tiered-search": {"tiered_pricing": [{"input_cost_per_query": 0.005, "max_results_range": [0, 25]}]},
  "tiered-no-output": {"input_cost_per_token": 1e-06, "tiered_pricing": [{"input_cost_per_token": 1e-06, "range": [0, 10]}]},
  "off-peak": {"input_cost_per_token": 6e-07, "output_cost_per_token": 2e-06,
               "off_peak_pricing": {"input_cost_per_token": 3e-07, "weekday_timezone": "Asia/Shanghai",
                 "windows": [{"hours_utc": ["00:00-01:00", "16:30-00:00"], "weekdays": [1, 2, 3, 4, 5]},
                             {"hours_utc": "00:00-00:00", "weekdays": [6, 7]}]}},
  "off-peak-bad": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06,
                   "off_peak_pricing": {"windows": [{"hours_utc": "06:00-04:00", "weekdays": [1]}]}},
  "ratio": {"input_cost_per_token": 7e-06, "output_cost_per_token": 1.4e-05, "cache_read_input_token_cost": 1e-06,
            "cache_creation_input_token_cost": 3.5e-11, "cache_creation_input_token_cost_above_1hr": 6e-06,
            "output_cost_per_reasoning_token": 2.1e-05, "input_cost_per_token_batches": 3.5e-06,
            "output_cost_per_token_batches": 7e-06, "input_cost_per_token_priority": 1e-06},
  "zero": {"input_cost_per_token": 0, "output_cost_per_token": 1e-06, "input_cost_per_token_batches": 1e-07,
           "cache_read_input_token_cost": 1e-07}
}"#;

#[test]
fn load_errors_are_reported_per_entry() {
    let (src, report) = source("t", epoch(), FORMS);
    let skipped: Vec<(&str, &str)> = report.skipped.iter().map(|s| (s.model.as_str(), s.reason.code())).collect();
    assert_eq!(
        skipped,
        vec![
            ("alias-missing", "alias_target_missing"),
            ("alias-chain", "alias_of_alias"),
            ("per-image", "missing_input_and_output_cost_per_token"),
            ("alias-unpriced", "alias_target_not_priceable"),
            ("alias-number", "invalid_alias_of"),
            ("tiered-gap", "invalid_tiered_pricing"),
            ("tiered-search", "missing_input_and_output_cost_per_token"),
            ("tiered-no-output", "tier_not_priceable"),
            ("off-peak-bad", "invalid_off_peak_pricing"),
        ]
    );
    assert!(matches!(&report.skipped[1].reason, SkipReason::AliasOfAlias { target } if target == "alias"));
    assert_eq!((report.priced, report.aliases, report.tiered, report.off_peak), (6, 1, 1, 1));
    assert_eq!(src.len(), 6);
    // the alias's own price and off-peak's weekday_timezone are listed as not used
    let ignored: Vec<(&str, &str)> = report.ignored.iter().map(|i| (i.model.as_str(), i.field.as_str())).collect();
    assert_eq!(ignored, vec![("alias", "input_cost_per_token"), ("off-peak", "off_peak_pricing.weekday_timezone")]);
}

#[test]
fn an_alias_prices_as_its_target_and_keeps_its_name() {
    let c = catalog(FORMS);
    let p = c.price_event(&io("alias", 128_000, 1_000, None)).unwrap();
    assert_eq!(p.model.as_ref(), "alias");
    assert_eq!(p.alias_of.as_deref(), Some("target"));
    assert_eq!(p.price_version.as_ref(), "test@1970-01-01T00:00:00Z;alias_of=target");
    // the target's xAI threshold: 128,000 tokens pay the 128k price (>=)
    assert_eq!(p.terms.input.picos(), 128_000 * 4_000_000);
    assert_eq!(c.price_event(&io("target", 127_999, 0, None)).unwrap().cost.picos(), 127_999 * 2_000_000);
    assert_eq!(c.price_event(&io("alias-chain", 1, 0, None)).unwrap_err().reason, RejectReason::UnknownModel);
}

#[test]
fn tiered_pricing_charges_the_whole_request_at_its_tier() {
    let c = catalog(FORMS);
    let cost = |input: i64| {
        let mut e = io("tiered", input, 1_000, None);
        e.cache_read_input_tokens = 1_000;
        c.price_event(&e).map(|p| p.cost.picos())
    };
    // first tier (0 included): uncached*1e-6 + 1000*1e-7 (the entry's) + 1000*4e-6
    assert_eq!(cost(0).unwrap_err().reason, RejectReason::InconsistentTokens);
    assert_eq!(cost(32_000).unwrap(), 31_000 * 1_000_000 + 1_000 * 100_000 + 1_000 * 4_000_000);
    // second tier: its own cache read price replaces the entry's
    assert_eq!(cost(32_001).unwrap(), 31_001 * 2_000_000 + 1_000 * 200_000 + 1_000 * 8_000_000);
    assert_eq!(cost(128_000).unwrap(), 127_000 * 2_000_000 + 1_000 * 200_000 + 1_000 * 8_000_000);
    let r = cost(128_001).unwrap_err();
    assert_eq!(r.reason, RejectReason::ImplausibleTokens);
    assert!(r.detail.contains("128000"), "{}", r.detail);
    assert_eq!(c.price_event(&io("tiered", 0, 10, None)).unwrap().cost.picos(), 10 * 4_000_000);
}

#[test]
fn off_peak_prices_apply_in_utc_windows_and_say_so() {
    let c = catalog(FORMS);
    let price = |when: &str| {
        let mut e = io("off-peak", 1_000, 1_000, None);
        e.event_time = at(when);
        let p = c.price_event(&e).unwrap();
        (p.terms.input.picos() / 1_000, p.price_version.ends_with(";off_peak"))
    };
    // 2026-11-02 is a Monday
    assert_eq!(price("2026-11-02T00:00:00Z"), (300_000, true));
    assert_eq!(price("2026-11-02T00:59:59.999999Z"), (300_000, true));
    assert_eq!(price("2026-11-02T01:00:00Z"), (600_000, false));
    assert_eq!(price("2026-11-02T16:29:59Z"), (600_000, false));
    assert_eq!(price("2026-11-02T16:30:00Z"), (300_000, true));
    assert_eq!(price("2026-11-02T23:59:59Z"), (300_000, true));
    // Saturday all day; Friday 18:00+02:00 is 16:00 UTC
    assert_eq!(price("2026-11-07T12:00:00Z"), (300_000, true));
    assert_eq!(price("2026-11-06T18:00:00+02:00"), (600_000, false));
}

#[test]
fn a_tier_the_entry_prices_for_input_and_output_scales_the_other_prices() {
    let c = catalog(FORMS);
    let terms = |tier: &str| {
        let mut e = io("ratio", 1_000, 10, Some(tier));
        e.cache_read_input_tokens = 1;
        e.cache_creation_input_tokens = 1;
        e.cache_creation_1h_input_tokens = 1;
        e.reasoning_output_tokens = 1;
        c.price_event(&e).unwrap().terms
    };
    // batch halves both sides: 1e-6/2, 35 picos/2 = 17.5 -> 18 (half to even), 6e-6/2, 2.1e-5/2
    let b = terms("batch");
    let got = (b.cache_read.picos(), b.cache_write.picos(), b.cache_write_1h.picos(), b.reasoning.picos());
    assert_eq!(got, (500_000, 18, 3_000_000, 10_500_000));
    // priority prices only the input side, at 1/7: 1e6/7 = 142857.14 -> 142857; 35/7 = 5; the
    // output side keeps its plain prices
    let p = terms("priority");
    assert_eq!((p.cache_read.picos(), p.cache_write.picos(), p.reasoning.picos()), (142_857, 5, 21_000_000));
    // a plain price of 0 skips the ratio
    let mut e = io("zero", 1_000, 0, Some("batch"));
    e.cache_read_input_tokens = 1_000;
    assert_eq!(c.price_event(&e).unwrap().terms.cache_read.picos(), 1_000 * 100_000);
}
