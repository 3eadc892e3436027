//! `ledger`: one program for every job of the LLM usage ledger.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The processor allocates a few short strings per event; mimalloc makes that markedly cheaper
// than glibc's allocator (measured in benches/benches/event_path.rs). Its v2 series: v3 keeps
// freed pages for a second (purge_delay 1000 ms, v2 10 ms), and the processor frees a batch of
// up to 100,000 rows several times a second: at 150,000 events/s its peak RSS was 537 MiB with
// v3, 435 MiB with v2 (MIMALLOC_PURGE_DELAY still tunes it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod config;

const AFTER_HELP: &str = "\
Examples:
  ledger stack up                        # install (if missing) and start Kafka + ClickHouse
  ledger migrate                         # create or upgrade the ClickHouse schema
  ledger produce --synthetic 10000       # send 10,000 realistic usage events
  ledger process --until-drained         # price them into the ledger, exit when caught up
  ledger report spend                    # spend by tenant and model, as a table
  ledger enforce --budgets config/budgets.example.toml   # publish budget signals
  ledger budgets status                  # spend, limit, state and forecast per budget
  ledger report chargeback --month 2026-11 --by team
  ledger export focus --month 2026-11    # FOCUS 1.2 rows for FinOps tools; `ledger close --month` freezes them
  ledger reconcile                       # ledger = rollups, no offset gaps; fails if not
  ledger ingest                          # HTTP POST /v1/usage for any language
  ledger router serve                    # HTTP POST /v1/decide (and /v1/usage) for any language
  ledger price < events.jsonl             # price JSON lines with the shipped catalog, no Kafka

Every setting can also come from a config file (--config) or LEDGER__* environment variables.";

/// A real-time usage ledger for LLM token spend.
#[derive(Debug, Parser)]
#[command(
    name = "ledger",
    version,
    about = "A real-time usage ledger for LLM token spend: exact pricing, budgets, chargeback.",
    long_about = None,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install, start, stop and inspect the local Kafka + ClickHouse stack.
    Stack(commands::stack::StackArgs),
    /// Create or upgrade the ClickHouse schema (versioned, idempotent).
    Migrate(commands::migrate::MigrateArgs),
    /// Send usage events to Kafka (synthetic load for demos, tests and benchmarks).
    Produce(commands::produce::ProduceArgs),
    /// Run the stream processor: decode, validate, dedupe, price and write the ledger.
    Process(commands::process::ProcessArgs),
    /// Inspect the dead-letter topic by reason and replay dead letters (e.g. after the catalog learned a model).
    Dlq(commands::dlq::DlqArgs),
    /// Price usage events read as JSON lines on stdin, without Kafka.
    Price(commands::price::PriceArgs),
    /// Work with price catalogs.
    Prices(commands::prices::PricesArgs),
    /// Reports from the ClickHouse ledger.
    Report(commands::report::ReportArgs),
    /// Check that the ledger, its rollups and its Kafka offsets agree; exit non-zero when not.
    Reconcile(commands::reconcile::ReconcileArgs),
    /// Run the budget enforcer: turn spend into throttle, reroute and block signals.
    Enforce(commands::enforce::EnforceArgs),
    /// Show each budget scope's spend, limit, state and forecast.
    Budgets(commands::budgets::BudgetsArgs),
    /// Run the HTTP ingest server (POST /v1/usage) for services in any language.
    Ingest(commands::ingest::IngestArgs),
    /// Post one message per budget state change to webhooks (Slack or JSON), exactly once.
    Notify(commands::notify::NotifyArgs),
    /// Export a month's spend for finance tools (FOCUS 1.2).
    Export(commands::export::ExportArgs),
    /// Close a month's chargeback; later changes become correction lines.
    Close(commands::close::CloseArgs),
    /// Run the router as a service: POST /v1/decide (and /v1/usage) for any language.
    Router(commands::router::RouterArgs),
    /// Consume-only baseline for benches/pipeline.sh (reads a topic, prints the rate).
    #[command(hide = true)]
    BenchConsume(commands::bench::BenchConsumeArgs),
    /// Delete a benchmark run's topics (by name prefix) for the benches/ scripts.
    #[command(hide = true)]
    BenchDeleteTopics(commands::bench::BenchDeleteTopicsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Services log their progress; one-shot commands print their own results and log only
    // warnings unless RUST_LOG says otherwise.
    ledger_ops::service::init_tracing(
        if matches!(
            cli.command,
            Command::Process(_) | Command::Enforce(_) | Command::Ingest(_) | Command::Notify(_) | Command::Router(_)
        ) {
            "info"
        } else {
            "warn"
        },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Stack(args) => commands::stack::run(args).await,
            Command::Migrate(args) => commands::migrate::run(args).await,
            Command::Produce(args) => commands::produce::run(args).await,
            Command::Process(args) => commands::process::run(args).await,
            Command::Dlq(args) => commands::dlq::run(args).await,
            Command::Price(args) => commands::price::run(args).await,
            Command::Prices(args) => commands::prices::run(args).await,
            Command::Report(args) => commands::report::run(args).await,
            Command::Reconcile(args) => commands::reconcile::run(args).await,
            Command::Enforce(args) => commands::enforce::run(args).await,
            Command::Budgets(args) => commands::budgets::run(args).await,
            Command::Ingest(args) => commands::ingest::run(args).await,
            Command::Notify(args) => commands::notify::run(args).await,
            Command::Export(args) => commands::export::run(args).await,
            Command::Close(args) => commands::close::run(args).await,
            Command::Router(args) => commands::router::run(args).await,
            Command::BenchConsume(args) => commands::bench::run(args).await,
            Command::BenchDeleteTopics(args) => commands::bench::delete_topics(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
