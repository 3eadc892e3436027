//! `ledger process` as a service: the Prometheus `/metrics` and `/healthz` endpoint reflect
//! its work, and SIGTERM finishes the batch in flight and exits cleanly.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ledger_tests::{produce_synthetic, resend_valid, ProcessLogs, TestEnv};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.split(' ').nth(1)?.parse().ok()
}

/// Waits until every named counter shows its value (each moves on its own schedule: a
/// trailing dead letter is written by a later flush than the last row); the last scrape.
async fn wait_for_metrics(port: u16, expected: &[(&str, u64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = http_get(port, "/metrics").unwrap_or_default();
        if expected.iter().all(|(name, want)| metric(&text, name) == Some(*want)) {
            return text;
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> =
                expected.iter().map(|(name, want)| format!("{name} = {:?}, expected {want}", metric(&text, name))).collect();
            panic!("the metrics never showed the expected counts within 90 s:\n{}", seen.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_work_and_sigterm_exits_cleanly() {
    let env = TestEnv::new("service");
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 2_000, 5, 50_000, 10_000).await;
    let port = free_port();
    let mut logs = ProcessLogs::default();
    let mut child = env
        .ledger()
        .args(["process", "--metrics", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn,ledger=info,ledger_processor=info")
        .stdout(Stdio::null())
        .stderr(logs.file(&env, "processor"))
        .spawn()
        .expect("spawning ledger process");

    let expected = [
        ("ledger_events_consumed_total", sent.messages),
        ("ledger_events_priced_total", sent.distinct_valid),
        ("ledger_rows_written_total", sent.distinct_valid),
        ("ledger_events_duplicate_total", sent.duplicates),
        ("ledger_dead_letters_total", sent.invalid),
    ];
    let text = wait_for_metrics(port, &expected).await;
    assert!(text.contains("ledger_events_rejected_total{reason=\"unknown_model\"}"), "{text}");
    assert!(metric(&text, "ledger_dedupe_ids").is_some_and(|n| n >= sent.distinct_valid), "{text}");
    // 16 bytes of fingerprint per id at least, and the index beside them.
    assert!(metric(&text, "ledger_dedupe_bytes").is_some_and(|b| b >= 16 * sent.distinct_valid), "{text}");
    // Every row is written, so no insert is running: a fresh scrape is consistent.
    let text = http_get(port, "/metrics").expect("metrics answer");
    let inserts = metric(&text, "ledger_inserts_total").expect("inserts counter");
    assert!(inserts > 0);
    assert_eq!(metric(&text, "ledger_insert_duration_seconds_count"), Some(inserts), "{text}");
    assert_eq!(metric(&text, "ledger_insert_duration_seconds_bucket{le=\"+Inf\"}"), Some(inserts), "{text}");
    assert_eq!(metric(&text, "ledger_batch_rows_count"), Some(inserts), "{text}");
    assert_eq!(metric(&text, "ledger_batch_rows_sum"), Some(sent.distinct_valid), "{text}");

    // Events resent after everything was written are duplicates that leave nothing to write
    // or dead-letter; their offsets must still be committed, or the lag never reaches 0.
    let resent = resend_valid(&env, &sent, 6).await;
    wait_for_metrics(
        port,
        &[
            ("ledger_events_consumed_total", sent.messages + resent),
            ("ledger_events_duplicate_total", sent.duplicates + resent),
            ("ledger_rows_written_total", sent.distinct_valid),
        ],
    )
    .await;

    // The lag gauge comes from librdkafka statistics (every 2 s) and reaches 0 on every
    // partition once the committed offsets caught up with the high watermarks.
    let partitions =
        ledger_kafka::admin::partition_count(&env.kafka, &env.topics.usage, Duration::from_secs(10)).expect("partition count");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http_get(port, "/metrics").unwrap_or_default();
        let lags: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("ledger_consumer_lag{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if lags.len() == partitions as usize && lags.iter().all(|&l| l == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "consumer lag never reached 0 on every partition: {lags:?}\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let health = http_get(port, "/healthz").expect("healthz answers");
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");

    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "ledger process did not exit within the grace period after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert_eq!(env.totals().await.ledger.requests, sent.distinct_valid);
}
