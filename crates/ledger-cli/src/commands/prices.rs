//! `ledger prices`: inspect price catalogs.

use std::collections::BTreeMap;
use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use ledger_core::catalog::{CatalogSource, LoadReport};
use ledger_core::PriceField;

use ledger_processor::catalog::{load_catalogs, parse_catalog_arg};

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
    let loaded = parse_catalog_arg(&args.file).and_then(|spec| load_catalogs(std::slice::from_ref(&spec)));
    match loaded {
        Ok((catalog, reports)) => match (catalog.sources().first(), reports.first()) {
            (Some(source), Some(report)) => {
                print_report(source, report, args.verbose);
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("error: {} holds no catalog source", args.file);
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {} is not a valid catalog: {e}", args.file);
            ExitCode::FAILURE
        }
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
    t
}

fn print_report(source: &CatalogSource, report: &LoadReport, verbose: bool) {
    println!("catalog {} (price version {})", report.source, report.version);
    let mut t = table(&["", "count"]);
    t.add_row(vec!["entries".to_owned(), report.entries.to_string()]);
    t.add_row(vec!["priced models".to_owned(), report.priced.to_string()]);
    t.add_row(vec!["skipped entries".to_owned(), report.skipped.len().to_string()]);
    for (reason, n) in report.skipped_by_reason() {
        t.add_row(vec![format!("  skipped: {reason}"), n.to_string()]);
    }
    t.add_row(vec!["prices rounded to 12 digits".to_owned(), report.rounded.len().to_string()]);
    t.add_row(vec!["price fields ignored".to_owned(), report.ignored.len().to_string()]);
    println!("{t}");

    let mut by_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for e in source.entries() {
        *by_provider.entry(e.litellm_provider().unwrap_or("(none)")).or_insert(0) += 1;
    }
    let mut t = table(&["litellm_provider", "priced models"]);
    for (p, n) in &by_provider {
        t.add_row(vec![(*p).to_owned(), n.to_string()]);
    }
    println!("\npriced models by litellm_provider\n{t}");

    if !report.rounded.is_empty() {
        let mut t = table(&["model", "field", "text in file", "price used (USD/token)"]);
        for r in &report.rounded {
            t.add_row(vec![r.model.clone(), r.field.clone(), r.text.clone(), r.rounded.to_string()]);
        }
        println!("\nrounded prices (half to even, 12 fractional digits)\n{t}");
    }
    if !report.ignored.is_empty() {
        let mut t = table(&["model", "field", "value", "why ignored"]);
        for i in &report.ignored {
            t.add_row(vec![i.model.clone(), i.field.clone(), i.text.clone(), i.reason.clone()]);
        }
        println!("\nignored price fields\n{t}");
    }
    if verbose {
        let mut t = table(&["skipped entry", "reason"]);
        for s in &report.skipped {
            t.add_row(vec![s.model.clone(), s.reason.to_string()]);
        }
        println!("\nskipped entries\n{t}");
        let mut entries: Vec<_> = source.entries().collect();
        entries.sort_by(|a, b| a.key().cmp(b.key()));
        let mut t = table(&["model", "litellm_provider", "input", "output", "cache read", "cache write", "variants"]);
        for e in entries {
            let plain = |f: PriceField| e.field(f).plain().map(|m| m.to_string()).unwrap_or_else(|| "-".to_owned());
            let variants: usize = PriceField::ALL.iter().map(|&f| e.field(f).len()).sum::<usize>()
                - PriceField::ALL.iter().filter(|&&f| e.field(f).plain().is_some()).count();
            t.add_row(vec![
                e.key().to_string(),
                e.litellm_provider().unwrap_or("").to_owned(),
                plain(PriceField::Input),
                plain(PriceField::Output),
                plain(PriceField::CacheRead),
                plain(PriceField::CacheCreation),
                variants.to_string(),
            ]);
        }
        println!("\npriced models (USD per token)\n{t}");
    }
}
