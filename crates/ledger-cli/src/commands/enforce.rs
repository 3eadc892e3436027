//! `ledger enforce`: the budget enforcer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ledger_enforcer::{Enforcer, EnforcerConfig, EnforcerError, Stats};

use crate::config::ConfigArgs;

/// Arguments of `ledger enforce`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger enforce --budgets config/budgets.toml          # run until SIGTERM / Ctrl-C
  ledger enforce --budgets budgets.toml --metrics 127.0.0.1:9465
  LEDGER__ENFORCER__BUDGETS_FILE=/etc/ledger/budgets.toml ledger enforce

The enforcer reads the signals topic and the compacted spend topic to their ends, publishes only
what changed, then follows the spend topic. It publishes one signal per change of a budget's
state (and the reset when a period rolls over) on the compacted signals topic, key
`<period>:<scope>`. The budgets file is re-read when it changes; an invalid new file is logged
and the policy in force stays. See config/budgets.example.toml for the format.")]
pub(crate) struct EnforceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The budgets file (TOML; overrides enforcer.budgets_file).
    #[arg(long, value_name = "FILE")]
    budgets: Option<PathBuf>,
    /// Serve Prometheus `/metrics` and `/healthz` on this address (overrides enforcer.metrics_addr).
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
}

pub(crate) async fn run(args: EnforceArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    if let Some(b) = args.budgets {
        config.enforcer.budgets_file = b;
    }
    if let Some(m) = args.metrics {
        config.enforcer.metrics_addr = Some(m);
    }
    config.enforcer.validate().map_err(|problems| anyhow::anyhow!("invalid configuration:\n  - {}", problems.join("\n  - ")))?;
    // Refuse a bad budgets file before connecting to anything.
    ledger_enforcer::load_policy(&config.enforcer.budgets_file).map_err(policy_error)?;
    let stats = Arc::new(Stats::default());
    let render = stats.clone();
    let shutdown = ledger_ops::service::start(config.enforcer.metrics_addr.clone(), move || render.render_prometheus());
    let enforcer = Enforcer::new(
        EnforcerConfig {
            kafka: config.kafka.clone(),
            topics: config.topics.clone(),
            settings: config.enforcer.clone(),
            processor_group: config.processor.group_id.clone(),
        },
        stats.clone(),
    )?;
    enforcer.run(shutdown.clone()).await.map_err(|e| match e {
        EnforcerError::Kafka(k) if k.is_settings() => anyhow::Error::new(k),
        e => policy_error(e).context("the enforcer stopped (is Kafka running? try `ledger stack up`)"),
    })?;
    shutdown.cancel();
    eprintln!(
        "enforcer stopped: {} spend updates read, {} signals published",
        stats.spend_updates.load(std::sync::atomic::Ordering::Relaxed),
        stats.signals_published.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}

/// A budgets-file error with the hint what to do.
pub(crate) fn policy_error(e: EnforcerError) -> anyhow::Error {
    match e {
        EnforcerError::Policy { .. } => {
            anyhow::anyhow!("{e}\nfix the budgets file (see config/budgets.example.toml) and run again")
        }
        other => anyhow::Error::new(other),
    }
}
