//! `ledger close`: the month-end close of the chargeback ([`ledger_ops::close`]), and price
//! corrections of a month ([`ledger_ops::correction`]).

use std::process::ExitCode;

use super::migrate::ClickHouseArgs;
use super::price::CatalogArgs;

/// Arguments of `ledger close`.
#[derive(Debug, clap::Args)]
#[command(after_help = ledger_ops::close::CLOSE_HELP)]
pub(crate) struct CloseArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// The month to close (or correct), YYYY-MM (event time, UTC).
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
    /// Instead of closing: record a price correction of the month, its rows re-priced at this
    /// LiteLLM-format catalog (FILE or FILE@RFC3339; repeat for a price history).
    #[arg(long = "correct-prices", value_name = "FILE[@RFC3339]")]
    correct_prices: Vec<String>,
    /// Local pricing rules (aliases, overrides) for --correct-prices.
    #[arg(long, value_name = "FILE", requires = "correct_prices")]
    rules: Option<std::path::PathBuf>,
}

pub(crate) async fn run(args: CloseArgs) -> anyhow::Result<ExitCode> {
    let config = args.clickhouse.config()?;
    if !args.correct_prices.is_empty() {
        let catalog = CatalogArgs { catalogs: args.correct_prices, rules: args.rules }.load()?.0;
        let outcome = ledger_ops::correction::correct_prices(&config, &args.month, &catalog, chrono::Utc::now()).await?;
        println!("{}", outcome.to_text(&config.database));
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = ledger_ops::close::close_month(&config, &args.month, chrono::Utc::now()).await?;
    println!("{}", outcome.to_text(&config.database));
    Ok(ExitCode::SUCCESS)
}
