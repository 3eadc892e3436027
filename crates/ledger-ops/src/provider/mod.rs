//! `ledger reconcile provider`: the ledger against a provider's own usage (and cost) export, by
//! UTC day, model and token class. Each gap is classified:
//!
//! - **missing calls**: the day's and model's total tokens (or requests) differ, e.g. calls the
//!   provider billed that never reached the ledger (failed or cut-off calls that reported no
//!   usage), or calls in the ledger the provider does not show;
//! - **token class mismatch**: the totals agree but their split does not (cache reads or writes,
//!   input versus output): a producer reporting tokens in the wrong class;
//! - **price mismatch**: the tokens agree but the provider's amount for a class differs from the
//!   ledger's cost: a catalog price that is not the provider's.
//!
//! A gap counts against the run when it is beyond the tolerance (a percentage of the larger
//! side). The formats read are in [`parse`]; docs/finance.md describes the whole comparison.

pub mod parse;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger_clickhouse::provider_usage::{usage_by_day_and_model, DayModelUsage};
use ledger_clickhouse::ClickHouseConfig;
use ledger_core::budget::Percent;
use ledger_core::{Money, TokenClass};

use crate::OpsError;
use parse::{Export, ExportKind};

mod compare;
mod report;

pub use compare::{compare, Gap, GapKind, Side};
pub use report::ProviderReport;

/// A provider whose export format is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// OpenAI: `GET /v1/organization/usage/completions` and `GET /v1/organization/costs`.
    OpenAi,
    /// Anthropic: `GET /v1/organizations/usage_report/messages` and `GET /v1/organizations/cost_report`.
    Anthropic,
}

impl Provider {
    /// The ledger's `provider` value of its calls (OpenTelemetry `gen_ai.provider.name`).
    pub const fn ledger_name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    /// `openai` or `anthropic`.
    fn from_str(s: &str) -> Result<Provider, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(Provider::OpenAi),
            "anthropic" => Ok(Provider::Anthropic),
            other => Err(format!("{other:?} is not a provider whose exports are read: openai or anthropic")),
        }
    }
}

/// A token figure a provider reports, and the ledger's token classes that make it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    /// Every input token, cached or not (OpenAI `input_tokens`).
    InputTotal,
    /// Input tokens neither read from nor written to a cache (Anthropic `uncached_input_tokens`).
    InputUncached,
    /// Cache reads.
    CacheRead,
    /// Cache writes of either lifetime (OpenAI `input_cache_write_tokens`).
    CacheWrite,
    /// 5 minute cache writes (Anthropic `ephemeral_5m_input_tokens`).
    CacheWrite5m,
    /// 1 hour cache writes (Anthropic `ephemeral_1h_input_tokens`).
    CacheWrite1h,
    /// Every output token, reasoning included.
    OutputTotal,
}

impl Measure {
    /// The ledger's token classes that add up to the figure.
    pub const fn classes(self) -> &'static [TokenClass] {
        match self {
            Measure::InputTotal => &[TokenClass::Input, TokenClass::CacheRead, TokenClass::CacheWrite, TokenClass::CacheWrite1h],
            Measure::InputUncached => &[TokenClass::Input],
            Measure::CacheRead => &[TokenClass::CacheRead],
            Measure::CacheWrite => &[TokenClass::CacheWrite, TokenClass::CacheWrite1h],
            Measure::CacheWrite5m => &[TokenClass::CacheWrite],
            Measure::CacheWrite1h => &[TokenClass::CacheWrite1h],
            Measure::OutputTotal => &[TokenClass::Output, TokenClass::Reasoning],
        }
    }

    /// The name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Measure::InputTotal => "input (all)",
            Measure::InputUncached => "input (uncached)",
            Measure::CacheRead => "cache read",
            Measure::CacheWrite => "cache write",
            Measure::CacheWrite5m => "cache write 5m",
            Measure::CacheWrite1h => "cache write 1h",
            Measure::OutputTotal => "output (reasoning included)",
        }
    }

    /// True for the cache figures (a mismatch there is a "cache" token class mismatch).
    pub const fn is_cache(self) -> bool {
        matches!(self, Measure::CacheRead | Measure::CacheWrite | Measure::CacheWrite5m | Measure::CacheWrite1h)
    }
}

/// The provider's figures of one (day, model), summed over its exports' results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderFigures {
    /// Requests, when reported.
    pub requests: Option<u64>,
    /// Token figures.
    pub tokens: BTreeMap<Measure, u64>,
    /// Amounts per token figure.
    pub costs: BTreeMap<Measure, Money>,
    /// Amounts the provider charged that are no token class of the ledger (web search, ...).
    pub other_costs: BTreeMap<String, Money>,
}

/// The ledger's figures of one (day, model).
pub type LedgerFigures = DayModelUsage;

/// `(UTC day, model)`.
pub type DayModel = (NaiveDate, String);

/// Everything read from the export files.
#[derive(Debug, Clone)]
pub struct ProviderData {
    /// Whose exports.
    pub provider: Provider,
    /// `[from, to)` the exports cover (their first bucket's start to their last bucket's end).
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// Figures per (day, model).
    pub figures: BTreeMap<DayModel, ProviderFigures>,
    /// True when a cost export was read (prices are compared).
    pub has_costs: bool,
}

/// Reads and merges export files (`.csv`, else JSON) of `provider`.
pub fn read_exports(provider: Provider, files: &[&Path]) -> Result<ProviderData, OpsError> {
    let mut exports = Vec::new();
    for path in files {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| OpsError::Invalid(format!("reading {what}: {e}")))?;
        let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let export = if is_csv { parse::parse_csv(&text, &what)? } else { parse::parse_json(&text, &what)? };
        if export.provider != provider {
            return Err(OpsError::Invalid(format!(
                "{what} is a {:?} export, not {provider:?}: pass the matching --provider",
                export.provider
            )));
        }
        exports.push(export);
    }
    merge(provider, exports)
}

fn utc_day(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<NaiveDate, OpsError> {
    let day = start.date_naive();
    let next = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
    if end <= start || next.is_some_and(|n| end > n) {
        return Err(OpsError::Invalid(format!(
            "bucket {start} .. {end} does not lie within one UTC day: export with bucket_width 1d (or 1h) starting at \
             midnight UTC"
        )));
    }
    Ok(day)
}

/// Merges parsed exports into per-(day, model) figures. Needs at least one usage export.
pub fn merge(provider: Provider, exports: Vec<Export>) -> Result<ProviderData, OpsError> {
    if !exports.iter().any(|e| e.kind == ExportKind::Usage) {
        return Err(OpsError::Invalid(
            "no usage export among the files: pass the provider's usage report (tokens per day and model); a cost \
             export alone cannot tell missing calls from prices"
                .into(),
        ));
    }
    let starts = exports.iter().flat_map(|e| e.buckets.iter().map(|b| b.0));
    let ends = exports.iter().flat_map(|e| e.buckets.iter().map(|b| b.1));
    let (Some(from), Some(to)) = (starts.min(), ends.max()) else {
        return Err(OpsError::Invalid("the exports have no buckets".into()));
    };
    let mut figures: BTreeMap<DayModel, ProviderFigures> = BTreeMap::new();
    let need_model = |m: Option<String>| {
        m.ok_or_else(|| {
            OpsError::Invalid("a result has no model: export grouped by model (group_by[]=model, or line items per model)".into())
        })
    };
    let has_costs = exports.iter().any(|e| e.kind == ExportKind::Costs);
    for e in exports {
        for u in e.usage {
            let f = figures.entry((utc_day(u.start, u.end)?, need_model(u.model)?)).or_default();
            if let Some(r) = u.requests {
                f.requests = Some(f.requests.unwrap_or(0) + r);
            }
            for (m, t) in u.tokens {
                *f.tokens.entry(m).or_default() += t;
            }
        }
        for c in e.costs {
            let f = figures.entry((utc_day(c.start, c.end)?, need_model(c.model)?)).or_default();
            let slot = match c.measure {
                Some(m) => f.costs.entry(m).or_default(),
                None => f.other_costs.entry(c.label).or_default(),
            };
            *slot = slot.checked_add(c.amount)?;
        }
    }
    Ok(ProviderData { provider, range: (from, to), figures, has_costs })
}

/// Reconciles the ledger against exports of one provider; `tolerance` is a percentage of the
/// larger side within which a difference is not counted against the run.
pub async fn reconcile_provider(
    config: &ClickHouseConfig,
    provider: Provider,
    files: &[&Path],
    tolerance: Percent,
) -> Result<ProviderReport, OpsError> {
    let data = read_exports(provider, files)?;
    let client = config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let (from, to) = data.range;
    let ledger = usage_by_day_and_model(&client, &config.database, provider.ledger_name(), from, to)
        .await
        .map_err(|e| OpsError::clickhouse(e, &config.url))?;
    let ledger: BTreeMap<DayModel, LedgerFigures> =
        ledger.into_iter().map(|u| ((u.day.date_naive(), u.model.clone()), u)).collect();
    let gaps = compare(&data, &ledger, tolerance);
    let days = ((to - from) + Duration::seconds(86_399)).num_days();
    Ok(ProviderReport {
        provider,
        database: config.database.clone(),
        files: files.iter().map(|p| p.display().to_string()).collect(),
        range: data.range,
        days,
        compared: data.figures.keys().chain(ledger.keys()).collect::<std::collections::BTreeSet<_>>().len(),
        prices_compared: data.has_costs,
        tolerance,
        gaps,
    })
}

/// Parses a tolerance percentage (`0`, `0.5`, `2`); exact, at most 6 fractional digits.
pub fn parse_tolerance(text: &str) -> Result<Percent, OpsError> {
    let bad = || OpsError::Invalid(format!("--tolerance {text:?} is not a percentage from 0 to 100 (e.g. 0.5)"));
    let d = ledger_core::decimal::Decimal::parse(text.trim().trim_end_matches('%')).map_err(|_| bad())?;
    match d.to_scale_exact(ledger_core::budget::policy::PERCENT_SCALE) {
        Some(Ok(micros)) if (0..=100_000_000).contains(&micros) => Ok(Percent::from_micros(micros)),
        _ => Err(bad()),
    }
}
