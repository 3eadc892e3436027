//! Pure domain core of the LLM usage ledger.
//!
//! Everything here is deterministic and free of I/O: the exact [`money`] type, the usage
//! [`event`] model and its validation, the price [`catalog`] and [`pricing`] engine, and
//! windowed [`aggregate`]s. Adapters for Kafka and ClickHouse live in other crates and
//! depend on this one, never the other way round.

pub mod acceptance;
pub mod aggregate;
pub mod attribution;
pub mod budget;
pub mod catalog;
pub mod chargeback;
pub mod decimal;
pub mod dedupe;
pub mod event;
pub mod histogram;
pub mod lease;
pub mod money;
pub mod pricing;
pub mod secret;
pub mod signal;
pub mod spend;
pub mod token_class;

pub use catalog::{Catalog, CatalogEntry, CatalogError, CatalogSource, LoadReport};
pub use event::{EventTime, TagsRef, TokenCounts, UsageEvent, UsageEventRef};
pub use money::Money;
pub use pricing::{CostTerms, PriceField, PricedRef, PricedUsage, ResolvedPrices, RoutedFromCost};
pub use token_class::TokenClass;
