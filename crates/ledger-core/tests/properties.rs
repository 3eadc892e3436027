//! Property tests of pricing: non-negative costs, additivity over token splits within one
//! long-context tier, and exact reading of equal numbers spelled differently.

mod common;

use common::{catalog, io};
use ledger_core::{Catalog, UsageEvent};
use proptest::prelude::*;

/// Tiers at 128k and 272k, service tiers, cache and reasoning prices, including float artifacts.
const TIERED: &str = r#"{
  "m": {
    "input_cost_per_token": 1.25e-06,
    "output_cost_per_token": 1e-05,
    "input_cost_per_token_above_128k_tokens": 2.5e-06,
    "input_cost_per_token_above_272k_tokens": 5.000000000000001e-06,
    "output_cost_per_token_above_128k_tokens": 1.5e-05,
    "input_cost_per_token_batches": 6.25e-07,
    "input_cost_per_token_above_128k_tokens_batches": 1.25e-06,
    "output_cost_per_token_priority": 2e-05,
    "cache_read_input_token_cost": 1.25e-07,
    "cache_read_input_token_cost_above_272k_tokens": 2.5e-07,
    "cache_creation_input_token_cost": 1.5625e-06,
    "cache_creation_input_token_cost_above_1hr": 2.5e-06,
    "output_cost_per_reasoning_token": 3.0000000000000004e-05
  }
}"#;

/// Consistent token counts with `input` in `input_range`.
fn tokens(input_range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = [u64; 6]> {
    (input_range, 0u64..2_000_000).prop_flat_map(|(input, output)| {
        (Just(input), 0..=input, Just(output), 0..=output).prop_flat_map(|(input, cached, output, reasoning)| {
            (Just(input), 0..=cached, Just(cached), Just(output), Just(reasoning)).prop_flat_map(
                |(input, read, cached, output, reasoning)| {
                    let rest = cached - read;
                    (Just(input), Just(read), 0..=rest, Just(rest), Just(output), Just(reasoning))
                        .prop_map(|(input, read, cw, rest, output, reasoning)| [input, read, cw, rest - cw, output, reasoning])
                },
            )
        })
    })
}

fn event(t: [u64; 6], tier: Option<&str>) -> UsageEvent {
    let mut e = io("m", t[0] as i64, t[4] as i64, tier);
    e.cache_read_input_tokens = t[1] as i64;
    e.cache_creation_input_tokens = t[2] as i64;
    e.cache_creation_1h_input_tokens = t[3] as i64;
    e.reasoning_output_tokens = t[5] as i64;
    e
}

fn tier() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![None, Some("default"), Some("batch"), Some("priority"), Some("flex"), Some("x")])
}

fn price(c: &Catalog, e: &UsageEvent) -> i128 {
    c.price_event(e).unwrap().cost.picos()
}

proptest! {
    #[test]
    fn cost_is_never_negative(t in tokens(0..=2_000_000), tier in tier()) {
        let c = catalog(TIERED);
        let p = c.price_event(&event(t, tier)).unwrap();
        let terms = p.terms;
        for term in [terms.input, terms.cache_read, terms.cache_write, terms.cache_write_1h, terms.output, terms.reasoning] {
            prop_assert!(!term.is_negative());
        }
        prop_assert_eq!(p.cost, terms.total().unwrap());
    }

    #[test]
    fn additive_within_the_plain_tier(a in tokens(0..=64_000), b in tokens(0..=64_000), tier in tier()) {
        // both parts and the sum stay at or below 128k tokens
        let c = catalog(TIERED);
        let sum: [u64; 6] = std::array::from_fn(|i| a[i] + b[i]);
        prop_assert_eq!(price(&c, &event(a, tier)) + price(&c, &event(b, tier)), price(&c, &event(sum, tier)));
    }

    #[test]
    fn additive_within_the_top_tier(a in tokens(272_001..=5_000_000), b in tokens(272_001..=5_000_000), tier in tier()) {
        let c = catalog(TIERED);
        let sum: [u64; 6] = std::array::from_fn(|i| a[i] + b[i]);
        prop_assert_eq!(price(&c, &event(a, tier)) + price(&c, &event(b, tier)), price(&c, &event(sum, tier)));
    }

    #[test]
    fn equal_numbers_spelled_differently_price_the_same(
        mantissa in 1u64..100_000,
        exp in 6u32..=12,
        t in tokens(0..=1_000_000),
        which in 0usize..6,
    ) {
        // the price mantissa * 10^-exp, written six ways
        let digits = mantissa.to_string();
        let plain = if digits.len() as u32 > exp {
            let (w, f) = digits.split_at(digits.len() - exp as usize);
            format!("{w}.{f}")
        } else {
            format!("0.{}{}", "0".repeat((exp as usize) - digits.len()), digits)
        };
        let spellings = [
            format!("{mantissa}e-{exp}"),
            format!("{mantissa}E-{exp}"),
            plain.clone(),
            format!("{plain}000"),
            format!("\"{mantissa}e-{exp}\""),
            format!("{}.{}e-{}", &digits[..1], if digits.len() > 1 { &digits[1..] } else { "0" }, exp as usize - (digits.len() - 1)),
        ];
        let load = |s: &str| catalog(&format!(r#"{{"m": {{"input_cost_per_token": {s}, "output_cost_per_token": {s}, "cache_read_input_token_cost": {s}}}}}"#));
        let expected = price(&load(&spellings[0]), &event(t, None));
        prop_assert_eq!(price(&load(&spellings[which]), &event(t, None)), expected, "{}", spellings[which]);
        // and the value is exactly mantissa * 10^(12 - exp) picos per token
        let per_token = i128::from(mantissa) * 10i128.pow(12 - exp);
        prop_assert_eq!(expected, per_token * i128::from(t[0] + t[4]));
    }
}

#[test]
fn fixed_spellings_of_2_5e_minus_6() {
    for s in ["2.5e-06", "0.0000025", "25E-7", "0.00000250", "\"2.5e-06\"", "2.5E-6", "0.25e-5"] {
        let c = catalog(&format!(r#"{{"m": {{"input_cost_per_token": {s}, "output_cost_per_token": 0}}}}"#));
        assert_eq!(price(&c, &io("m", 1_000, 0, None)), 2_500_000_000, "{s}");
    }
}
