//! One module per subcommand; each has its clap `Args` and an async `run`.

pub(crate) mod bench;
pub(crate) mod budgets;
pub(crate) mod dlq;
pub(crate) mod enforce;
pub(crate) mod ingest;
pub(crate) mod migrate;
pub(crate) mod price;
pub(crate) mod prices;
pub(crate) mod process;
pub(crate) mod produce;
pub(crate) mod reconcile;
pub(crate) mod report;
pub(crate) mod stack;

/// Logs go to stderr (coloured only on a terminal); `RUST_LOG` filters, `LEDGER_LOG_FORMAT=json`
/// switches to JSON lines.
pub(crate) fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},rdkafka=warn,librdkafka=warn")));
    // Colours only on a terminal: a log redirected to a file or collected by a supervisor stays
    // plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if std::env::var("LEDGER_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
