//! A `ledger ingest` process for the tests of its endpoints (`mod support;` in each test file).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ledger_tests::{random_suffix, TestEnv};
use serde_json::Value;

pub(crate) const ACME_KEY: &str = "test-acme-key-0123456789";
pub(crate) const GLOBEX_KEY: &str = "test-globex-key-0123456789";

/// A `ledger ingest` process on a free port, killed on drop. Its keys file starts in the
/// earlier plain-text format and is brought over by `ledger ingest keys import`, as an upgrade
/// does: `ACME_KEY` and `GLOBEX_KEY` keep working as imported keys.
pub(crate) struct Ingest {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) keys_file: std::path::PathBuf,
}

impl Ingest {
    pub(crate) fn start(env: &TestEnv, extra_env: &[(&str, &str)]) -> Ingest {
        let ingest = Ingest::spawn(env, extra_env, "http");
        ingest.wait_healthy();
        ingest
    }

    /// Starts it without waiting for it to answer; `scheme` is `http` or `https`.
    pub(crate) fn spawn(env: &TestEnv, extra_env: &[(&str, &str)], scheme: &str) -> Ingest {
        let keys_file = std::env::temp_dir().join(format!("ledger-test-keys-{}.toml", random_suffix()));
        std::fs::write(
            &keys_file,
            format!(
                "[[keys]]\nkey = \"{ACME_KEY}\"\ntenant_id = \"acme\"\n\n[[keys]]\nkey = \"{GLOBEX_KEY}\"\ntenant_id = \"globex\"\n"
            ),
        )
        .expect("writing the keys file");
        env.run_ledger(&["ingest", "keys", "import", "--api-keys", keys_file.to_str().expect("utf-8 path")]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = env.ledger();
        cmd.args(["ingest", "--listen", &listen, "--api-keys"]).arg(&keys_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("starting ledger ingest");
        Ingest { child, base: format!("{scheme}://{listen}"), keys_file }
    }

    pub(crate) fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(self.base.trim_start_matches("http://")) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "ledger ingest did not become healthy at {}", self.base);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}/v1/usage", self.base)
    }

    /// `ledger ingest keys ARGS... --api-keys <its file>`'s standard output.
    pub(crate) fn keys(&self, env: &TestEnv, args: &[&str]) -> String {
        let mut all = vec!["ingest", "keys"];
        all.extend_from_slice(args);
        all.extend(["--api-keys", self.keys_file.to_str().expect("utf-8 path")]);
        String::from_utf8(env.run_ledger(&all).stdout).expect("utf-8").trim().to_owned()
    }

    /// Waits until the server has `n` keys in force (after a change of its keys file).
    pub(crate) async fn wait_keys_active(&self, client: &reqwest::Client, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&self.metrics(client).await, "ledger_ingest_api_keys_active") != Some(n) {
            assert!(Instant::now() < deadline, "the server never had {n} keys in force");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its `/metrics` text.
    pub(crate) async fn metrics(&self, client: &reqwest::Client) -> String {
        client.get(format!("{}/metrics", self.base)).send().await.expect("GET /metrics").text().await.expect("text")
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.keys_file);
        let _ = std::fs::remove_file(self.keys_file.with_extension("toml.lock"));
    }
}

/// The value of the series `name` (with its labels) in a Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub(crate) async fn post(client: &reqwest::Client, url: &str, key: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let mut req = client.post(url).header("content-type", "application/json").body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text}"));
    (status, value)
}
