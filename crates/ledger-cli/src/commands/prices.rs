//! `ledger prices`: inspect price catalogs.

use std::process::ExitCode;


const AFTER_HELP: &str = "\
Examples:
  ledger prices check catalog/litellm-prices.json
  ledger prices check --verbose catalog/sources/litellm-1.110.2-model_prices_and_context_window.json
  ledger prices check catalog/litellm-prices-next.json@2027-01-01T00:00:00Z";

/// Arguments of `ledger prices`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct PricesArgs {
    #[command(subcommand)]
    command: PricesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PricesCommand {
    /// Load a LiteLLM-format catalog and report what it prices, skips, rounds and ignores.
    /// Exits non-zero when the file is not a valid catalog.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The catalog file, optionally FILE@RFC3339 (only changes the price version shown).
    #[arg(value_name = "FILE[@RFC3339]")]
    file: String,
    /// Also list every priced model and every skipped entry.
    #[arg(long, short)]
    verbose: bool,
}

pub(crate) async fn run(args: PricesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PricesCommand::Check(a) => Ok(check(&a)),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match ledger_ops::prices::check(&args.file) {
        Ok(report) => {
            print!("{}", report.to_text(args.verbose));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
