//! The comparison of one provider's figures with the ledger's, per (day, model).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use ledger_core::budget::Percent;
use ledger_core::{Money, TokenClass};

use super::{DayModel, LedgerFigures, Measure, ProviderData, ProviderFigures};

/// Which side has more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The provider reports more than the ledger holds: calls are missing from the ledger.
    LedgerShort,
    /// The ledger holds more than the provider reports: calls the provider does not show.
    LedgerOver,
}

/// What kind of gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Total tokens or requests differ.
    MissingCalls(Side),
    /// Totals agree, their split into token classes does not; `cache` when a cache figure differs.
    TokenClassMismatch {
        /// A cache read or write figure differs (else input versus output).
        cache: bool,
    },
    /// Tokens agree, the provider's amount for a token class differs from the ledger's cost.
    PriceMismatch,
    /// The provider charged for something that is no token class of the ledger (web search, ...).
    UntrackedCharges,
}

impl GapKind {
    /// The name in reports: `missing calls`, `token class mismatch (cache)`, ...
    pub fn name(self) -> &'static str {
        match self {
            GapKind::MissingCalls(Side::LedgerShort) => "missing calls (not in the ledger)",
            GapKind::MissingCalls(Side::LedgerOver) => "missing calls (not billed by the provider)",
            GapKind::TokenClassMismatch { cache: true } => "token class mismatch (cache)",
            GapKind::TokenClassMismatch { cache: false } => "token class mismatch (input/output)",
            GapKind::PriceMismatch => "price mismatch",
            GapKind::UntrackedCharges => "charges without a token class",
        }
    }

    /// A short machine name: `missing_calls`, `token_class_mismatch`, `price_mismatch`,
    /// `untracked_charges`.
    pub fn code(self) -> &'static str {
        match self {
            GapKind::MissingCalls(_) => "missing_calls",
            GapKind::TokenClassMismatch { .. } => "token_class_mismatch",
            GapKind::PriceMismatch => "price_mismatch",
            GapKind::UntrackedCharges => "untracked_charges",
        }
    }
}

/// One figure that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What: `requests`, `tokens (total)`, a token figure, or `cost of <figure>`.
    pub what: String,
    /// The ledger's value, as text.
    pub ledger: String,
    /// The provider's value, as text.
    pub provider: String,
}

/// A classified gap of one (day, model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The UTC day.
    pub day: NaiveDate,
    /// The model name.
    pub model: String,
    /// Its class.
    pub kind: GapKind,
    /// False when every difference of its class is within the tolerance.
    pub beyond_tolerance: bool,
    /// The figures that differ.
    pub differences: Vec<Difference>,
}

/// True when `a` and `b` differ by more than `tolerance` of the larger of the two.
fn beyond(a: i128, b: i128, tolerance: Percent) -> bool {
    let diff = (a - b).unsigned_abs();
    let base = a.unsigned_abs().max(b.unsigned_abs());
    diff.saturating_mul(100_000_000) > base.saturating_mul(tolerance.micros().unsigned_abs())
}

fn tokens_of(l: Option<&LedgerFigures>, classes: &[TokenClass]) -> u64 {
    l.map_or(0, |l| classes.iter().map(|c| l.tokens[c.index()]).sum())
}

fn cost_of(l: Option<&LedgerFigures>, classes: &[TokenClass]) -> Money {
    l.map_or(Money::ZERO, |l| Money::from_picos(classes.iter().map(|c| l.cost[c.index()].picos()).sum()))
}

/// Per million tokens, rounded to 6 digits for display.
fn per_million(cost: Money, tokens: u64) -> String {
    if tokens == 0 {
        return "no tokens".into();
    }
    let per = Money::from_picos(cost.picos().saturating_mul(1_000_000) / i128::from(tokens));
    format!("{} USD per 1M tokens", crate::format::fmt_money(per, 6))
}

/// The provider's total tokens: its inclusive input total when it reports one, else the sum of
/// its input parts, plus output.
fn provider_total(p: &ProviderFigures) -> u64 {
    let t = |m: Measure| p.tokens.get(&m).copied().unwrap_or(0);
    let input = if p.tokens.contains_key(&Measure::InputTotal) {
        t(Measure::InputTotal)
    } else {
        [Measure::InputUncached, Measure::CacheRead, Measure::CacheWrite, Measure::CacheWrite5m, Measure::CacheWrite1h]
            .into_iter()
            .map(t)
            .sum()
    };
    input + t(Measure::OutputTotal)
}

/// A finding of one class: `(kind, differences, beyond tolerance)`.
type Finding = (GapKind, Vec<Difference>, bool);

fn classify(p: &ProviderFigures, l: Option<&LedgerFigures>, has_costs: bool, tolerance: Percent) -> Vec<Finding> {
    let mut findings = Vec::new();
    let ledger_total = tokens_of(l, &TokenClass::ALL);
    let ledger_requests = l.map_or(0, |l| l.requests);
    let total = provider_total(p);
    let mut calls = Vec::new();
    let mut calls_beyond = false;
    if let Some(r) = p.requests.filter(|r| *r != ledger_requests) {
        calls_beyond |= beyond(i128::from(ledger_requests), i128::from(r), tolerance);
        calls.push(Difference { what: "requests".into(), ledger: ledger_requests.to_string(), provider: r.to_string() });
    }
    if total != ledger_total {
        calls_beyond |= beyond(i128::from(ledger_total), i128::from(total), tolerance);
        calls.push(Difference { what: "tokens (total)".into(), ledger: ledger_total.to_string(), provider: total.to_string() });
    }
    if !calls.is_empty() {
        let provider_more = total > ledger_total || p.requests.is_some_and(|r| r > ledger_requests);
        let side = if provider_more { super::Side::LedgerShort } else { super::Side::LedgerOver };
        findings.push((GapKind::MissingCalls(side), calls, calls_beyond));
    }
    let mut split = Vec::new();
    let (mut split_beyond, mut cache) = (false, false);
    for (&m, &t) in &p.tokens {
        let ours = tokens_of(l, m.classes());
        if ours != t {
            split_beyond |= beyond(i128::from(ours), i128::from(t), tolerance);
            cache |= m.is_cache();
            split.push(Difference { what: m.name().into(), ledger: ours.to_string(), provider: t.to_string() });
        }
    }
    if !split.is_empty() {
        findings.push((GapKind::TokenClassMismatch { cache }, split, split_beyond));
    }
    if has_costs {
        let mut prices = Vec::new();
        let mut prices_beyond = false;
        for (&m, &amount) in &p.costs {
            let (ours, tokens) = (cost_of(l, m.classes()), tokens_of(l, m.classes()));
            if ours != amount {
                prices_beyond |= beyond(ours.picos(), amount.picos(), tolerance);
                let provider_tokens = p.tokens.get(&m).copied().unwrap_or(tokens);
                prices.push(Difference {
                    what: format!("cost of {}", m.name()),
                    ledger: format!("{ours} USD ({})", per_million(ours, tokens)),
                    provider: format!("{amount} USD ({})", per_million(amount, provider_tokens)),
                });
            }
        }
        if !prices.is_empty() {
            findings.push((GapKind::PriceMismatch, prices, prices_beyond));
        }
    }
    let other: Vec<Difference> = p
        .other_costs
        .iter()
        .filter(|(_, a)| **a != Money::ZERO)
        .map(|(label, a)| Difference { what: format!("charge {label:?}"), ledger: "-".into(), provider: format!("{a} USD") })
        .collect();
    if !other.is_empty() {
        let beyond_any = p.other_costs.values().any(|a| beyond(0, a.picos(), tolerance));
        findings.push((GapKind::UntrackedCharges, other, beyond_any));
    }
    findings
}

/// Every gap, one per (day, model) with any difference, ordered by day and model. A gap takes
/// the class of its most basic finding beyond the tolerance (missing calls, then token classes,
/// then prices: the later ones follow from the earlier ones), else of its first finding; charges
/// without a token class are always reported on their own.
pub fn compare(data: &ProviderData, ledger: &BTreeMap<DayModel, LedgerFigures>, tolerance: Percent) -> Vec<Gap> {
    let keys: BTreeSet<&DayModel> = data.figures.keys().chain(ledger.keys()).collect();
    let empty = ProviderFigures::default();
    let mut gaps = Vec::new();
    for key in keys {
        let l = ledger.get(key);
        if l.is_some_and(|l| l.requests == 0) && !data.figures.contains_key(key) {
            continue;
        }
        let p = data.figures.get(key).unwrap_or(&empty);
        let mut findings = classify(p, l, data.has_costs, tolerance);
        let untracked = findings.iter().position(|f| f.0 == GapKind::UntrackedCharges).map(|i| findings.remove(i));
        let chosen = findings.iter().position(|f| f.2).or((!findings.is_empty()).then_some(0)).map(|i| findings.swap_remove(i));
        for (kind, differences, beyond_tolerance) in chosen.into_iter().chain(untracked) {
            gaps.push(Gap { day: key.0, model: key.1.clone(), kind, beyond_tolerance, differences });
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;
    use chrono::{DateTime, Utc};

    fn ledger(requests: u64, tokens: [u64; 6], cost: [i128; 6]) -> LedgerFigures {
        LedgerFigures { day: DateTime::<Utc>::UNIX_EPOCH, model: "m".into(), requests, tokens, cost: cost.map(Money::from_picos) }
    }

    fn data(figures: ProviderFigures, has_costs: bool) -> ProviderData {
        let key = (DateTime::<Utc>::UNIX_EPOCH.date_naive(), "m".to_owned());
        ProviderData {
            provider: Provider::OpenAi,
            range: (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(1)),
            figures: [(key, figures)].into(),
            has_costs,
        }
    }

    fn openai(requests: u64, input: u64, cached: u64, output: u64) -> ProviderFigures {
        ProviderFigures {
            requests: Some(requests),
            tokens: [(Measure::InputTotal, input), (Measure::CacheRead, cached), (Measure::OutputTotal, output)].into(),
            ..ProviderFigures::default()
        }
    }

    fn run(p: ProviderFigures, l: LedgerFigures, has_costs: bool, tolerance: i64) -> Vec<Gap> {
        let key = (DateTime::<Utc>::UNIX_EPOCH.date_naive(), "m".to_owned());
        compare(&data(p, has_costs), &[(key, l)].into(), Percent::whole(tolerance))
    }

    #[test]
    fn each_kind_of_gap_is_classified() {
        // ledger: 10 calls, 900 uncached + 100 cached input, 200 output of which 50 reasoning.
        let l = || ledger(10, [900, 100, 0, 0, 150, 50], [900, 10, 0, 0, 1500, 500]);
        assert!(run(openai(10, 1000, 100, 200), l(), false, 0).is_empty(), "a matching export has no gap");
        let gaps = run(openai(12, 1100, 100, 220), l(), false, 0);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].kind, GapKind::MissingCalls(Side::LedgerShort));
        let gaps = run(openai(10, 1000, 300, 200), l(), false, 0);
        assert_eq!(gaps[0].kind, GapKind::TokenClassMismatch { cache: true });
        let mut priced = openai(10, 1000, 100, 200);
        priced.costs = [(Measure::InputUncached, Money::from_picos(900)), (Measure::OutputTotal, Money::from_picos(2400))].into();
        let gaps = run(priced.clone(), l(), true, 0);
        assert_eq!((gaps.len(), gaps[0].kind), (1, GapKind::PriceMismatch));
        assert_eq!(gaps[0].differences.len(), 1, "only the output price differs: {gaps:?}");
        // 2400 vs 2000 is 16.7% of the larger side: within a 20% tolerance, beyond 10%.
        assert!(!run(priced.clone(), l(), true, 20)[0].beyond_tolerance);
        assert!(run(priced, l(), true, 10)[0].beyond_tolerance);
    }

    #[test]
    fn one_side_only_is_missing_calls_and_other_charges_stand_alone() {
        let gaps = run(openai(3, 30, 0, 3), ledger(0, [0; 6], [0; 6]), false, 0);
        assert_eq!(gaps[0].kind, GapKind::MissingCalls(Side::LedgerShort));
        let gaps = run(ProviderFigures::default(), ledger(4, [10, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0]), false, 0);
        assert_eq!(gaps[0].kind, GapKind::MissingCalls(Side::LedgerOver));
        let mut p = openai(4, 10, 0, 1);
        p.other_costs.insert("web_search".into(), Money::from_usd(1));
        let gaps = run(p, ledger(4, [10, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0]), true, 0);
        assert_eq!(gaps.iter().map(|g| g.kind).collect::<Vec<_>>(), vec![GapKind::UntrackedCharges]);
    }
}
