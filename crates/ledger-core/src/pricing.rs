//! The pricing formula of docs/pricing.md: which catalog entry, which price for each token class,
//! and the exact cost terms of one event.

use std::sync::Arc;

use crate::event::{RejectReason, Rejection, TokenCounts};
use crate::money::{Money, MoneyOverflow};

/// The cost of one event, term by term (docs/pricing.md "The formula", step 3). Nothing is rounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostTerms {
    /// Uncached input tokens times the input price.
    pub input: Money,
    /// Cache-read tokens times the cache-read price.
    pub cache_read: Money,
    /// 5 minute cache-write tokens times the cache-write price.
    pub cache_write: Money,
    /// 1 hour cache-write tokens times the 1 hour cache-write price.
    pub cache_write_1h: Money,
    /// Non-reasoning output tokens times the output price.
    pub output: Money,
    /// Reasoning tokens times the reasoning price.
    pub reasoning: Money,
}

impl CostTerms {
    /// The exact sum of the terms.
    pub fn total(&self) -> Result<Money, MoneyOverflow> {
        Money::checked_sum([self.input, self.cache_read, self.cache_write, self.cache_write_1h, self.output, self.reasoning])
    }
}

/// What the model the application first asked for (`routed_from_model`) would have cost.
///
/// `S` holds the catalog's names: `Arc<str>` when owned, `&Arc<str>` when borrowed from the
/// catalog (see [`PricedRef`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedFromCost<S = Arc<str>> {
    /// Catalog key of the original model.
    pub model: S,
    /// Its cost for the same tokens, by the same rules.
    pub cost: Money,
    /// `cost` minus the charged cost (negative when the reroute cost more).
    pub savings: Money,
}

/// A priced event: the entry and price version used, each cost term and the total.
///
/// `S` holds the catalog's names: `Arc<str>` (the default) for a result that outlives the
/// catalog, `&Arc<str>` for [`PricedRef`], the processor's per-event result, which costs no
/// reference-count traffic (four atomic operations per event otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedUsage<S = Arc<str>> {
    /// The catalog key that priced the event (the ledger's `model` column).
    pub model: S,
    /// `source@effective_from` of the catalog source used, so the cost can be recomputed.
    pub price_version: S,
    /// Each cost term.
    pub terms: CostTerms,
    /// The charged cost: the exact sum of `terms`.
    pub cost: Money,
    /// Routing savings, when the event carries a known `routed_from_model`.
    pub routed_from: Option<RoutedFromCost<S>>,
}

/// A [`PricedUsage`] that borrows its names from the catalog.
pub type PricedRef<'c> = PricedUsage<&'c Arc<str>>;

impl PricedRef<'_> {
    /// The owned result, independent of the catalog.
    pub fn to_owned_priced(&self) -> PricedUsage {
        PricedUsage {
            model: Arc::clone(self.model),
            price_version: Arc::clone(self.price_version),
            terms: self.terms,
            cost: self.cost,
            routed_from: self.routed_from.as_ref().map(|r| RoutedFromCost {
                model: Arc::clone(r.model),
                cost: r.cost,
                savings: r.savings,
            }),
        }
    }
}

/// The six per-token prices of docs/pricing.md "The formula", step 2.
///
/// Field names follow LiteLLM; the variants are suffixes of these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriceField {
    /// `input_cost_per_token`.
    Input,
    /// `output_cost_per_token`.
    Output,
    /// `cache_read_input_token_cost`.
    CacheRead,
    /// `cache_creation_input_token_cost` (5 minute cache writes).
    CacheCreation,
    /// `cache_creation_input_token_cost_above_1hr` (1 hour cache writes).
    CacheCreation1h,
    /// `output_cost_per_reasoning_token` (no variants).
    Reasoning,
}

impl PriceField {
    /// Every field, in the order of [`PriceField::index`].
    pub const ALL: [PriceField; 6] = [
        PriceField::Input,
        PriceField::Output,
        PriceField::CacheRead,
        PriceField::CacheCreation,
        PriceField::CacheCreation1h,
        PriceField::Reasoning,
    ];

    /// The five fields that have long-context and service-tier variants.
    pub const TIERED: [PriceField; 5] =
        [PriceField::Input, PriceField::Output, PriceField::CacheRead, PriceField::CacheCreation, PriceField::CacheCreation1h];

    /// LiteLLM's name of the plain field.
    pub const fn litellm_name(self) -> &'static str {
        match self {
            PriceField::Input => "input_cost_per_token",
            PriceField::Output => "output_cost_per_token",
            PriceField::CacheRead => "cache_read_input_token_cost",
            PriceField::CacheCreation => "cache_creation_input_token_cost",
            PriceField::CacheCreation1h => "cache_creation_input_token_cost_above_1hr",
            PriceField::Reasoning => "output_cost_per_reasoning_token",
        }
    }

    /// Position in [`PriceField::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for PriceField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.litellm_name())
    }
}

/// The suffix (without its leading `_`) that a service tier selects, or `None` for the plain tier.
///
/// Absent, empty and `default` mean no service tier; `batch` is spelled `batches` (as LiteLLM
/// does); any other tier is its own name (`priority`, `flex`, ...). Names are matched exactly.
pub fn service_tier_suffix(service_tier: Option<&str>) -> Option<&str> {
    match service_tier {
        None | Some("") | Some("default") => None,
        Some("batch") => Some("batches"),
        Some(tier) => Some(tier),
    }
}

/// Long-context variants: `(N * 1000, price)`, sorted by threshold, largest first.
type AboveList = Vec<(u64, Money)>;

/// First price whose threshold the input exceeds (the list is sorted largest first).
fn pick_above(list: &[(u64, Money)], input_tokens: u64) -> Option<Money> {
    list.iter().find(|(threshold, _)| input_tokens > *threshold).map(|&(_, price)| price)
}

fn insert_above(list: &mut AboveList, threshold: u64, price: Money) {
    match list.binary_search_by(|(t, _)| threshold.cmp(t)) {
        Ok(i) => list[i].1 = price,
        Err(i) => list.insert(i, (threshold, price)),
    }
}

/// The prices of one service tier of a field: `F_{tier}` and `F_above_{N}k_tokens_{tier}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierVariants {
    /// The tier suffix without the leading `_` (`batches`, `priority`, `flex`, ...).
    pub tier: Box<str>,
    /// `F_{tier}`.
    pub plain: Option<Money>,
    /// `F_above_{N}k_tokens_{tier}` as `(N * 1000, price)`, largest threshold first.
    pub above: Vec<(u64, Money)>,
}

/// Every price variant of one field of one catalog entry, ready for
/// [`PriceVariants::resolve`] (docs/pricing.md "The formula", step 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceVariants {
    plain: Option<Money>,
    above: AboveList,
    tiers: Vec<TierVariants>,
}

impl PriceVariants {
    /// The plain field `F`.
    pub fn plain(&self) -> Option<Money> {
        self.plain
    }

    /// `F_above_{N}k_tokens` as `(N * 1000, price)`, largest threshold first.
    pub fn above(&self) -> &[(u64, Money)] {
        &self.above
    }

    /// The service-tier variants.
    pub fn tiers(&self) -> &[TierVariants] {
        &self.tiers
    }

    /// True when the field has no price at all.
    pub fn is_empty(&self) -> bool {
        self.plain.is_none() && self.above.is_empty() && self.tiers.is_empty()
    }

    /// Number of prices stored.
    pub fn len(&self) -> usize {
        usize::from(self.plain.is_some())
            + self.above.len()
            + self.tiers.iter().map(|t| usize::from(t.plain.is_some()) + t.above.len()).sum::<usize>()
    }

    /// Records one variant: `tier` is the suffix without `_` (`None` for the plain tier),
    /// `above_tokens` is `N * 1000` of a `_above_{N}k_tokens` variant. A repeated variant replaces
    /// the earlier one.
    pub fn set(&mut self, tier: Option<&str>, above_tokens: Option<u64>, price: Money) {
        match tier {
            None => match above_tokens {
                None => self.plain = Some(price),
                Some(t) => insert_above(&mut self.above, t, price),
            },
            Some(name) => {
                let i = match self.tiers.iter().position(|t| &*t.tier == name) {
                    Some(i) => i,
                    None => {
                        self.tiers.push(TierVariants { tier: name.into(), plain: None, above: Vec::new() });
                        self.tiers.len() - 1
                    }
                };
                let t = &mut self.tiers[i];
                match above_tokens {
                    None => t.plain = Some(price),
                    Some(th) => insert_above(&mut t.above, th, price),
                }
            }
        }
    }

    /// The price of this field for an event with service-tier suffix `tier`
    /// (see [`service_tier_suffix`]) and `input_tokens` prompt tokens: the first of
    /// `F_above_{N}k_tokens_{tier}` (largest `N` with `input_tokens > N*1000`), `F_{tier}`,
    /// `F_above_{N}k_tokens` (same rule), `F`; `None` when the entry has none of them.
    #[inline]
    pub fn resolve(&self, tier: Option<&str>, input_tokens: u64) -> Option<Money> {
        if let Some(name) = tier {
            if let Some(t) = self.tiers.iter().find(|t| &*t.tier == name) {
                if let Some(p) = pick_above(&t.above, input_tokens) {
                    return Some(p);
                }
                if let Some(p) = t.plain {
                    return Some(p);
                }
            }
        }
        pick_above(&self.above, input_tokens).or(self.plain)
    }
}

/// The six resolved per-token prices of one event, after the fallbacks of docs/pricing.md
/// "The formula", step 2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolvedPrices {
    /// `in`.
    pub input: Money,
    /// `out`.
    pub output: Money,
    /// `cr` (cache read price, else `in`).
    pub cache_read: Money,
    /// `cw` (cache creation price, else `in`).
    pub cache_write: Money,
    /// `cw1h` (1 hour cache creation price, else `cw`).
    pub cache_write_1h: Money,
    /// `rs` (reasoning price, else `out`).
    pub reasoning: Money,
}

/// `price * count`, exactly, or `None` on overflow. Real per-token prices fit a `u64` of
/// pico-dollars, where one widening multiply replaces the slower checked `i128` multiply.
/// The result is also checked against the `Decimal(38, 12)` range ([`MAX_COST_PICOS`]).
#[inline]
fn mul_count(price: Money, count: u64) -> Option<Money> {
    let m = match u64::try_from(price.picos()) {
        Ok(p) => i128::try_from(u128::from(p) * u128::from(count)).ok().map(Money::from_picos),
        Err(_) => price.checked_mul_count(count).ok(),
    }?;
    in_cost_range(m).then_some(m)
}

/// The largest magnitude of a cost in pico-dollars: `Decimal(38, 12)` holds 38 digits, so
/// `10^38 - 1` (just under 10^26 USD). An `i128` reaches 1.7 * 10^38; beyond this the ledger
/// row could not be stored, so pricing rejects it as `overflow`.
pub const MAX_COST_PICOS: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// True when `m` fits `Decimal(38, 12)`.
#[inline]
pub fn in_cost_range(m: Money) -> bool {
    m.picos().unsigned_abs() <= MAX_COST_PICOS as u128
}

#[cold]
fn overflow(what: &str) -> Rejection {
    Rejection::new(RejectReason::Overflow, format!("{what} exceeds the Decimal(38, 12) range"))
}

impl ResolvedPrices {
    /// The cost terms of docs/pricing.md "The formula", step 3, with checked arithmetic.
    ///
    /// Token parts exceeding their totals give `inconsistent_tokens`; a term outside the
    /// `Decimal(38, 12)` range gives `overflow`.
    pub fn cost_terms(&self, tokens: &TokenCounts) -> Result<CostTerms, Rejection> {
        let inconsistent = |what: &str| Rejection::new(RejectReason::InconsistentTokens, format!("{what} exceed their total"));
        let uncached = tokens
            .input
            .checked_sub(tokens.cache_read)
            .and_then(|v| v.checked_sub(tokens.cache_creation))
            .and_then(|v| v.checked_sub(tokens.cache_creation_1h))
            .ok_or_else(|| {
                inconsistent("cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens")
            })?;
        let plain_output = tokens.output.checked_sub(tokens.reasoning).ok_or_else(|| inconsistent("reasoning_output_tokens"))?;
        let mul = |price: Money, count: u64, what: &str| mul_count(price, count).ok_or_else(|| overflow(what));
        Ok(CostTerms {
            input: mul(self.input, uncached, "input cost")?,
            cache_read: mul(self.cache_read, tokens.cache_read, "cache read cost")?,
            cache_write: mul(self.cache_write, tokens.cache_creation, "cache write cost")?,
            cache_write_1h: mul(self.cache_write_1h, tokens.cache_creation_1h, "1 hour cache write cost")?,
            output: mul(self.output, plain_output, "output cost")?,
            reasoning: mul(self.reasoning, tokens.reasoning, "reasoning cost")?,
        })
    }

    /// The cost terms and their exact total.
    pub fn cost(&self, tokens: &TokenCounts) -> Result<(CostTerms, Money), Rejection> {
        let terms = self.cost_terms(tokens)?;
        let total = terms.total().ok().filter(|t| in_cost_range(*t)).ok_or_else(|| overflow("total cost"))?;
        Ok((terms, total))
    }
}
