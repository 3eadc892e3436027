//! `ledger notify`: budget alerts to webhooks ([`ledger_notify`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ledger_notify::{Notifier, NotifierConfig, Stats};

use crate::config::ConfigArgs;

/// Arguments of `ledger notify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger notify --config ledger.toml --budgets config/budgets.toml   # run until SIGTERM / Ctrl-C

The webhooks are [[notify.webhooks]] tables of the config file (name, url or url_file, format =
\"slack\" | \"json\"); see config/ledger.example.toml. One message per change of a budget's state
(the states a budget's `alert` list names; default all), each with an Idempotency-Key and
webhook-id header that stays the same on every retry. A receiver that is down gets its messages
in order when it is back; progress is kept on notify.progress_topic, so a restart (even kill -9)
neither loses nor repeats a message. See docs/finance.md.")]
pub(crate) struct NotifyArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The budgets file (names the budgets and their `alert` states) [default: notify.budgets_file,
    /// else enforcer.budgets_file].
    #[arg(long, value_name = "FILE")]
    budgets: Option<PathBuf>,
}

pub(crate) async fn run(args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let budgets_file = args.budgets.or(config.notify.budgets_file.clone()).unwrap_or(config.enforcer.budgets_file.clone());
    let stats = Arc::new(Stats::default());
    let notifier = Notifier::new(
        NotifierConfig {
            kafka: config.kafka.clone(),
            signals_topic: config.topics.signals.clone(),
            partitions: config.enforcer.partitions,
            settings: config.notify.clone(),
            budgets_file,
        },
        stats.clone(),
    )?;
    let shutdown = ledger_ops::service::start(None, String::new);
    notifier.run(shutdown.clone()).await?;
    shutdown.cancel();
    let (delivered, failed) = (stats.delivered.load(Ordering::Relaxed), stats.failed_attempts.load(Ordering::Relaxed));
    eprintln!("notify stopped: {delivered} messages delivered, {failed} failed attempts (retried)");
    Ok(ExitCode::SUCCESS)
}
