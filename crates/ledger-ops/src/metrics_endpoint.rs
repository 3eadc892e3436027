//! The minimal HTTP endpoint of the services (`ledger process`, `ledger enforce`): `GET /metrics`
//! (Prometheus text, rendered by the service's own stats) and `GET /healthz`.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the endpoint in the background until `shutdown`; a failure to bind is logged.
pub fn spawn(addr: String, render: impl Fn() -> String + Send + Sync + 'static, shutdown: CancellationToken) {
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
            let head = read_request_head(&mut socket, &mut [0u8; 1024]).await;
            let request = String::from_utf8_lossy(&head);
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

/// Reads until the end of the request head (a blank line), the buffer is full, the peer stops
/// sending or 5 s pass: a request may arrive in several segments, and answering after the
/// first one would read the wrong path and reset the connection over the unread rest.
async fn read_request_head(socket: &mut tokio::net::TcpStream, buf: &mut [u8]) -> Vec<u8> {
    let mut len = 0;
    let read = async {
        while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    buf[..len].to_vec()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    fn get_in_two_segments(port: u16) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        stream.write_all(b"GET /met").expect("first segment");
        std::thread::sleep(Duration::from_millis(100));
        stream.write_all(b"rics HTTP/1.1\r\nhost: localhost\r\n\r\n").expect("second segment");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("a response, not a reset");
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_split_across_segments_is_answered_whole() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let shutdown = tokio_util::sync::CancellationToken::new();
        super::spawn(format!("127.0.0.1:{port}"), || "ledger_up 1\n".to_owned(), shutdown.clone());
        let mut response = None;
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                response = Some(tokio::task::spawn_blocking(move || get_in_two_segments(port)).await.expect("client"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        let response = response.expect("the endpoint never listened");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("ledger_up 1\n"), "{response}");
    }
}
