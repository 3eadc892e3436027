//! `ledger prices`: inspect price catalogs.

use std::process::ExitCode;

use ledger_ops::prices::CheckReport;

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
            print_report(&report, args.verbose);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    println!("{title}{}", super::table(header, rows.to_vec(), &[]));
}

fn print_report(r: &CheckReport, verbose: bool) {
    println!("catalog {} (price version {})", r.source, r.version);
    print_table("", &["", "count"], &r.counts);
    print_table("\npriced models by litellm_provider\n", &["litellm_provider", "priced models"], &r.by_provider);
    if !r.rounded.is_empty() {
        let header = ["model", "field", "text in file", "price used (USD/token)"];
        print_table("\nrounded prices (half to even, 12 fractional digits)\n", &header, &r.rounded);
    }
    if !r.ignored.is_empty() {
        print_table("\nignored price fields\n", &["model", "field", "value", "why ignored"], &r.ignored);
    }
    if verbose {
        print_table("\nskipped entries\n", &["skipped entry", "reason"], &r.skipped);
        let header = ["model", "litellm_provider", "input", "output", "cache read", "cache write", "variants"];
        print_table("\npriced models (USD per token)\n", &header, &r.entries);
    }
}
