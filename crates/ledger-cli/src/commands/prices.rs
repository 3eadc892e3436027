//! `ledger prices`: inspect price catalogs, look a model name up, compare two catalogs
//! ([`ledger_ops::prices`], [`ledger_ops::price_lookup`], [`ledger_ops::price_diff`]).

use std::process::ExitCode;

use super::migrate::ClickHouseArgs;
use super::price::CatalogArgs;

const AFTER_HELP: &str = "\
Examples:
  ledger prices check --verbose catalog/sources/litellm-1.110.2-model_prices_and_context_window.json
  ledger prices lookup claude-sonnet-4-20250514 --provider anthropic
  ledger prices diff catalog/litellm-prices.json catalog/sources/litellm-1.110.2-model_prices_and_context_window.json
  ledger prices diff OLD.json NEW.json --ledger --month 2026-11   # re-price that month's rows at NEW";

/// Arguments of `ledger prices`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct PricesArgs {
    #[command(subcommand)]
    command: PricesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PricesCommand {
    /// What a catalog prices, skips, rounds and ignores, and the models each service tier leaves out.
    Check {
        /// The catalog file, optionally FILE@RFC3339 (only changes the price version shown).
        #[arg(value_name = "FILE[@RFC3339]")]
        file: String,
        /// Also list every priced model, every skipped entry and every model a tier leaves out.
        #[arg(long, short)]
        verbose: bool,
    },
    /// The entry, lookup step and price tiers a model name resolves to (docs/pricing.md).
    Lookup {
        /// The model name as an event carries it.
        model: String,
        /// The event's provider (OpenTelemetry gen_ai.provider.name).
        #[arg(long, default_value = "")]
        provider: String,
        /// The tenant (shows the price override that applies to it).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        catalogs: CatalogArgs,
    },
    /// Which prices changed from the catalog file OLD to NEW; with --ledger, what a month of traffic costs at NEW.
    Diff {
        old: String,
        new: String,
        /// Re-price the ledger's rows of --month at NEW (needs ClickHouse).
        #[arg(long)]
        ledger: bool,
        /// The month to re-price, YYYY-MM [default: last month].
        #[arg(long, requires = "ledger")]
        month: Option<String>,
        /// Local pricing rules for NEW (aliases and overrides).
        #[arg(long, value_name = "FILE")]
        rules: Option<std::path::PathBuf>,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
}

pub(crate) async fn run(args: PricesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PricesCommand::Check { file, verbose } => print!("{}", ledger_ops::prices::check(&file)?.render(verbose)),
        PricesCommand::Lookup { model, provider, tenant, catalogs } => {
            let catalog = catalogs.load()?.0;
            print!("{}", ledger_ops::price_lookup::lookup(&catalog, &model, &provider, chrono::Utc::now(), tenant.as_deref()));
        }
        PricesCommand::Diff { old, new, ledger, month, rules, clickhouse } => {
            let load = |spec: &str, rules| CatalogArgs { catalogs: vec![spec.to_owned()], rules }.load().map(|l| l.0);
            let (old, new) = (load(&old, None)?, load(&new, rules)?);
            let config = if ledger { Some(clickhouse.config()?) } else { None };
            print!("{}", ledger_ops::price_diff::diff(&old, &new, config.as_ref(), month.as_deref()).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
