//! `ledger notify`: budget alerts to webhooks ([`ledger_notify`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ledger_notify::{Notifier, Stats};

use crate::config::ConfigArgs;

/// Arguments of `ledger notify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger notify --config ledger.toml --budgets config/budgets.toml   # run until SIGTERM / Ctrl-C

Webhooks: [[notify.webhooks]] in the config file (config/ledger.example.toml). One message per
change of a budget's state (the states its `alert` list names), retried until delivered, with an
Idempotency-Key; progress survives kill -9. See docs/finance.md.")]
pub(crate) struct NotifyArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The budgets file (names the budgets and their `alert` states) [default: notify.budgets_file,
    /// else enforcer.budgets_file].
    #[arg(long, value_name = "FILE")]
    budgets: Option<PathBuf>,
}

pub(crate) async fn run(args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let stats = Arc::new(Stats::default());
    let notifier = Notifier::new(args.config.load()?.notifier_config(args.budgets), stats.clone())?;
    let shutdown = ledger_ops::service::start(None, String::new);
    notifier.run(shutdown.clone()).await?;
    shutdown.cancel();
    eprintln!("notify stopped: {}", stats.summary());
    Ok(ExitCode::SUCCESS)
}
