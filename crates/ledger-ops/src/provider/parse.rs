//! Reading provider exports: the providers' own usage and cost API responses, saved as JSON (a
//! page, or an array of pages), or the same fields as CSV (one row per result, the bucket's
//! start and end in the first columns, nested fields dotted: `cache_creation.ephemeral_5m_input_tokens`,
//! `amount.value`). docs/finance.md lists the fields read.
//!
//! Amounts are read from the text of the number (`serde_json`'s raw values), never through a
//! float. Unknown fields are ignored (the APIs add fields over time); every token field is
//! optional except the ones a format cannot do without.

use chrono::{DateTime, Utc};
use ledger_core::decimal::Decimal;
use ledger_core::Money;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Measure, Provider};
use crate::OpsError;

/// What an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// Token usage per bucket and model.
    Usage,
    /// Costs per bucket, model and token type.
    Costs,
}

/// One usage result: a bucket, a model and its token figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Bucket start (inclusive).
    pub start: DateTime<Utc>,
    /// Bucket end (exclusive).
    pub end: DateTime<Utc>,
    /// The model (`None` when the export was not grouped by model).
    pub model: Option<String>,
    /// Requests, when the provider reports them.
    pub requests: Option<u64>,
    /// Token figures reported.
    pub tokens: Vec<(Measure, u64)>,
}

/// One cost result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRecord {
    /// Bucket start (inclusive).
    pub start: DateTime<Utc>,
    /// Bucket end (exclusive).
    pub end: DateTime<Utc>,
    /// The model.
    pub model: Option<String>,
    /// The token figure the amount is for; `None` for charges that are not tokens (web search, ...).
    pub measure: Option<Measure>,
    /// The provider's name of the line (line item, token type or description).
    pub label: String,
    /// Exact amount in USD.
    pub amount: Money,
}

/// A parsed export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Whose format it is.
    pub provider: Provider,
    /// Usage or costs.
    pub kind: ExportKind,
    /// Every bucket `[start, end)` of the file, results or not (what the export covers).
    pub buckets: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Usage results.
    pub usage: Vec<UsageRecord>,
    /// Cost results.
    pub costs: Vec<CostRecord>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> OpsError {
    OpsError::Invalid(format!("{what}: {e}"))
}

fn unix(secs: i64, what: &str) -> Result<DateTime<Utc>, OpsError> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| invalid(what, format!("{secs} is not a Unix time")))
}

fn rfc3339(text: &str, what: &str) -> Result<DateTime<Utc>, OpsError> {
    DateTime::parse_from_rfc3339(text.trim()).map(|t| t.with_timezone(&Utc)).map_err(|e| invalid(what, format!("{text:?}: {e}")))
}

/// Exact USD of a decimal text in `scale`-digit units of a dollar: 0 for dollars, 2 for cents.
fn usd(text: &str, cents: bool, what: &str) -> Result<Money, OpsError> {
    let d = Decimal::parse(text.trim().trim_matches('"')).map_err(|e| invalid(what, e))?;
    let scale = ledger_core::money::SCALE - if cents { 2 } else { 0 };
    match d.to_scale_exact(scale) {
        Some(Ok(picos)) => Ok(Money::from_picos(picos)),
        Some(Err(())) => Err(invalid(what, format!("{text} is out of range"))),
        None => Err(invalid(what, format!("{text} has more digits than a pico-dollar"))),
    }
}

// ---- JSON shapes (only the fields read) ----

#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct OpenAiBucket<R> {
    start_time: i64,
    end_time: i64,
    #[serde(default = "Vec::new")]
    results: Vec<R>,
}

#[derive(Debug, Deserialize)]
struct AnthropicBucket<R> {
    starting_at: String,
    ending_at: String,
    #[serde(default = "Vec::new")]
    results: Vec<R>,
}

#[derive(Debug, Default, Deserialize)]
struct OpenAiUsage {
    model: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    num_model_requests: Option<u64>,
    input_cached_tokens: Option<u64>,
    input_cache_write_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct OpenAiAmount {
    value: Box<RawValue>,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct OpenAiCost {
    amount: OpenAiAmount,
    line_item: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct AnthropicUsage {
    model: Option<String>,
    uncached_input_tokens: u64,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
    output_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct AnthropicCost {
    amount: String,
    currency: String,
    model: Option<String>,
    token_type: Option<String>,
    cost_type: Option<String>,
    description: Option<String>,
}

/// The buckets of one page, or of an array of pages. (Not an untagged enum: serde cannot buffer
/// the raw amounts through one.)
fn buckets<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<Vec<T>, OpsError> {
    if text.trim_start().starts_with('[') {
        let pages: Vec<Page<T>> = serde_json::from_str(text).map_err(|e| invalid(what, e))?;
        Ok(pages.into_iter().flat_map(|p| p.data).collect())
    } else {
        let page: Page<T> = serde_json::from_str(text).map_err(|e| invalid(what, e))?;
        Ok(page.data)
    }
}

/// Which provider and kind a JSON export is, from its first result (or bucket).
fn detect_json(text: &str, what: &str) -> Result<(Provider, ExportKind), OpsError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(what, e))?;
    let pages: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let buckets: Vec<&serde_json::Value> = pages.iter().filter_map(|p| p.get("data")?.as_array()).flatten().collect();
    let first_bucket = buckets.first().ok_or_else(|| {
        invalid(what, "no buckets: expected the JSON of a usage or cost API response (an object with a \"data\" array)")
    })?;
    let provider = if first_bucket.get("start_time").is_some() {
        Provider::OpenAi
    } else if first_bucket.get("starting_at").is_some() {
        Provider::Anthropic
    } else {
        return Err(invalid(what, "buckets have neither start_time (OpenAI) nor starting_at (Anthropic)"));
    };
    let result = buckets.iter().filter_map(|b| b.get("results")?.as_array()?.first()).next();
    let kind = match result {
        None => ExportKind::Usage,
        Some(r) if r.get("amount").is_some() => ExportKind::Costs,
        Some(_) => ExportKind::Usage,
    };
    Ok((provider, kind))
}

/// Parses a JSON export.
pub fn parse_json(text: &str, what: &str) -> Result<Export, OpsError> {
    let (provider, kind) = detect_json(text, what)?;
    let mut export = Export { provider, kind, buckets: Vec::new(), usage: Vec::new(), costs: Vec::new() };
    match (provider, kind) {
        (Provider::OpenAi, ExportKind::Usage) => {
            for b in buckets::<OpenAiBucket<OpenAiUsage>>(text, what)? {
                let (start, end) = (unix(b.start_time, what)?, unix(b.end_time, what)?);
                export.buckets.push((start, end));
                export.usage.extend(b.results.into_iter().map(|r| openai_usage(r, start, end)));
            }
        }
        (Provider::OpenAi, ExportKind::Costs) => {
            for b in buckets::<OpenAiBucket<OpenAiCost>>(text, what)? {
                let (start, end) = (unix(b.start_time, what)?, unix(b.end_time, what)?);
                export.buckets.push((start, end));
                for r in b.results {
                    export.costs.push(openai_cost(
                        r.line_item.unwrap_or_default(),
                        r.amount.value.get(),
                        &r.amount.currency,
                        start,
                        end,
                        what,
                    )?);
                }
            }
        }
        (Provider::Anthropic, ExportKind::Usage) => {
            for b in buckets::<AnthropicBucket<AnthropicUsage>>(text, what)? {
                let (start, end) = (rfc3339(&b.starting_at, what)?, rfc3339(&b.ending_at, what)?);
                export.buckets.push((start, end));
                export.usage.extend(b.results.into_iter().map(|r| anthropic_usage(r, start, end)));
            }
        }
        (Provider::Anthropic, ExportKind::Costs) => {
            for b in buckets::<AnthropicBucket<AnthropicCost>>(text, what)? {
                let (start, end) = (rfc3339(&b.starting_at, what)?, rfc3339(&b.ending_at, what)?);
                export.buckets.push((start, end));
                for r in b.results {
                    export.costs.push(anthropic_cost(r, start, end, what)?);
                }
            }
        }
    }
    Ok(export)
}

fn openai_usage(r: OpenAiUsage, start: DateTime<Utc>, end: DateTime<Utc>) -> UsageRecord {
    let mut tokens = vec![(Measure::InputTotal, r.input_tokens), (Measure::OutputTotal, r.output_tokens)];
    tokens.extend(r.input_cached_tokens.map(|t| (Measure::CacheRead, t)));
    tokens.extend(r.input_cache_write_tokens.map(|t| (Measure::CacheWrite, t)));
    UsageRecord { start, end, model: r.model, requests: r.num_model_requests, tokens }
}

/// The token figure of an OpenAI cost line item `"<model>, <token type>"` (the API does not
/// define the text; these are the words its lines use).
fn openai_line_item(line_item: &str) -> (Option<String>, Option<Measure>) {
    let Some((model, kind)) = line_item.rsplit_once(", ") else { return (None, None) };
    let kind = kind.to_ascii_lowercase();
    let measure = if kind.contains("cached") || kind.contains("cache read") {
        Some(Measure::CacheRead)
    } else if kind.contains("cache write") || kind.contains("cache creation") {
        Some(Measure::CacheWrite)
    } else if kind.contains("input") {
        Some(Measure::InputUncached)
    } else if kind.contains("output") {
        Some(Measure::OutputTotal)
    } else {
        None
    };
    (Some(model.trim().to_owned()), measure)
}

fn openai_cost(
    line_item: String,
    value: &str,
    currency: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    what: &str,
) -> Result<CostRecord, OpsError> {
    if !currency.eq_ignore_ascii_case("usd") {
        return Err(invalid(what, format!("line {line_item:?} is in {currency}; only USD is compared")));
    }
    let (model, measure) = openai_line_item(&line_item);
    Ok(CostRecord { start, end, model, measure, amount: usd(value, false, what)?, label: line_item })
}

fn anthropic_usage(r: AnthropicUsage, start: DateTime<Utc>, end: DateTime<Utc>) -> UsageRecord {
    let mut tokens = vec![(Measure::InputUncached, r.uncached_input_tokens), (Measure::OutputTotal, r.output_tokens)];
    tokens.extend(r.cache_read_input_tokens.map(|t| (Measure::CacheRead, t)));
    let cc = r.cache_creation.unwrap_or_default();
    tokens.extend(cc.ephemeral_5m_input_tokens.map(|t| (Measure::CacheWrite5m, t)));
    tokens.extend(cc.ephemeral_1h_input_tokens.map(|t| (Measure::CacheWrite1h, t)));
    UsageRecord { start, end, model: r.model, requests: None, tokens }
}

/// The token figure of an Anthropic cost `token_type` (`uncached_input_tokens`,
/// `cache_read_input_tokens`, `cache_creation.ephemeral_5m_input_tokens`, `output_tokens`, ...).
fn anthropic_token_type(token_type: &str) -> Option<Measure> {
    let t = token_type.to_ascii_lowercase();
    if t.contains("cache_read") {
        Some(Measure::CacheRead)
    } else if t.contains("1h") {
        Some(Measure::CacheWrite1h)
    } else if t.contains("cache_creation") || t.contains("5m") {
        Some(Measure::CacheWrite5m)
    } else if t.contains("input") {
        Some(Measure::InputUncached)
    } else if t.contains("output") {
        Some(Measure::OutputTotal)
    } else {
        None
    }
}

fn anthropic_cost(r: AnthropicCost, start: DateTime<Utc>, end: DateTime<Utc>, what: &str) -> Result<CostRecord, OpsError> {
    let label = r.token_type.clone().or(r.description.clone()).or(r.cost_type.clone()).unwrap_or_default();
    if !r.currency.eq_ignore_ascii_case("usd") {
        return Err(invalid(what, format!("cost {label:?} is in {}; only USD is compared", r.currency)));
    }
    let tokens = r.cost_type.as_deref().is_none_or(|c| c == "tokens");
    let measure = if tokens { r.token_type.as_deref().and_then(anthropic_token_type) } else { None };
    // The cost report's amounts are in cents.
    Ok(CostRecord { start, end, model: r.model, measure, amount: usd(&r.amount, true, what)?, label })
}

/// Parses a CSV export: the JSON fields of the results as columns (see the module docs).
pub fn parse_csv(text: &str, what: &str) -> Result<Export, OpsError> {
    let rows = crate::format::parse_csv(text).map_err(|e| invalid(what, e))?;
    let Some((header, rows)) = rows.split_first() else {
        return Err(invalid(what, "empty CSV: expected a header line"));
    };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (provider, start_col, end_col) = match (col("start_time"), col("end_time"), col("starting_at"), col("ending_at")) {
        (Some(s), Some(e), _, _) => (Provider::OpenAi, s, e),
        (_, _, Some(s), Some(e)) => (Provider::Anthropic, s, e),
        _ => {
            return Err(invalid(what, "the CSV needs start_time,end_time (OpenAI) or starting_at,ending_at (Anthropic) columns"))
        }
    };
    let kind = if col("amount").is_some() || col("amount.value").is_some() { ExportKind::Costs } else { ExportKind::Usage };
    let mut export = Export { provider, kind, buckets: Vec::new(), usage: Vec::new(), costs: Vec::new() };
    for (n, row) in rows.iter().enumerate() {
        let line = format!("{what} line {}", n + 2);
        let get = |name: &str| col(name).and_then(|i| row.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty());
        let count = |name: &str| -> Result<Option<u64>, OpsError> {
            get(name).map(|s| s.parse::<u64>().map_err(|_| invalid(&line, format!("{name} {s:?} is not a count")))).transpose()
        };
        let required = |name: &str| count(name)?.ok_or_else(|| invalid(&line, format!("{name} is missing")));
        let text = |name: &str| get(name).map(str::to_owned);
        let (start, end) = match provider {
            Provider::OpenAi => {
                let secs = |i: usize| row.get(i).and_then(|s| s.trim().parse::<i64>().ok());
                let (s, e) = (secs(start_col), secs(end_col));
                (unix(s.unwrap_or(-1), &line)?, unix(e.unwrap_or(-1), &line)?)
            }
            Provider::Anthropic => (
                rfc3339(row.get(start_col).map_or("", String::as_str), &line)?,
                rfc3339(row.get(end_col).map_or("", String::as_str), &line)?,
            ),
        };
        if !export.buckets.contains(&(start, end)) {
            export.buckets.push((start, end));
        }
        match (provider, kind) {
            (Provider::OpenAi, ExportKind::Usage) => {
                let r = OpenAiUsage {
                    model: text("model"),
                    input_tokens: required("input_tokens")?,
                    output_tokens: required("output_tokens")?,
                    num_model_requests: count("num_model_requests")?,
                    input_cached_tokens: count("input_cached_tokens")?,
                    input_cache_write_tokens: count("input_cache_write_tokens")?,
                };
                export.usage.push(openai_usage(r, start, end));
            }
            (Provider::OpenAi, ExportKind::Costs) => {
                let value = get("amount.value").ok_or_else(|| invalid(&line, "amount.value is missing"))?;
                let currency = get("amount.currency").unwrap_or("usd");
                export.costs.push(openai_cost(text("line_item").unwrap_or_default(), value, currency, start, end, &line)?);
            }
            (Provider::Anthropic, ExportKind::Usage) => {
                let r = AnthropicUsage {
                    model: text("model"),
                    uncached_input_tokens: required("uncached_input_tokens")?,
                    cache_read_input_tokens: count("cache_read_input_tokens")?,
                    cache_creation: Some(CacheCreation {
                        ephemeral_5m_input_tokens: count("cache_creation.ephemeral_5m_input_tokens")?,
                        ephemeral_1h_input_tokens: count("cache_creation.ephemeral_1h_input_tokens")?,
                    }),
                    output_tokens: required("output_tokens")?,
                };
                export.usage.push(anthropic_usage(r, start, end));
            }
            (Provider::Anthropic, ExportKind::Costs) => {
                let r = AnthropicCost {
                    amount: text("amount").ok_or_else(|| invalid(&line, "amount is missing"))?,
                    currency: text("currency").unwrap_or_else(|| "USD".into()),
                    model: text("model"),
                    token_type: text("token_type"),
                    cost_type: text("cost_type"),
                    description: text("description"),
                };
                export.costs.push(anthropic_cost(r, start, end, &line)?);
            }
        }
    }
    Ok(export)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_usage_and_costs_json_parse_exactly() {
        let usage = r#"{"object":"page","data":[{"object":"bucket","start_time":1754006400,"end_time":1754092800,
          "results":[{"object":"organization.usage.completions.result","input_tokens":1250000,"input_cached_tokens":400000,
          "output_tokens":210000,"num_model_requests":1830,"project_id":"p","model":"gpt-4o-2024-08-06","batch":null}]},
          {"object":"bucket","start_time":1754092800,"end_time":1754179200,"results":[]}],"has_more":false,"next_page":null}"#;
        let e = parse_json(usage, "usage.json").unwrap();
        assert_eq!((e.provider, e.kind, e.buckets.len(), e.usage.len()), (Provider::OpenAi, ExportKind::Usage, 2, 1));
        assert_eq!(e.usage[0].requests, Some(1830));
        assert!(e.usage[0].tokens.contains(&(Measure::CacheRead, 400_000)));
        let costs = r#"[{"data":[{"start_time":1754006400,"end_time":1754092800,"results":[
          {"object":"organization.costs.result","amount":{"value":12345678.123456789012,"currency":"usd"},
           "line_item":"gpt-4o-2024-08-06, input","quantity":1250000,"quantity_unit":"tokens"},
          {"amount":{"value":0.5,"currency":"usd"},"line_item":"gpt-4o-2024-08-06, cached input"}]}]}]"#;
        let e = parse_json(costs, "costs.json").unwrap();
        assert_eq!(e.kind, ExportKind::Costs);
        assert_eq!(e.costs[0].amount, "12345678.123456789012".parse().unwrap(), "no float on the way");
        assert_eq!((e.costs[0].model.as_deref(), e.costs[0].measure), (Some("gpt-4o-2024-08-06"), Some(Measure::InputUncached)));
        assert_eq!(e.costs[1].measure, Some(Measure::CacheRead));
    }

    #[test]
    fn anthropic_usage_json_and_cost_csv_parse() {
        let usage = r#"{"data":[{"starting_at":"2025-08-01T00:00:00Z","ending_at":"2025-08-02T00:00:00Z","results":[
          {"uncached_input_tokens":1500000,"cache_creation":{"ephemeral_1h_input_tokens":100000,"ephemeral_5m_input_tokens":50000},
           "cache_read_input_tokens":800000,"output_tokens":230000,"server_tool_use":{"web_search_requests":12},
           "model":"claude-sonnet-4-20250514"}]}],"has_more":false}"#;
        let e = parse_json(usage, "u").unwrap();
        assert_eq!((e.provider, e.kind), (Provider::Anthropic, ExportKind::Usage));
        assert!(e.usage[0].tokens.contains(&(Measure::CacheWrite1h, 100_000)));
        let csv = "starting_at,ending_at,amount,currency,model,cost_type,token_type\n\
                   2025-08-01T00:00:00Z,2025-08-02T00:00:00Z,123.78912,USD,claude-sonnet-4-20250514,tokens,uncached_input_tokens\n\
                   2025-08-01T00:00:00Z,2025-08-02T00:00:00Z,\"10\",USD,claude-sonnet-4-20250514,web_search,\n";
        let e = parse_csv(csv, "c.csv").unwrap();
        assert_eq!((e.provider, e.kind, e.buckets.len()), (Provider::Anthropic, ExportKind::Costs, 1));
        assert_eq!(e.costs[0].amount, "1.2378912".parse().unwrap(), "cents to dollars, exactly");
        assert_eq!(e.costs[0].measure, Some(Measure::InputUncached));
        assert_eq!(e.costs[1].measure, None, "web search is not a token charge");
    }

    #[test]
    fn the_samples_in_the_repository_parse_and_csv_equals_json() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/provider/");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
        let json = parse_json(&read("openai-usage-completions.json"), "o").unwrap();
        let csv = parse_csv(&read("openai-usage-completions.csv"), "o.csv").unwrap();
        assert_eq!((json.usage.len(), json.buckets.len()), (3, 3));
        assert_eq!(csv.usage, json.usage, "the CSV holds the same results");
        let json = parse_json(&read("anthropic-usage-report.json"), "a").unwrap();
        assert_eq!(parse_csv(&read("anthropic-usage-report.csv"), "a.csv").unwrap().usage, json.usage);
        let costs = parse_json(&read("openai-costs.json"), "c").unwrap();
        assert_eq!(
            costs.costs.iter().map(|c| c.measure).collect::<Vec<_>>(),
            vec![Some(Measure::InputUncached), Some(Measure::CacheRead), Some(Measure::OutputTotal)]
        );
        let costs = parse_json(&read("anthropic-cost-report.json"), "c").unwrap();
        assert_eq!(costs.costs[0].amount, "4.5".parse().unwrap(), "450 cents");
        assert_eq!(costs.costs[2].measure, None, "web search");
    }

    #[test]
    fn bad_exports_say_what_is_wrong() {
        assert!(parse_json("{\"data\":[]}", "x").unwrap_err().to_string().contains("no buckets"));
        assert!(parse_json("[1,2]", "x").is_err());
        let e = parse_csv("start_time,end_time,input_tokens\n0,86400,12\n", "u.csv").unwrap_err();
        assert!(e.to_string().contains("output_tokens is missing"), "{e}");
        let e =
            parse_json(r#"{"data":[{"start_time":0,"end_time":1,"results":[{"amount":{"value":1,"currency":"eur"}}]}]}"#, "c");
        assert!(e.unwrap_err().to_string().contains("only USD"));
    }
}
