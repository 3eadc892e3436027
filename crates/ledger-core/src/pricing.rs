//! The pricing formula of PRICING.md: which catalog entry, which price for each token class,
//! and the exact cost terms of one event.

use std::sync::Arc;

use crate::money::{Money, MoneyOverflow};

/// The cost of one event, term by term (PRICING.md "The formula", step 3). Nothing is rounded.
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
        Money::checked_sum([
            self.input,
            self.cache_read,
            self.cache_write,
            self.cache_write_1h,
            self.output,
            self.reasoning,
        ])
    }
}

/// What the model the application first asked for (`routed_from_model`) would have cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedFromCost {
    /// Catalog key of the original model.
    pub model: Arc<str>,
    /// Its cost for the same tokens, by the same rules.
    pub cost: Money,
    /// `cost` minus the charged cost (negative when the reroute cost more).
    pub savings: Money,
}

/// A priced event: the entry and price version used, each cost term and the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedUsage {
    /// The catalog key that priced the event (the ledger's `model` column).
    pub model: Arc<str>,
    /// `source@effective_from` of the catalog source used, so the cost can be recomputed.
    pub price_version: Arc<str>,
    /// Each cost term.
    pub terms: CostTerms,
    /// The charged cost: the exact sum of `terms`.
    pub cost: Money,
    /// Routing savings, when the event carries a known `routed_from_model`.
    pub routed_from: Option<RoutedFromCost>,
}
