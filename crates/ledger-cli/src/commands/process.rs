//! `ledger process`: the stream processor.

use std::process::ExitCode;
use std::sync::Arc;

use ledger_processor::{Processor, RunOptions, Stats};

use crate::config::ConfigArgs;
use ledger_processor::catalog::load_catalog;

/// Arguments of `ledger process`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger process                          # run as a service until SIGTERM / Ctrl-C
  ledger process --until-drained          # exit once every partition is caught up (batch jobs, tests)
  LEDGER__PROCESSOR__BATCH__MAX_ROWS=50000 ledger process --metrics 127.0.0.1:9464

Exactly once: each ledger row carries its Kafka partition and offset; on (re)start the
processor resumes after the highest offset already in ClickHouse, so a crash or kill -9 never
doubles or loses a row. Rejected events go to the dead-letter topic with a reason.")]
pub(crate) struct ProcessArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Exit once every assigned partition is caught up (instead of running until stopped).
    #[arg(long)]
    until_drained: bool,
    /// Serve Prometheus `/metrics` and `/healthz` on this address (overrides processor.metrics_addr).
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Catalog source(s) `FILE[@RFC3339]` (overrides processor.catalogs).
    #[arg(long = "catalog", value_name = "FILE[@INSTANT]")]
    catalogs: Vec<String>,
}

pub(crate) async fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    if let Some(m) = args.metrics {
        config.processor.metrics_addr = Some(m);
    }
    if !args.catalogs.is_empty() {
        config.processor.catalogs = args
            .catalogs
            .iter()
            .map(|s| ledger_processor::catalog::parse_catalog_arg(s))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
    }
    let config = config.processor()?;
    let catalog = load_catalog(&config.settings.catalogs, config.settings.pricing_rules.as_deref());
    let catalog = Arc::new(catalog.map_err(anyhow::Error::msg)?);
    let stats = Arc::new(Stats::default());
    let render = stats.clone();
    let shutdown = ledger_ops::service::start(config.settings.metrics_addr.clone(), move || render.render_prometheus());
    let processor = Processor::new(config, catalog, stats.clone()).await.map_err(|e| {
        let settings = e.is_settings();
        super::hinted(e, settings, "starting the processor (is the stack running? try `ledger stack up` and `ledger migrate`)")
    })?;
    let started = std::time::Instant::now();
    processor.run(shutdown.clone(), RunOptions { until_drained: args.until_drained }).await?;
    shutdown.cancel();
    eprintln!("processed in {:.1?}: {}", started.elapsed(), stats.summary());
    Ok(ExitCode::SUCCESS)
}
