//! The minimal HTTP endpoint of the services (`ledger process`, `ledger enforce`): `GET /metrics`
//! (Prometheus text, rendered by the service's own stats) and `GET /healthz`.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the endpoint in the background until `shutdown`; a failure to bind is logged.
pub(crate) fn spawn(addr: String, render: impl Fn() -> String + Send + Sync + 'static, shutdown: CancellationToken) {
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(render);
    tokio::spawn(async move {
        if let Err(e) = serve(&addr, render, shutdown).await {
            tracing::error!(error = %e, addr, "metrics endpoint failed");
        }
    });
}

async fn serve(addr: &str, render: Arc<dyn Fn() -> String + Send + Sync>, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr, "metrics endpoint listening");
    loop {
        let (mut socket, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => r?,
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", render()),
                "/healthz" => ("200 OK", "ok\n".to_owned()),
                _ => ("404 Not Found", "not found; try /metrics or /healthz\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
