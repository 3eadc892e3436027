//! Spend grouped by attribution dimensions (read from the rollups, exact money), and the daily
//! spend-by-team chart.

use chrono::{DateTime, Utc};

use ledger_clickhouse::{ClickHouseConfig, Dimension, GroupedSpendRow, LedgerReader};
use ledger_core::Money;

use crate::format::csv_field;
use crate::OpsError;

/// Spend over a range, grouped.
#[derive(Debug, Clone)]
pub struct SpendReport {
    /// The database read.
    pub database: String,
    /// `[from, to)`, event time.
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// The grouping, in order.
    pub by: Vec<Dimension>,
    /// One row per group.
    pub rows: Vec<GroupedSpendRow>,
    /// The rows added up.
    pub total: SpendTotal,
}

/// The exact sum of a report's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendTotal {
    /// Requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost.
    pub cost: Money,
}

/// Parses `--by` names (`tenant`, `team`, `project`, `provider`, `model`); blanks are skipped.
pub fn parse_dimensions(names: &[String]) -> Result<Vec<Dimension>, OpsError> {
    names
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Dimension::parse(s).ok_or_else(|| {
                OpsError::Invalid(format!("unknown dimension {s:?} in --by (use tenant, team, project, provider, model)"))
            })
        })
        .collect()
}

/// Spend of `[from, to)` grouped `by`.
pub async fn spend(
    config: &ClickHouseConfig,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: &[Dimension],
) -> Result<SpendReport, OpsError> {
    let client = config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let reader = LedgerReader::new(client, &config.database).map_err(OpsError::ClickHouse)?;
    let rows = reader.spend(from, to, by).await.map_err(|e| OpsError::clickhouse(e, &config.url))?;
    let total = SpendTotal {
        requests: rows.iter().map(|r| r.requests).sum(),
        input_tokens: rows.iter().map(|r| r.input_tokens).sum(),
        output_tokens: rows.iter().map(|r| r.output_tokens).sum(),
        cost: Money::checked_sum(rows.iter().map(|r| r.cost))?,
    };
    Ok(SpendReport { database: config.database.clone(), range: (from, to), by: by.to_vec(), rows, total })
}

impl SpendReport {
    /// The report for people: a table (costs rounded to `decimals`) and the exact total, or
    /// what to do when `range` has no spend.
    pub fn to_text(&self, range: &str, decimals: u32) -> String {
        if self.rows.is_empty() {
            return format!(
                "No spend recorded in database {} for {range}.\nRun `ledger process` to fill the ledger, or widen --from/--to.\n",
                self.database
            );
        }
        let mut header: Vec<&str> = self.by.iter().map(|d| d.name()).collect();
        header.extend(["requests", "input tokens", "output tokens", "cost (USD)"]);
        let right: Vec<usize> = (self.by.len()..header.len()).collect();
        let table = crate::format::table(&header, self.display_rows(decimals), &right);
        format!(
            "Spend in database {} for {range}\n{table}\nTotal (exact): {} USD over {} requests. Costs above are rounded \
             half-to-even to {decimals} decimals; the total is the exact sum of the unrounded costs.\n",
            self.database, self.total.cost, self.total.requests
        )
    }

    /// CSV with exact 12-digit costs: one column per dimension, then the counters.
    pub fn to_csv(&self) -> String {
        let mut header: Vec<&str> = self.by.iter().map(|d| d.name()).collect();
        header.extend(["requests", "input_tokens", "output_tokens", "cost_usd"]);
        let mut out = header.join(",") + "\n";
        for r in &self.rows {
            let mut fields: Vec<String> = r.keys.iter().map(|k| csv_field(k)).collect();
            fields.extend([r.requests.to_string(), r.input_tokens.to_string(), r.output_tokens.to_string(), r.cost.to_string()]);
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// The rows for people: keys (`(none)` for an empty one), counters and the cost rounded to
    /// `decimals`, then a `TOTAL` row (none without a key column: the single row is the total).
    pub fn display_rows(&self, decimals: u32) -> Vec<Vec<String>> {
        let row = |keys: Vec<String>, requests: u64, input: u64, output: u64, cost: Money| {
            let mut cells = keys;
            cells.extend([requests.to_string(), input.to_string(), output.to_string(), crate::format::fmt_money(cost, decimals)]);
            cells
        };
        let mut rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let keys = r.keys.iter().map(|k| if k.is_empty() { "(none)".to_owned() } else { k.clone() }).collect();
                row(keys, r.requests, r.input_tokens, r.output_tokens, r.cost)
            })
            .collect();
        if !self.by.is_empty() {
            let mut keys = vec![String::new(); self.by.len()];
            keys[0] = "TOTAL".into();
            let t = self.total;
            rows.push(row(keys, t.requests, t.input_tokens, t.output_tokens, t.cost));
        }
        rows
    }

    /// One JSON document with exact costs as strings.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut obj = serde_json::Map::new();
                for (d, k) in self.by.iter().zip(&r.keys) {
                    obj.insert(d.name().to_owned(), serde_json::Value::String(k.clone()));
                }
                obj.insert("requests".into(), r.requests.into());
                obj.insert("input_tokens".into(), r.input_tokens.into());
                obj.insert("output_tokens".into(), r.output_tokens.into());
                obj.insert("cost_usd".into(), serde_json::Value::String(r.cost.to_string()));
                serde_json::Value::Object(obj)
            })
            .collect();
        let t = &self.total;
        serde_json::json!({
            "database": self.database,
            "from": self.range.0.to_rfc3339(),
            "to": self.range.1.to_rfc3339(),
            "by": self.by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "rows": rows,
            "total": { "requests": t.requests, "input_tokens": t.input_tokens, "output_tokens": t.output_tokens, "cost_usd": t.cost.to_string() },
        })
    }
}

/// A rendered chart of daily spend by team.
#[derive(Debug, Clone)]
pub struct DailyChart {
    /// The SVG document.
    pub svg: String,
    /// `first .. last` day charted.
    pub days: String,
    /// Teams charted.
    pub teams: usize,
}

/// The daily-spend-by-team chart of the whole days touched by `[from, to)`; `None` when those
/// days have no spend.
pub async fn daily_chart(
    config: &ClickHouseConfig,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DailyChart>, OpsError> {
    let client = config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let (day_from, day_to) = (crate::chart::floor_day(from), crate::chart::ceil_day(to));
    let days = ledger_clickhouse::chargeback::daily_team_spend(&client, &config.database, day_from, day_to)
        .await
        .map_err(|e| OpsError::clickhouse(e, &config.url))?;
    if days.is_empty() {
        return Ok(None);
    }
    let first = days.iter().map(|d| d.day).min().unwrap_or(day_from);
    let last = days.iter().map(|d| d.day).max().unwrap_or(day_from);
    let range = format!("{} .. {}", first.format("%Y-%m-%d"), last.format("%Y-%m-%d"));
    let svg = crate::chart::render(&days, &range)?;
    let teams: std::collections::BTreeSet<&str> = days.iter().map(|d| crate::chart::team_label(&d.team)).collect();
    Ok(Some(DailyChart { svg, days: range, teams: teams.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_parse_with_a_clear_error() {
        let by = parse_dimensions(&["tenant".into(), " ".into(), "model".into()]).unwrap();
        assert_eq!(by, vec![Dimension::Tenant, Dimension::Model]);
        let err = parse_dimensions(&["colour".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown dimension \"colour\""), "{err}");
    }

    #[test]
    fn csv_and_json_carry_exact_costs() {
        let report = SpendReport {
            database: "ledger".into(),
            range: (DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH),
            by: vec![Dimension::Team],
            rows: vec![GroupedSpendRow {
                keys: vec!["a,b".into()],
                requests: 2,
                input_tokens: 3,
                output_tokens: 4,
                cost: Money::from_picos(5),
            }],
            total: SpendTotal { requests: 2, input_tokens: 3, output_tokens: 4, cost: Money::from_picos(5) },
        };
        assert_eq!(report.to_csv(), "team,requests,input_tokens,output_tokens,cost_usd\n\"a,b\",2,3,4,0.000000000005\n");
        assert_eq!(report.to_json()["rows"][0]["cost_usd"], "0.000000000005");
        let rows = report.display_rows(2);
        assert_eq!(rows[1], ["TOTAL", "2", "3", "4", "0.00"]);
    }
}
