//! What can go wrong loading a catalog, and the [`LoadReport`] of what a source priced, skipped,
//! rounded and ignored.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::money::Money;

/// A catalog could not be loaded or assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The text is not valid JSON.
    #[error("catalog source `{source_name}`: not valid JSON: {message}")]
    Json {
        /// Source name.
        source_name: String,
        /// serde_json's message (with line and column).
        message: String,
    },
    /// The JSON is not an object of model name -> entry.
    #[error("catalog source `{source_name}`: the top level is not a JSON object of model name -> entry")]
    NotAnObject {
        /// Source name.
        source_name: String,
    },
    /// A model name appears twice at the top level.
    #[error("catalog source `{source_name}`: model `{key}` appears more than once")]
    DuplicateKey {
        /// Source name.
        source_name: String,
        /// The repeated key.
        key: String,
    },
    /// No entry of the source is priceable (wrong file?).
    #[error("catalog source `{source_name}`: no priceable model among {entries} entries (each needs input_cost_per_token and output_cost_per_token)")]
    NoPriceableModel {
        /// Source name.
        source_name: String,
        /// Number of entries read.
        entries: usize,
    },
    /// The source name is empty or contains `@` (which separates name and instant in a price version).
    #[error("invalid catalog source name {0:?}: it must be non-empty and must not contain '@'")]
    InvalidName(String),
    /// A catalog needs at least one source.
    #[error("a catalog needs at least one source")]
    NoSources,
    /// Two sources have the same name and `effective_from` (the same price version).
    #[error("price version `{0}` is given twice: give each source of the same name a distinct effective_from")]
    DuplicateVersion(String),
    /// Two sources take effect at the same instant and both price the same model, so which one
    /// applies would be ambiguous.
    #[error(
        "catalog sources `{first}` and `{second}` take effect at the same instant and both contain model `{key}`: \
         give them distinct effective_from instants"
    )]
    AmbiguousSources {
        /// Price version of one source.
        first: String,
        /// Price version of the other.
        second: String,
        /// A model both contain.
        key: String,
    },
}

/// Why an entry of a source is not a priceable model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// LiteLLM's documentation entry `sample_spec`.
    SampleSpec,
    /// The entry is not a JSON object.
    NotAnObject,
    /// No `input_cost_per_token`.
    MissingInputCost,
    /// No `output_cost_per_token`.
    MissingOutputCost,
    /// Neither `input_cost_per_token` nor `output_cost_per_token` (e.g. priced per image or second).
    MissingInputAndOutputCost,
    /// `input_cost_per_token` or `output_cost_per_token` is present but not a usable price.
    InvalidPrice {
        /// The field.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// `alias_of` is not a string.
    InvalidAliasOf,
    /// The `alias_of` target is not a key of the source.
    AliasTargetMissing {
        /// The target.
        target: String,
    },
    /// The `alias_of` target is itself an `alias_of` entry.
    AliasOfAlias {
        /// The target.
        target: String,
    },
    /// The `alias_of` target is not a priceable model.
    AliasTargetNotPriceable {
        /// The target.
        target: String,
    },
    /// `tiered_pricing` breaks docs/pricing.md's rules (ranges, objects).
    InvalidTieredPricing {
        /// What is wrong.
        detail: String,
    },
    /// A `tiered_pricing` tier lacks an input or an output price (its own or the entry's).
    TierNotPriceable {
        /// The tier's position.
        tier: usize,
    },
    /// `off_peak_pricing` breaks docs/pricing.md's rules (windows, weekdays, ranges).
    InvalidOffPeakPricing {
        /// What is wrong.
        detail: String,
    },
}

impl SkipReason {
    /// A stable snake_case code, for counting.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::SampleSpec => "sample_spec",
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::MissingInputCost => "missing_input_cost_per_token",
            SkipReason::MissingOutputCost => "missing_output_cost_per_token",
            SkipReason::MissingInputAndOutputCost => "missing_input_and_output_cost_per_token",
            SkipReason::InvalidPrice { .. } => "invalid_price",
            SkipReason::InvalidAliasOf => "invalid_alias_of",
            SkipReason::AliasTargetMissing { .. } => "alias_target_missing",
            SkipReason::AliasOfAlias { .. } => "alias_of_alias",
            SkipReason::AliasTargetNotPriceable { .. } => "alias_target_not_priceable",
            SkipReason::InvalidTieredPricing { .. } => "invalid_tiered_pricing",
            SkipReason::TierNotPriceable { .. } => "tier_not_priceable",
            SkipReason::InvalidOffPeakPricing { .. } => "invalid_off_peak_pricing",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::SampleSpec => f.write_str("LiteLLM's documentation entry, not a model"),
            SkipReason::NotAnObject => f.write_str("not a JSON object"),
            SkipReason::MissingInputCost => f.write_str("no input_cost_per_token"),
            SkipReason::MissingOutputCost => f.write_str("no output_cost_per_token"),
            SkipReason::MissingInputAndOutputCost => {
                f.write_str("no input_cost_per_token and no output_cost_per_token (not priced per token)")
            }
            SkipReason::InvalidPrice { field, detail } => write!(f, "{field}: {detail}"),
            SkipReason::InvalidAliasOf => f.write_str("alias_of is not a string"),
            SkipReason::AliasTargetMissing { target } => write!(f, "alias_of {target:?}: no such entry in the source"),
            SkipReason::AliasOfAlias { target } => write!(f, "alias_of {target:?}: an alias of an alias"),
            SkipReason::AliasTargetNotPriceable { target } => write!(f, "alias_of {target:?}: the target is not priceable"),
            SkipReason::InvalidTieredPricing { detail } => write!(f, "tiered_pricing: {detail}"),
            SkipReason::TierNotPriceable { tier } => {
                write!(f, "tiered_pricing tier {tier} has no input_cost_per_token or output_cost_per_token")
            }
            SkipReason::InvalidOffPeakPricing { detail } => write!(f, "off_peak_pricing: {detail}"),
        }
    }
}

/// An entry that is not a priceable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The entry's key.
    pub model: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// A price whose text had digits below the pico-dollar, rounded half to even.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundedPrice {
    /// The entry's key.
    pub model: String,
    /// The full field name as in the file (e.g. `input_cost_per_token_above_200k_tokens`).
    pub field: String,
    /// The number text as written in the file.
    pub text: String,
    /// The price used, per token.
    pub rounded: Money,
}

/// A price-like field of a priced entry that the catalog does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredField {
    /// The entry's key.
    pub model: String,
    /// The field name.
    pub field: String,
    /// The value text as written in the file.
    pub text: String,
    /// Why it is not used.
    pub reason: String,
}

/// What loading one source did: every model priced, every entry skipped (with the reason),
/// every price rounded and every price field ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Source name.
    pub source: String,
    /// The instant from which the source applies.
    pub effective_from: DateTime<Utc>,
    /// The price version (`name@effective_from`).
    pub version: String,
    /// Number of top-level entries in the file (priced + skipped).
    pub entries: usize,
    /// Number of priceable models (the `alias_of`, `tiered_pricing` and `off_peak_pricing`
    /// entries among them are counted below too).
    pub priced: usize,
    /// Priced `alias_of` entries.
    pub aliases: usize,
    /// Priced entries with `tiered_pricing`.
    pub tiered: usize,
    /// Priced entries with `off_peak_pricing`.
    pub off_peak: usize,
    /// Entries that are not priceable models, in file order.
    pub skipped: Vec<SkippedEntry>,
    /// Prices of priced models that were rounded to 12 fractional digits, in file order.
    pub rounded: Vec<RoundedPrice>,
    /// Price fields of priced models that are not used (unrecognized variant, not a number,
    /// negative, out of range), in file order.
    pub ignored: Vec<IgnoredField>,
    /// How long reading and loading the source took, when the loader that read the file measured
    /// it (`ledger_processor::catalog::load_catalogs` does); zero otherwise.
    pub load_time: std::time::Duration,
}

impl LoadReport {
    /// Number of skipped entries per [`SkipReason::code`].
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for s in &self.skipped {
            *m.entry(s.reason.code()).or_insert(0) += 1;
        }
        m
    }
}
