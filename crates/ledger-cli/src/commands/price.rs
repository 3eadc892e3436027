//! `ledger price`: price usage events read as JSON lines on stdin, without Kafka
//! ([`ledger_ops::price`]).

use std::io::{BufReader, BufWriter};
use std::process::ExitCode;

use ledger_core::catalog::{Catalog, LoadReport};
use ledger_ops::price::price_stream;
use ledger_processor::catalog::load_specs;

const AFTER_HELP: &str = "\
Input: one usage event per line, as JSON (the serde form of ledger_core::UsageEvent); blank lines
are skipped. Output: one JSON line per input line, in order, either the cost terms
  {\"line\":1,\"event_id\":\"e1\",\"model\":\"gpt-4o\",\"price_version\":\"litellm-1.110.2-...@1970-01-01T00:00:00Z\",
   \"alias_of\":null,\"input_cost_usd\":\"0.002500000000\",...,\"cost_usd\":\"0.007500000000\",...}
or the reason it was rejected
  {\"line\":2,\"event_id\":\"e2\",\"error\":{\"reason\":\"unknown_model\",\"detail\":\"...\"}}
A summary goes to stderr. Exit code 0 when every line priced, 1 when any line failed, 2 for usage
or catalog errors.
event_time is read to the microsecond (finer digits are dropped), the precision events have on
Kafka, so a line gets the price version the stream processor would give it.

Examples:
  ledger price < events.jsonl > priced.jsonl     # the shipped catalog, as `ledger process`
  ledger price --catalog old.json --catalog new.json@2027-01-01T00:00:00Z --rules config/pricing-rules.example.toml
  echo '{\"event_id\":\"e1\",\"event_time\":\"2026-11-01T12:00:00Z\",\"tenant_id\":\"acme\",
         \"provider\":\"openai\",\"request_model\":\"gpt-4o\",\"input_tokens\":1000,
         \"output_tokens\":500}' | ledger price";

/// Arguments of `ledger price`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct PriceArgs {
    #[command(flatten)]
    catalogs: CatalogArgs,
}

/// The price history and local rules of a command.
#[derive(Debug, clap::Args)]
pub(crate) struct CatalogArgs {
    /// A LiteLLM-format catalog, from when it takes effect: FILE or FILE@RFC3339 (default 1970-01-01T00:00:00Z);
    /// repeat for a price history [default: catalog/sources/litellm-1.110.2-model_prices_and_context_window.json].
    #[arg(long = "catalog", value_name = "FILE[@RFC3339]")]
    pub(crate) catalogs: Vec<String>,
    /// Local pricing rules: model aliases and price overrides (config/pricing-rules.example.toml).
    #[arg(long, value_name = "FILE")]
    pub(crate) rules: Option<std::path::PathBuf>,
}

impl CatalogArgs {
    /// Loads the sources (the shipped catalog without any) and the rules.
    pub(crate) fn load(&self) -> anyhow::Result<(Catalog, Vec<LoadReport>)> {
        load_specs(&self.catalogs, self.rules.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}\nCheck --catalog (`ledger prices check FILE`) and --rules."))
    }
}

pub(crate) async fn run(args: PriceArgs) -> anyhow::Result<ExitCode> {
    let (catalog, reports) = match args.catalogs.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}\nnothing was priced.");
            return Ok(ExitCode::from(2));
        }
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let input = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let summary = match price_stream(&catalog, input, &mut out) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::from(1)),
        Err(e) => anyhow::bail!("I/O error while pricing: {e}"),
    };
    eprint!("{}", summary.describe(&reports));
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
