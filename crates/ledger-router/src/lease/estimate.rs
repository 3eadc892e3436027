//! The pre-call estimate of a call's cost (docs/budgets.md, "Spending locally"):
//! `input_tokens × input price + (max_tokens, else the model's output estimate) × output price`,
//! priced with the same catalog and rules as the processor (the newest source in effect now,
//! the price tier of `input_tokens`, no service tier).

use std::collections::BTreeMap;
use std::sync::Arc;

use ledger_core::catalog::Catalog;
use ledger_core::event::EventTime;
use ledger_core::{Money, TokenCounts};

use super::CallSize;

/// Why a call could not be estimated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstimateError {
    /// The router was started without a price catalog.
    NoCatalog,
    /// The catalog does not know the model.
    UnknownModel(String),
    /// The estimate is out of the money range (absurd token counts).
    Overflow(String),
}

impl std::fmt::Display for EstimateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EstimateError::NoCatalog => f.write_str(
                "this router has no price catalog to estimate calls under a lease budget (start it with Router::start_with_catalog)",
            ),
            EstimateError::UnknownModel(m) => write!(f, "model {m:?} is not in the price catalog, so a call cannot be estimated"),
            EstimateError::Overflow(detail) => write!(f, "the call's estimate is out of range: {detail}"),
        }
    }
}

/// Estimates calls with a catalog and output estimates.
#[derive(Debug, Clone)]
pub struct Estimator {
    catalog: Option<Arc<Catalog>>,
    default_output_tokens: u64,
    output_tokens: BTreeMap<String, u64>,
}

impl Estimator {
    /// An estimator; without a catalog every estimate fails with [`EstimateError::NoCatalog`].
    pub fn new(catalog: Option<Arc<Catalog>>, default_output_tokens: u64, output_tokens: BTreeMap<String, u64>) -> Estimator {
        Estimator { catalog, default_output_tokens, output_tokens }
    }

    /// The catalog, when there is one.
    pub fn catalog(&self) -> Option<&Arc<Catalog>> {
        self.catalog.as_ref()
    }

    /// The output tokens assumed for a call of `model` without `max_tokens`.
    pub fn output_estimate(&self, model: &str) -> u64 {
        self.output_tokens.get(model).copied().unwrap_or(self.default_output_tokens)
    }

    /// The estimate of a call of `model` of `size` at `now_us` (microseconds since the epoch).
    pub fn estimate(&self, model: &str, size: &CallSize<'_>, now_us: i64) -> Result<Money, EstimateError> {
        let catalog = self.catalog.as_ref().ok_or(EstimateError::NoCatalog)?;
        let at = EventTime::from_micros(now_us).unwrap_or(EventTime::from_datetime(chrono::Utc::now()));
        let entry = catalog.find(model, size.provider, at).ok_or_else(|| EstimateError::UnknownModel(model.to_owned()))?.entry;
        let tokens = TokenCounts {
            input: size.input_tokens,
            output: size.max_tokens.unwrap_or_else(|| self.output_estimate(model)),
            ..TokenCounts::default()
        };
        let (prices, _) = entry.prices_at(None, tokens.input, at).map_err(|r| EstimateError::Overflow(r.to_string()))?;
        prices.cost(&tokens).map(|(_, cost)| cost).map_err(|r| EstimateError::Overflow(r.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::catalog::CatalogSource;

    fn catalog() -> Arc<Catalog> {
        let json =
            r#"{"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": "2.5e-06", "output_cost_per_token": "1e-05"}}"#;
        let (source, _) = CatalogSource::from_litellm_json("prices", chrono::DateTime::UNIX_EPOCH, json).unwrap();
        Arc::new(Catalog::new(vec![source]).unwrap())
    }

    #[test]
    fn input_times_price_plus_max_tokens_or_the_model_estimate() {
        let e = Estimator::new(Some(catalog()), 1_000, [("gpt-4o".to_owned(), 400)].into());
        let now = 1_800_000_000_000_000;
        let size = CallSize { input_tokens: 2_000, max_tokens: Some(2_000), provider: "openai" };
        assert_eq!(e.estimate("gpt-4o", &size, now), Ok("0.025".parse().unwrap()), "2000 x 2.5e-6 + 2000 x 1e-5");
        let size = CallSize { input_tokens: 2_000, max_tokens: None, provider: "" };
        assert_eq!(e.estimate("gpt-4o", &size, now), Ok("0.009".parse().unwrap()), "400 output tokens for gpt-4o");
        assert_eq!(e.estimate("nope", &size, now), Err(EstimateError::UnknownModel("nope".into())));
        assert_eq!(Estimator::new(None, 1, BTreeMap::new()).estimate("gpt-4o", &size, now), Err(EstimateError::NoCatalog));
    }
}
