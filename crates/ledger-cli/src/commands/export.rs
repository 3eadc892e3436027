//! `ledger export focus`: a month's AI spend as FOCUS 1.2 rows ([`ledger_ops::focus`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::migrate::ClickHouseArgs;

/// Arguments of `ledger export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(subcommand)]
    what: Export,
}

#[derive(Debug, clap::Subcommand)]
enum Export {
    /// A month's AI spend as FOCUS 1.2 CSV (FinOps Open Cost and Usage Specification).
    #[command(after_help = ledger_ops::focus::EXPORT_HELP)]
    Focus(FocusArgs),
}

#[derive(Debug, clap::Args)]
struct FocusArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// The month, YYYY-MM (event time, UTC).
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
    /// Only this tenant's rows.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Cost-center mapping (TOML, as for `report chargeback`): adds a cost_center tag.
    #[arg(long, value_name = "FILE")]
    mapping: Option<PathBuf>,
    /// Write the CSV to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let Export::Focus(a) = args.what;
    let mapping = a.mapping.as_deref().map(ledger_ops::chargeback::load_mapping).transpose()?;
    let export = ledger_ops::focus::export(&a.clickhouse.config()?, &a.month, a.tenant.as_deref(), mapping).await?;
    match &a.output {
        Some(path) => std::fs::write(path, export.to_csv()).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{}", export.to_csv()),
    }
    eprintln!("{}", export.summary()?);
    Ok(ExitCode::SUCCESS)
}
