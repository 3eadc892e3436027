//! `ledger close`: the month-end close of the chargeback ([`ledger_ops::close`]).

use std::process::ExitCode;

use super::migrate::ClickHouseArgs;

/// Arguments of `ledger close`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger close --month 2026-11
  ledger export focus --month 2026-11      # the closed rows, then any correction rows

Records the month's charge lines and the Kafka offsets they cover (chargeback_closes). Rows that
reach the ledger for the month later are correction lines (FOCUS ChargeClass \"Correction\"):
closed total + corrections = the ledger. Once per month, after it ended (UTC). docs/finance.md.")]
pub(crate) struct CloseArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// The month to close, YYYY-MM (event time, UTC).
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
}

pub(crate) async fn run(args: CloseArgs) -> anyhow::Result<ExitCode> {
    let config = args.clickhouse.config()?;
    let outcome = ledger_ops::close::close_month(&config, &args.month, chrono::Utc::now()).await?;
    println!("{}", outcome.to_text(&config.database));
    Ok(ExitCode::SUCCESS)
}
