//! `ledger reconcile`: checks that the ledger, its rollups and its Kafka offsets agree (the
//! checks are [`ledger_ops::reconcile`]; this renders them).

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ledger_ops::provider::Provider;
use ledger_ops::reconcile::STEPS;

use super::migrate::ClickHouseArgs;

/// Exit code when a check fails (errors exit with 1).
const EXIT_CHECK_FAILED: u8 = 2;

/// Arguments of `ledger reconcile`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger reconcile                                    # the whole ledger
  ledger reconcile --from 2026-11-01 --to 2026-11-30  # rows with event time in November (UTC)
  ledger reconcile --from 2026-11-28T10:00:00Z --to 2026-11-28T11:00:00Z --limit 100
  ledger reconcile --format json | jq .passed          # for cron jobs and alerts

Checks, each printed as pass or fail:
  rollup = ledger   every counter of usage_rollup_minute/_hour/_day equals the ledger's over the
                    same buckets (bounds are widened to whole buckets of each rollup)
  no duplicates     no Kafka topic/partition/offset has two ledger rows
  no offset gaps    between the lowest and highest offset of the range's rows, per partition,
                    every offset is in the ledger, dead-lettered (listed), or a resend the
                    processor deduplicated (its event_id is in the ledger at another offset)
Exit status: 0 when every check passes, 2 when one fails, 1 on errors (e.g. unreachable services).
Offsets below the lowest one of the range are not checked (narrow ranges see only their span).
Run it on closed ranges or with the processor caught up: rows written during the checks can
show up as differences.
`ledger reconcile provider --help`: the ledger against a provider's own usage export.")]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ReconcileArgs {
    #[command(subcommand)]
    against: Option<Against>,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Start (inclusive): a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time. Default: all data.
    #[arg(long, value_name = "T")]
    from: Option<String>,
    /// End: a date includes that whole day (UTC); an RFC 3339 time is exclusive. Default: all data.
    #[arg(long, value_name = "T")]
    to: Option<String>,
    /// Problems and dead-lettered offsets listed at most (per list).
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Subcommand)]
enum Against {
    /// Compare the ledger with a provider's usage (and cost) export by day, model and token class.
    #[command(after_help = "\
Examples:
  ledger reconcile provider --provider openai --file usage.json --file costs.json
  ledger reconcile provider --provider anthropic --file usage_report.json --tolerance 0.5
  ledger reconcile provider --provider openai --file usage.csv --format json

Files: the providers' own usage/cost API responses saved as JSON, or their fields as CSV columns
(docs/finance.md; samples in tests/data/provider/). Gaps: missing calls, token class mismatch,
price mismatch (with a cost export). Exit 0 when no gap is beyond --tolerance, 2 when one is.")]
    Provider(ProviderArgs),
}

#[derive(Debug, clap::Args)]
struct ProviderArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Whose export format the files are: openai or anthropic.
    #[arg(long, value_name = "NAME")]
    provider: Provider,
    /// A usage or cost export (.json, or .csv); repeat for both.
    #[arg(long = "file", value_name = "FILE", required = true)]
    files: Vec<std::path::PathBuf>,
    /// Differences up to this percentage of the larger side do not fail the run.
    #[arg(long, default_value = "0", value_name = "PERCENT")]
    tolerance: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

async fn provider(args: ProviderArgs) -> anyhow::Result<ExitCode> {
    let tolerance = ledger_ops::provider::parse_tolerance(&args.tolerance)?;
    let files: Vec<&std::path::Path> = args.files.iter().map(|p| p.as_path()).collect();
    let report = ledger_ops::provider::reconcile_provider(&args.clickhouse.config()?, args.provider, &files, tolerance).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        Format::Table => print!("{}", report.to_text()),
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_CHECK_FAILED) })
}

/// Output format of `ledger reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A pass/fail table, then the problems and dead-lettered offsets found.
    Table,
    /// One JSON document (checks, duplicates, gaps, dead-lettered offsets), for scripts.
    Json,
}

pub(crate) async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    if let Some(Against::Provider(a)) = args.against {
        return provider(a).await;
    }
    let range = ledger_ops::range::parse_range(args.from.as_deref(), args.to.as_deref())?;
    let full = args.clickhouse.config.load()?;
    let config = args.clickhouse.config()?;
    let bar = ProgressBar::new(STEPS);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let step = |message: &str| {
        if !bar.message().is_empty() {
            bar.inc(1);
        }
        bar.set_message(message.to_owned());
    };
    let limit = args.limit.max(1);
    let report = ledger_ops::reconcile::reconcile(&config, &full.kafka, &full.topics, &full.schema, range, limit, &step).await;
    bar.finish_and_clear();
    let report = report?;
    let code = if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_CHECK_FAILED) };
    let all_time = args.from.is_none() && args.to.is_none();
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report.to_json(limit))?);
    } else {
        print!("{}", report.to_text(limit, &ledger_ops::range::describe(range.0, range.1, all_time)));
    }
    Ok(code)
}
