//! `ledger budgets`: budget status and budgets-file checks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use ledger_enforcer::status::BudgetStatus;

use crate::commands::enforce::policy_error;
use crate::config::ConfigArgs;

/// Arguments of `ledger budgets`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger budgets status --budgets config/budgets.toml
  ledger budgets status --format json | jq '.[] | select(.state != \"OK\")'
  ledger budgets check config/budgets.toml      # validate a budgets file, list every problem")]
pub(crate) struct BudgetsArgs {
    #[command(subcommand)]
    command: BudgetsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BudgetsCommand {
    /// Each budget's spend, limit, state (from the signals topic), burn rate and forecast.
    Status(StatusArgs),
    /// Validate a budgets file and list its budgets; exit non-zero with every problem when invalid.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The budgets file (TOML; overrides enforcer.budgets_file).
    #[arg(long, value_name = "FILE")]
    budgets: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The budgets file to check.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Output format of `ledger budgets status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A table for people (amounts rounded to cents).
    Table,
    /// A JSON array with exact amounts as strings.
    Json,
}

pub(crate) async fn run(args: BudgetsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BudgetsCommand::Status(a) => status(a).await,
        BudgetsCommand::Check(a) => check(a),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (policy, _) = ledger_enforcer::load_policy(&args.file).map_err(policy_error)?;
    println!("{}: {} budget(s), valid", args.file.display(), policy.budgets.len());
    for b in &policy.budgets {
        println!("  {}", b.describe());
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    if let Some(b) = args.budgets {
        config.enforcer.budgets_file = b;
    }
    let (policy, _) = ledger_enforcer::load_policy(&config.enforcer.budgets_file).map_err(policy_error)?;
    let now = Utc::now();
    let (kafka, topics, group) = (config.kafka.clone(), config.topics.clone(), format!("{}-status", config.enforcer.group_id));
    let (lease_settings, processor_group) = (config.enforcer.leases.clone(), config.processor.group_id.clone());
    let show_progress = args.format == Format::Table;
    let report = tokio::task::spawn_blocking(move || {
        let bar = if show_progress { indicatif::ProgressBar::new_spinner() } else { indicatif::ProgressBar::hidden() };
        bar.enable_steady_tick(Duration::from_millis(120));
        let leases = ledger_enforcer::status::LeaseSources { settings: &lease_settings, processor_group: &processor_group };
        let report = ledger_enforcer::status::budget_status(policy, now, &kafka, &topics, &group, leases, &|topic, n| {
            bar.set_message(format!("reading {topic}: {n} records"));
        });
        bar.finish_and_clear();
        report
    })
    .await
    .context("reading the topics")?
    .context("reading the spend and signals topics (is Kafka running and has `ledger process` created the topics? try `ledger stack up`)")?;
    if report.undecodable > 0 {
        eprintln!("warning: {} spend records did not decode and were skipped", report.undecodable);
    }
    match args.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = report.budgets.iter().map(BudgetStatus::to_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Table => print!("{}", ledger_ops::format::budget_status_text(&report.budgets, now)),
    }
    Ok(ExitCode::SUCCESS)
}
