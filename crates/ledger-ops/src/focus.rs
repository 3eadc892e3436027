//! FOCUS 1.2 (FinOps Open Cost and Usage Specification) rows of a month's AI spend, as CSV:
//! `ledger report chargeback --format focus` and `ledger export focus`. The mapping, the grain
//! and the choices are documented in docs/finance.md.
//!
//! One row per charge line ([`ledger_clickhouse::charge_lines`]): UTC day, tenant, team,
//! project, feature, provider, model, price version, token class, per-token price and Kafka
//! partition. Amounts are exact decimal text; `BilledCost` adds up exactly to the ledger.
//! Rows of an open month and the rows recorded at a close have `ChargeClass` null; what reached
//! the ledger for a closed month after its close is a row with `ChargeClass` "Correction".

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use ledger_clickhouse::charge_lines::ChargeLine;
use ledger_clickhouse::ClickHouseConfig;
use ledger_core::chargeback::CostCenterMapping;

use crate::close::MonthStatement;
use crate::format::csv_field;
use crate::OpsError;

/// The FOCUS specification version the rows follow.
pub const FOCUS_VERSION: &str = "1.2";

/// The columns, in order: FOCUS columns first, then the custom `x_` lineage columns.
pub const COLUMNS: [&str; 41] = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "BillingCurrency",
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ServiceCategory",
    "ServiceSubcategory",
    "ServiceName",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "SkuId",
    "SkuPriceId",
    "SkuMeter",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "PricingCategory",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_PriceVersion",
    "x_KafkaTopic",
    "x_KafkaPartition",
    "x_KafkaOffsetFirst",
    "x_KafkaOffsetLast",
    "x_EventCount",
    "x_CorrectionOf",
];

/// Tokens per FOCUS `PricingUnit` ("1000000 Tokens").
const TOKENS_PER_PRICING_UNIT: i128 = 1_000_000;

/// What kind of row a line becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A charge of the month (open, or as recorded at the close): `ChargeClass` null.
    Charge,
    /// A charge that reached the ledger after the month's close: `ChargeClass` "Correction".
    Correction,
    /// The difference a price correction of the month makes: `ChargeClass` "Correction".
    PriceCorrection,
}

/// A month's FOCUS rows and the figures they add up to.
#[derive(Debug, Clone)]
pub struct FocusExport {
    /// The statement the rows come from.
    pub statement: MonthStatement,
    /// Team -> cost center, added to `Tags` as `cost_center` when given.
    pub mapping: Option<CostCenterMapping>,
}

/// The examples and notes of `ledger export focus --help`.
pub const EXPORT_HELP: &str = "\
Examples:
  ledger export focus --month 2026-11 --output focus-2026-11.csv
  ledger export focus --month 2026-11 --tenant acme --mapping config/cost-centers.example.toml

One row per day, tenant, attribution, model, price version, token class, price and partition;
BilledCost adds up exactly to the ledger (plus the month's price corrections); x_ columns trace
each row to its Kafka offsets. After `ledger close`, rows that came later, and the lines of
`ledger close --correct-prices`, are ChargeClass \"Correction\". Columns: docs/finance.md.";

/// The FOCUS rows of `month` (optionally of one tenant).
pub async fn export(
    config: &ClickHouseConfig,
    month: &str,
    tenant: Option<&str>,
    mapping: Option<CostCenterMapping>,
) -> Result<FocusExport, OpsError> {
    let statement = crate::close::statement(config, month, tenant).await?;
    Ok(FocusExport { statement, mapping })
}

/// The display name of an OpenTelemetry `gen_ai.provider.name` (the ledger's `provider`), for
/// `ProviderName`, `PublisherName` and `InvoiceIssuerName`; unknown names are kept as they are.
pub fn provider_display_name(provider: &str) -> &str {
    match provider {
        "openai" => "OpenAI",
        "anthropic" => "Anthropic",
        "azure.ai.openai" | "azure.ai.inference" => "Microsoft",
        "aws.bedrock" => "AWS",
        "gcp.gemini" | "gcp.vertex_ai" | "gcp.gen_ai" => "Google",
        "mistral_ai" => "Mistral AI",
        "deepseek" => "DeepSeek",
        "x_ai" => "xAI",
        "cohere" => "Cohere",
        "groq" => "Groq",
        "perplexity" => "Perplexity",
        "ibm.watsonx.ai" => "IBM",
        other => other,
    }
}

/// `value / 10^scale` as the shortest exact decimal text (`2.5`, `3`, `0.000125`).
pub fn scaled_text(value: i128, scale: u32) -> String {
    let unit = 10u128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let (whole, frac) = (abs / unit, abs % unit);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{frac:0width$}", width = scale as usize);
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// FOCUS date/time: `YYYY-MM-DDTHH:mm:ssZ`.
fn focus_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `[first day, first day of the next month)` of the month holding `t`, or of `yyyymm`.
fn month_of(year: i32, month: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    (first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(), next.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

impl FocusExport {
    /// Every row's values in [`COLUMNS`] order; `None` is a FOCUS null.
    pub fn rows(&self) -> Vec<Vec<Option<String>>> {
        let s = &self.statement;
        let charges = s.lines.iter().map(|l| self.row(l, RowKind::Charge));
        let late = s.corrections.iter().map(|l| self.row(l, RowKind::Correction));
        charges.chain(late).chain(s.price_corrections.lines.iter().map(|l| self.row(l, RowKind::PriceCorrection))).collect()
    }

    fn billing_period(&self, line: &ChargeLine, kind: RowKind) -> (DateTime<Utc>, DateTime<Utc>) {
        let month = self.statement.range;
        match (kind, line.ingest_month) {
            // A correction is billed in the month it reached the ledger, never before the
            // month after the one it corrects.
            (RowKind::Correction | RowKind::PriceCorrection, Some(yyyymm)) => {
                let ingested = month_of((yyyymm / 100) as i32, yyyymm % 100);
                if ingested.0 > month.0 {
                    ingested
                } else {
                    month_of(month.1.year(), month.1.month())
                }
            }
            (RowKind::Correction | RowKind::PriceCorrection, None) => month_of(month.1.year(), month.1.month()),
            (RowKind::Charge, _) => month,
        }
    }

    fn row(&self, l: &ChargeLine, kind: RowKind) -> Vec<Option<String>> {
        let cost = l.cost.to_string();
        let per_unit = scaled_text(l.unit_price.picos() * TOKENS_PER_PRICING_UNIT, ledger_core::money::SCALE);
        let provider = provider_display_name(&l.provider);
        let (billing_start, billing_end) = self.billing_period(l, kind);
        let mut tags = serde_json::Map::new();
        for (k, v) in [("team", &l.team), ("project", &l.project), ("feature", &l.feature)] {
            if !v.is_empty() {
                tags.insert(k.to_owned(), serde_json::Value::String(v.clone()));
            }
        }
        if let Some(cc) = self.mapping.as_ref().and_then(|m| m.cost_center(&l.tenant_id, &l.team)) {
            tags.insert("cost_center".to_owned(), serde_json::Value::String(cc.to_owned()));
        }
        let description = match kind {
            RowKind::Charge => format!("{} {} ({} calls)", l.model, l.class.meter().to_lowercase(), l.events),
            RowKind::Correction => format!(
                "{} {} ({} calls) that reached the ledger after {} was closed",
                l.model,
                l.class.meter().to_lowercase(),
                l.events,
                self.statement.month
            ),
            RowKind::PriceCorrection => format!(
                "{} {} ({} calls) of {} re-priced at {}: the difference",
                l.model,
                l.class.meter().to_lowercase(),
                l.events,
                self.statement.month,
                l.price_version
            ),
        };
        let some = |s: &str| Some(s.to_owned());
        vec![
            Some(cost.clone()),
            Some(cost.clone()),
            Some(cost.clone()),
            Some(cost),
            Some(per_unit.clone()),
            Some(per_unit.clone()),
            some("USD"),
            Some(self.statement.database.clone()),
            Some(self.statement.database.clone()),
            Some(focus_time(billing_start)),
            Some(focus_time(billing_end)),
            Some(focus_time(l.day)),
            Some(focus_time(l.day + chrono::Duration::days(1))),
            some("Usage"),
            (kind != RowKind::Charge).then(|| "Correction".to_owned()),
            Some(description),
            some("Usage-Based"),
            some("AI and Machine Learning"),
            some("Generative AI"),
            Some(format!("{provider} API")),
            some(provider),
            some(provider),
            some(provider),
            Some(l.model.clone()),
            Some(format!("{}/{}/{}@{per_unit}", l.price_version, l.model, l.class)),
            some(l.class.meter()),
            Some(l.tokens.to_string()),
            some("Tokens"),
            Some(scaled_text(i128::from(l.tokens), 6)),
            some("1000000 Tokens"),
            some("Standard"),
            Some(l.tenant_id.clone()),
            Some(l.tenant_id.clone()),
            (!tags.is_empty()).then(|| serde_json::Value::Object(tags).to_string()),
            Some(l.price_version.clone()),
            Some(l.kafka_topic.clone()),
            Some(l.kafka_partition.to_string()),
            Some(l.first_offset.to_string()),
            Some(l.last_offset.to_string()),
            Some(l.events.to_string()),
            (kind != RowKind::Charge).then(|| self.statement.month.clone()),
        ]
    }

    /// The rows as CSV with a header line: a null is an empty field, text with a separator,
    /// quote or line break is quoted (RFC 4180).
    pub fn to_csv(&self) -> String {
        let mut out = COLUMNS.join(",");
        out.push('\n');
        for row in self.rows() {
            let fields: Vec<String> = row.iter().map(|v| v.as_deref().map(csv_field).unwrap_or_default()).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// One paragraph for people (stderr): rows, totals, the close and its corrections.
    pub fn summary(&self) -> Result<String, OpsError> {
        let s = &self.statement;
        let scope = s.tenant.as_ref().map(|t| format!(" of tenant {t}")).unwrap_or_default();
        let p = &s.price_corrections;
        let equals = match p.records.len() {
            0 => "the ledger's month".to_owned(),
            n => format!("the ledger's month ({} USD) + {n} price correction(s) ({} USD)", s.ledger.cost, p.total),
        };
        let mut text = format!(
            "FOCUS {FOCUS_VERSION} rows of {}{scope} from database {}: {} rows, BilledCost {} USD = {equals} ({} requests).",
            s.month,
            s.database,
            s.lines.len() + s.corrections.len() + p.lines.len(),
            s.ledger.cost.checked_add(p.total)?,
            s.ledger.requests
        );
        if let Some(c) = &s.close {
            text.push_str(&format!(
                "\nClosed at {}: {} USD as recorded; {} correction rows since then: {} USD.",
                focus_time(c.closed_at),
                s.lines_total()?,
                s.corrections.len(),
                s.corrections_total()?
            ));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_exact_and_short() {
        assert_eq!(scaled_text(2_500_000_000_000, 12), "2.5");
        assert_eq!(scaled_text(3_000_000, 6), "3");
        assert_eq!(scaled_text(125, 6), "0.000125");
        assert_eq!(scaled_text(-15, 1), "-1.5");
        assert_eq!(scaled_text(0, 12), "0");
        assert_eq!(COLUMNS.len(), 41);
        assert!(COLUMNS.iter().skip_while(|c| !c.starts_with("x_")).all(|c| c.starts_with("x_")), "x_ columns come last");
    }

    #[test]
    fn corrections_are_billed_after_the_month_they_correct() {
        let (from, to) = crate::range::month_range("2026-11").unwrap();
        assert_eq!(month_of(to.year(), to.month()).0, to);
        assert_eq!(month_of(2026, 12).1.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(focus_time(from), "2026-11-01T00:00:00Z");
        assert_eq!(provider_display_name("openai"), "OpenAI");
        assert_eq!(provider_display_name("acme-llm"), "acme-llm");
    }
}
