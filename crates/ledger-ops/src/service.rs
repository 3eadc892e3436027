//! What every `ledger` command and service shares: logging, and stopping on a signal.

use tokio_util::sync::CancellationToken;

/// Starts what a service needs before its work: stopping on SIGTERM or Ctrl-C (the token it
/// returns), and the `/metrics` endpoint on `metrics_addr` when one is set.
pub fn start(metrics_addr: Option<String>, render: impl Fn() -> String + Send + Sync + 'static) -> CancellationToken {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    if let Some(addr) = metrics_addr {
        crate::metrics_endpoint::spawn(addr, render, shutdown.clone());
    }
    shutdown
}

/// Cancels `token` on SIGTERM or Ctrl-C; a second Ctrl-C exits at once.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop signal received; finishing the batch in flight");
        token.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}

/// Logs go to stderr (coloured only on a terminal); `RUST_LOG` filters, `LEDGER_LOG_FORMAT=json`
/// switches to JSON lines.
pub fn init_tracing(default_level: &str) {
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
