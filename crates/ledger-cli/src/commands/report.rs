//! `ledger report`: reports from the ClickHouse ledger (read from the rollups, exact money);
//! the reports are [`ledger_ops::spend`] and [`ledger_ops::chargeback`], rendered here.

use std::process::ExitCode;

use anyhow::Context;

use super::migrate::ClickHouseArgs;

mod chargeback;

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
    /// FOCUS 1.2 rows as CSV (`report chargeback` only; see docs/finance.md).
    Focus,
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

async fn spend(args: SpendArgs) -> anyhow::Result<ExitCode> {
    let by = ledger_ops::spend::parse_dimensions(&args.by)?;
    let (from, to) = ledger_ops::range::parse_range(args.from.as_deref(), args.to.as_deref())?;
    let config = args.clickhouse.config()?;
    let report = ledger_ops::spend::spend(&config, from, to, &by).await?;
    if let Some(path) = &args.chart {
        match ledger_ops::spend::daily_chart(&config, from, to).await? {
            None => {
                eprintln!("note: no spend in database {} for the chart's days; {} not written", config.database, path.display())
            }
            Some(chart) => {
                std::fs::write(path, &chart.svg).with_context(|| format!("writing the chart to {}", path.display()))?;
                eprintln!("chart: daily spend of {} teams over {} written to {}", chart.teams, chart.days, path.display());
            }
        }
    }
    let all_time = args.from.is_none() && args.to.is_none();
    let range = format!("{} (event time, UTC)", ledger_ops::range::describe(from, to, all_time));
    match args.format {
        Format::Focus => anyhow::bail!("--format focus is for `ledger report chargeback` (or `ledger export focus`)"),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        Format::Csv => print!("{}", report.to_csv()),
        Format::Table => print!("{}", report.to_text(&range, args.decimals)),
    }
    if report.rows.is_empty() && args.format != Format::Table {
        eprintln!("note: no spend recorded in database {} for {range}", config.database);
    }
    Ok(ExitCode::SUCCESS)
}
