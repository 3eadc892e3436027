//! The pricing formula of docs/pricing.md: which catalog entry, which price for each token class,
//! and the exact cost terms of one event.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::{RejectReason, Rejection, TokenCounts};
use crate::money::{mul_div_half_even, Money, MoneyOverflow};

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
    /// Where the prices came from (docs/pricing.md "The price version"): the source version,
    /// with `;alias_of=X` and `;off_peak` when they apply, or `override=ID@T` when a `prices`
    /// override priced the event. [`PricedUsage::price_version_text`] adds `override_version`.
    pub price_version: S,
    /// `;override=ID@T` when a `multiplier` override scaled the catalog prices.
    pub override_version: Option<S>,
    /// The target of the `alias_of` entry that priced the event (its prices were used).
    pub alias_of: Option<S>,
    /// Each cost term.
    pub terms: CostTerms,
    /// The charged cost: the exact sum of `terms`.
    pub cost: Money,
    /// Routing savings, when the event carries a known `routed_from_model`.
    pub routed_from: Option<RoutedFromCost<S>>,
}

/// A [`PricedUsage`] that borrows its names from the catalog.
pub type PricedRef<'c> = PricedUsage<&'c Arc<str>>;

impl<S: AsRef<str>> PricedUsage<S> {
    /// The whole price version text of the ledger line: `price_version` followed by
    /// `override_version` (borrowed unless an override applied).
    pub fn price_version_text(&self) -> Cow<'_, str> {
        match &self.override_version {
            None => Cow::Borrowed(self.price_version.as_ref()),
            Some(o) => Cow::Owned(format!("{}{}", self.price_version.as_ref(), o.as_ref())),
        }
    }
}

impl PricedRef<'_> {
    /// The owned result, independent of the catalog.
    pub fn to_owned_priced(&self) -> PricedUsage {
        PricedUsage {
            model: Arc::clone(self.model),
            price_version: Arc::clone(self.price_version),
            override_version: self.override_version.map(Arc::clone),
            alias_of: self.alias_of.map(Arc::clone),
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

    /// True for the input-side fields (input, cache read, both cache writes); the output and
    /// reasoning prices are output-side (docs/pricing.md "The formula", step 1).
    pub const fn is_input_side(self) -> bool {
        matches!(self, PriceField::Input | PriceField::CacheRead | PriceField::CacheCreation | PriceField::CacheCreation1h)
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

/// First price whose threshold the input passes (the list is sorted largest first): `input > N*1000`,
/// or `input >= N*1000` when `inclusive` (xAI's entries, docs/pricing.md "The formula", step 1).
fn pick_above(list: &[(u64, Money)], input_tokens: u64, inclusive: bool) -> Option<Money> {
    list.iter()
        .find(|&&(threshold, _)| if inclusive { input_tokens >= threshold } else { input_tokens > threshold })
        .map(|&(_, price)| price)
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
/// [`resolve_field`] (docs/pricing.md "The formula", step 1).
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

    /// Steps 1 and 2 of docs/pricing.md "The formula", step 1: `F_above_{N}k_tokens_{tier}` (the
    /// largest `N` the input passes, see [`PriceVariants::plain_price`]), then `F_{tier}`.
    pub fn tier_price(&self, tier: &str, input_tokens: u64, inclusive: bool) -> Option<Money> {
        let t = self.tiers.iter().find(|t| &*t.tier == tier)?;
        pick_above(&t.above, input_tokens, inclusive).or(t.plain)
    }

    /// Steps 4 and 5: `F_above_{N}k_tokens` with the largest `N` such that `input_tokens > N*1000`
    /// (`>=` when `inclusive`), then `F`.
    pub fn plain_price(&self, input_tokens: u64, inclusive: bool) -> Option<Money> {
        pick_above(&self.above, input_tokens, inclusive).or(self.plain)
    }

    /// Replaces every price that `other` has (docs/pricing.md: a tier's or the off-peak fields
    /// replace the entry's fields of the same name).
    pub fn overlay(&mut self, other: &PriceVariants) {
        if let Some(p) = other.plain {
            self.plain = Some(p);
        }
        for &(threshold, p) in &other.above {
            insert_above(&mut self.above, threshold, p);
        }
        for t in &other.tiers {
            if let Some(p) = t.plain {
                self.set(Some(&t.tier), None, p);
            }
            for &(threshold, p) in &t.above {
                self.set(Some(&t.tier), Some(threshold), p);
            }
        }
    }

    /// Every long-context threshold (`N * 1000`) of the plain and the tier variants.
    pub(crate) fn thresholds(&self) -> impl Iterator<Item = u64> + '_ {
        self.above.iter().chain(self.tiers.iter().flat_map(|t| t.above.iter())).map(|&(n, _)| n)
    }
}

/// The price fields of one entry, indexed by [`PriceField::index`].
pub type FieldSet = [PriceVariants; 6];

/// The price of field `f` for service-tier suffix `tier` and `input_tokens`, by docs/pricing.md
/// "The formula", step 1 (all five sub-steps, the tier ratio of 1.3 included); `inclusive` is
/// xAI's `>=` threshold. `None` when no sub-step gives a price.
pub fn resolve_field(fields: &FieldSet, f: PriceField, tier: Option<&str>, input_tokens: u64, inclusive: bool) -> Option<Money> {
    let field = &fields[f.index()];
    let plain = field.plain_price(input_tokens, inclusive);
    if let Some(t) = tier {
        if let Some(p) = field.tier_price(t, input_tokens, inclusive) {
            return Some(p);
        }
        let side = if f.is_input_side() { PriceField::Input } else { PriceField::Output };
        let side = &fields[side.index()];
        if let (Some(p), Some(xs), Some(xp)) =
            (plain, side.tier_price(t, input_tokens, inclusive), side.plain_price(input_tokens, inclusive))
        {
            if xp.picos() != 0 {
                return Some(scale_price(p, xs.picos().unsigned_abs(), xp.picos().unsigned_abs()));
            }
        }
    }
    plain
}

/// `price * num / den` rounded half to even to the pico-dollar; a result beyond `i128` saturates
/// (any token priced at it overflows the cost range anyway).
pub(crate) fn scale_price(price: Money, num: u128, den: u128) -> Money {
    let v = mul_div_half_even(price.picos().unsigned_abs(), num, den).and_then(|v| i128::try_from(v).ok());
    Money::from_picos(v.unwrap_or(i128::MAX))
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

impl ResolvedPrices {
    /// The six prices of docs/pricing.md "The formula", steps 1 and 2, for an entry's fields.
    /// `None` when the fields lack an input or an output price.
    pub fn resolve(fields: &FieldSet, tier: Option<&str>, input_tokens: u64, inclusive: bool) -> Option<ResolvedPrices> {
        let get = |f: PriceField| resolve_field(fields, f, tier, input_tokens, inclusive);
        let input = get(PriceField::Input)?;
        let output = get(PriceField::Output)?;
        let cache_write = get(PriceField::CacheCreation).unwrap_or(input);
        Some(ResolvedPrices {
            input,
            output,
            cache_read: get(PriceField::CacheRead).unwrap_or(input),
            cache_write,
            cache_write_1h: get(PriceField::CacheCreation1h).unwrap_or(cache_write),
            reasoning: get(PriceField::Reasoning).unwrap_or(output),
        })
    }

    /// Every price times `num / den`, rounded half to even (a `multiplier` override).
    pub fn scaled(&self, num: u128, den: u128) -> ResolvedPrices {
        let s = |p: Money| scale_price(p, num, den);
        ResolvedPrices {
            input: s(self.input),
            output: s(self.output),
            cache_read: s(self.cache_read),
            cache_write: s(self.cache_write),
            cache_write_1h: s(self.cache_write_1h),
            reasoning: s(self.reasoning),
        }
    }
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
