//! One module per subcommand; each has its clap `Args` and an async `run`.

pub(crate) mod bench;
pub(crate) mod budgets;
pub(crate) mod close;
pub(crate) mod dlq;
pub(crate) mod enforce;
pub(crate) mod export;
pub(crate) mod ingest;
pub(crate) mod migrate;
pub(crate) mod notify;
pub(crate) mod price;
pub(crate) mod prices;
pub(crate) mod process;
pub(crate) mod produce;
pub(crate) mod reconcile;
pub(crate) mod report;
pub(crate) mod router;
pub(crate) mod stack;

pub(crate) use ledger_ops::{format::table, terminal::progress_bar};

/// `error` with a hint of what to check as context, unless the error names a wrong setting
/// itself (then a hint that a service may not be running would mislead).
pub(crate) fn hinted<E: std::error::Error + Send + Sync + 'static>(error: E, is_settings: bool, hint: &str) -> anyhow::Error {
    if is_settings {
        anyhow::Error::new(error)
    } else {
        anyhow::Error::new(error).context(hint.to_owned())
    }
}
