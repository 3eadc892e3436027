//! `ledger report`: reports from the ClickHouse ledger (read from the rollups, exact money).

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use ledger_clickhouse::{Dimension, GroupedSpendRow, LedgerReader};
use ledger_core::Money;

use super::migrate::{explain, ClickHouseArgs};

mod chargeback;
mod chart;

/// Arguments of `ledger report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    #[command(subcommand)]
    report: Report,
}

#[derive(Debug, clap::Subcommand)]
enum Report {
    /// Spend (requests, tokens, exact cost) grouped by tenant and model, or other dimensions.
    Spend(SpendArgs),
    /// A month's spend charged to teams, projects or cost centers, adding up exactly to the ledger.
    Chargeback(chargeback::ChargebackArgs),
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A table for people (costs rounded for display, exact total below).
    Table,
    /// CSV with exact 12-digit costs.
    Csv,
    /// JSON with exact 12-digit costs as strings.
    Json,
}

/// Arguments of `ledger report spend`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger report spend                                   # all time, by tenant and model
  ledger report spend --from 2026-11-01 --to 2026-11-30 --by team,model
  ledger report spend --by tenant --format csv > spend.csv
  ledger report spend --from 2026-11-01 --chart spend.svg   # also draw daily spend by team

--chart FILE.svg writes a self-contained SVG (open it in any browser): one stacked bar per
day (UTC), one segment per team, exact amounts in the tooltips. Its days are the whole days
touched by --from/--to.")]
struct SpendArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Start (inclusive): a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time. Default: all data.
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// End: a date includes that whole day (UTC); an RFC 3339 time is exclusive. Default: all data.
    #[arg(long, value_name = "DATE")]
    to: Option<String>,
    /// Dimensions to group by, comma separated: tenant, team, project, provider, model.
    #[arg(long, value_delimiter = ',', default_value = "tenant,model", value_name = "DIMS")]
    by: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Fractional digits of costs in the table (rounded half-to-even; the total line is exact).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=12))]
    decimals: u32,
    /// Also write daily spend by team as a stacked-bar SVG chart to this file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<std::path::PathBuf>,
}

pub(crate) async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    match args.report {
        Report::Spend(a) => spend(a).await,
        Report::Chargeback(a) => chargeback::run(a).await,
    }
}

/// A bound of the report range: a date is midnight UTC (`end_of_day` moves it to the next
/// midnight), anything else must be RFC 3339.
pub(crate) fn parse_bound(s: &str, end_of_day: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        let d = if end_of_day { d.checked_add_days(Days::new(1)).context("date out of range")? } else { d };
        return Ok(d.and_hms_opt(0, 0, 0).context("invalid date")?.and_utc());
    }
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// `m` rounded half-to-even to `digits` fractional digits, printed with exactly that many.
fn fmt_money(m: Money, digits: u32) -> String {
    let s = m.round_to(digits).to_string(); // always 12 fractional digits
    let cut = 12 - digits as usize + usize::from(digits == 0);
    s[..s.len() - cut].to_owned()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

async fn spend(args: SpendArgs) -> anyhow::Result<ExitCode> {
    let by = args
        .by
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Dimension::parse(s).with_context(|| {
                format!("unknown dimension {s:?} in --by (use tenant, team, project, provider, model)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let from = match &args.from {
        Some(s) => parse_bound(s, false)?,
        None => DateTime::from_timestamp(0, 0).context("epoch")?,
    };
    let to = match &args.to {
        Some(s) => parse_bound(s, true)?,
        // The last midnight ClickHouse's DateTime holds comfortably: "all data".
        None => parse_bound("2106-01-01", false)?,
    };
    anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");

    let config = args.clickhouse.config()?;
    let client = config.client().context("invalid ClickHouse settings")?;
    let reader = LedgerReader::new(client, &config.database)?;
    let rows = reader.spend(from, to, &by).await.map_err(|e| explain(e, &config.url))?;
    if let Some(path) = &args.chart {
        write_chart(&config, path, from, to).await?;
    }
    let total = Money::checked_sum(rows.iter().map(|r| r.cost)).context("total cost overflowed")?;
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    let input: u64 = rows.iter().map(|r| r.input_tokens).sum();
    let output: u64 = rows.iter().map(|r| r.output_tokens).sum();
    let range = match (&args.from, &args.to) {
        (None, None) => "all time (event time, UTC)".to_owned(),
        _ => format!("{} .. {}", from.format("%Y-%m-%d %H:%M:%S UTC"), to.format("%Y-%m-%d %H:%M:%S UTC")),
    };

    match args.format {
        Format::Json => {
            let json_rows: Vec<serde_json::Value> = rows.iter().map(|r| row_json(r, &by)).collect();
            let doc = serde_json::json!({
                "database": config.database,
                "from": from.to_rfc3339(),
                "to": to.to_rfc3339(),
                "by": by.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "rows": json_rows,
                "total": { "requests": requests, "input_tokens": input, "output_tokens": output, "cost_usd": total.to_string() },
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            let mut header: Vec<&str> = by.iter().map(|d| d.name()).collect();
            header.extend(["requests", "input_tokens", "output_tokens", "cost_usd"]);
            println!("{}", header.join(","));
            for r in &rows {
                let mut fields: Vec<String> = r.keys.iter().map(|k| csv_field(k)).collect();
                fields.extend([r.requests.to_string(), r.input_tokens.to_string(), r.output_tokens.to_string(), r.cost.to_string()]);
                println!("{}", fields.join(","));
            }
        }
        Format::Table => {
            if rows.is_empty() {
                println!(
                    "No spend recorded in database {} for {range}.\nRun `ledger process` to fill the ledger, \
                     or widen --from/--to.",
                    config.database
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            let mut header: Vec<String> = by.iter().map(|d| d.name().to_owned()).collect();
            header.extend(["requests".into(), "input tokens".into(), "output tokens".into(), "cost (USD)".into()]);
            table.set_header(header);
            let numeric = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
            let mut push = |keys: Vec<String>, req: u64, inp: u64, out: u64, cost: Money| {
                let mut cells: Vec<Cell> = keys.into_iter().map(Cell::new).collect();
                cells.extend([
                    numeric(req.to_string()),
                    numeric(inp.to_string()),
                    numeric(out.to_string()),
                    numeric(fmt_money(cost, args.decimals)),
                ]);
                table.add_row(cells);
            };
            for r in &rows {
                let keys = r.keys.iter().map(|k| if k.is_empty() { "(none)".to_owned() } else { k.clone() }).collect();
                push(keys, r.requests, r.input_tokens, r.output_tokens, r.cost);
            }
            let mut total_keys = vec![String::new(); by.len().max(1)];
            total_keys[0] = "TOTAL".into();
            if by.is_empty() {
                // No key column: the single data row is the total already.
            } else {
                push(total_keys, requests, input, output, total);
            }
            println!("Spend in database {} for {range}", config.database);
            println!("{table}");
            println!(
                "Total (exact): {total} USD over {requests} requests. Costs above are rounded half-to-even to {} \
                 decimals; the total is the exact sum of the unrounded costs.",
                args.decimals
            );
        }
    }
    if rows.is_empty() && args.format != Format::Table {
        eprintln!("note: no spend recorded in database {} for {range}", config.database);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the daily-spend-by-team chart of the whole days touched by `[from, to)` to `path`.
async fn write_chart(
    config: &ledger_clickhouse::ClickHouseConfig,
    path: &std::path::Path,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    let client = config.client().context("invalid ClickHouse settings")?;
    let (day_from, day_to) = (chart::floor_day(from), chart::ceil_day(to));
    let days = ledger_clickhouse::chargeback::daily_team_spend(&client, &config.database, day_from, day_to)
        .await
        .map_err(|e| explain(e, &config.url))?;
    if days.is_empty() {
        eprintln!("note: no spend in database {} for the chart's days; {} not written", config.database, path.display());
        return Ok(());
    }
    let first = days.iter().map(|d| d.day).min().unwrap_or(day_from);
    let last = days.iter().map(|d| d.day).max().unwrap_or(day_from);
    let range = format!("{} .. {}", first.format("%Y-%m-%d"), last.format("%Y-%m-%d"));
    let svg = chart::render(&days, &range)?;
    std::fs::write(path, svg).with_context(|| format!("writing the chart to {}", path.display()))?;
    let teams: std::collections::BTreeSet<&str> = days.iter().map(|d| chart::team_label(&d.team)).collect();
    eprintln!("chart: daily spend of {} teams over {range} written to {}", teams.len(), path.display());
    Ok(())
}

fn row_json(r: &GroupedSpendRow, by: &[Dimension]) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    for (d, k) in by.iter().zip(&r.keys) {
        obj.insert(d.name().to_owned(), serde_json::Value::String(k.clone()));
    }
    obj.insert("requests".into(), r.requests.into());
    obj.insert("input_tokens".into(), r.input_tokens.into());
    obj.insert("output_tokens".into(), r.output_tokens.into());
    obj.insert("cost_usd".into(), serde_json::Value::String(r.cost.to_string()));
    serde_json::Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_rounded_half_even_for_display() {
        let m: Money = "1.0000005".parse().unwrap();
        assert_eq!(fmt_money(m, 6), "1.000000");
        let m: Money = "1.0000015".parse().unwrap();
        assert_eq!(fmt_money(m, 6), "1.000002");
        assert_eq!(fmt_money("2.5".parse().unwrap(), 0), "2");
        assert_eq!(fmt_money("0.123456789012".parse().unwrap(), 12), "0.123456789012");
    }

    #[test]
    fn bounds_parse_dates_and_times() {
        assert_eq!(parse_bound("2026-03-01", false).unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(parse_bound("2026-03-31", true).unwrap().to_rfc3339(), "2026-04-01T00:00:00+00:00");
        assert_eq!(parse_bound("2026-03-01T10:00:00Z", true).unwrap().to_rfc3339(), "2026-03-01T10:00:00+00:00");
        assert!(parse_bound("March", false).is_err());
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
