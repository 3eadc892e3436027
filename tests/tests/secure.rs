//! The ledger on the secure profile (`scripts/stack.sh up --secure`): Kafka over SASL_SSL with
//! SCRAM-SHA-512 and ClickHouse over HTTPS with a password, both certificates signed by the
//! profile's own CA. Every client the project runs works there; every wrong setting fails at once
//! with a message naming the setting; no secret appears in any output; exactly once holds across
//! kill -9; implausible usage is refused, not priced.

use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ledger_core::signal::BudgetState;
use ledger_core::UsageEvent;
use ledger_router::{CallContext, Decision, Router, RouterConfig};
use ledger_sdk::{Emitter, EmitterConfig};
use ledger_tests::{assert_ledger_matches, kill_9_rounds, produce_synthetic, random_suffix, SecureFiles, TestEnv};

/// Everything the commands of these tests printed, searched for the secrets at the end of each.
static OUTPUTS: Mutex<String> = Mutex::new(String::new());

fn keep(out: &Output) {
    let mut all = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    all.push_str(&String::from_utf8_lossy(&out.stderr));
}

/// Runs `cmd` (with the services' info logs on) and keeps its output.
fn run(mut cmd: Command) -> Output {
    let out = cmd.env("RUST_LOG", "info").output().expect("running ledger");
    keep(&out);
    out
}

fn run_ok(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = env.ledger();
    cmd.args(args);
    let out = run(cmd);
    assert!(out.status.success(), "ledger {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// No output kept so far holds any of `secrets`.
fn assert_no_secret_printed(secrets: &[String]) {
    let all = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    assert!(all.len() > 1_000, "the tests kept their output ({} bytes)", all.len());
    for s in secrets {
        assert!(s.len() >= 16, "a real secret to search for");
        if let Some(at) = all.find(s.as_str()) {
            let context = &all[at.saturating_sub(120)..at];
            panic!("a secret appears in the output of the secure tests, after: {context:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_works_over_sasl_ssl_and_https() {
    let env = TestEnv::secure("secure_loop");
    let files = env.secure.clone().expect("secure");
    let mut secrets = files.secrets();
    run_ok(&env, &["migrate"]);

    // produce (the harness's Rust producer) -> process -> the ledger equals the independent pricer.
    let mut sent = produce_synthetic(&env, 3_000, 61, 20_000, 10_000).await;
    run_ok(&env, &["process", "--until-drained"]);
    assert_ledger_matches(&env, &sent).await;

    // The SDK.
    let emitter =
        Emitter::new(EmitterConfig { kafka: env.kafka.clone(), topic: env.topics.usage.clone(), ..EmitterConfig::default() })
            .expect("an emitter over SASL_SSL");
    let mut generator = ledger_loadgen::Generator::new(ledger_loadgen::GeneratorOptions { seed: 62, ..Default::default() });
    let sdk_events: Vec<UsageEvent> = (0..50).map(|_| generator.valid_event()).collect();
    for e in &sdk_events {
        emitter.emit(e.clone()).expect("emit");
    }
    emitter.flush(Duration::from_secs(30)).expect("the SDK's events reach Kafka");
    for e in &sdk_events {
        sent.valid_jsonl.push_str(&serde_json::to_string(e).expect("json"));
        sent.valid_jsonl.push('\n');
    }
    sent.distinct_valid += sdk_events.len() as u64;
    sent.messages += sdk_events.len() as u64;

    // HTTP ingest, producing over SASL_SSL; its API key is a secret too.
    let keys = std::env::temp_dir().join(format!("ledger-secure-keys-{}.toml", random_suffix()));
    // `keys add` prints the new key once, by design: its standard output is the key, not a log.
    let key_out = env
        .ledger()
        .args(["ingest", "keys", "add", "--tenant", "acme", "--api-keys", keys.to_str().expect("utf-8")])
        .output()
        .expect("ledger ingest keys add");
    assert!(key_out.status.success(), "{}", String::from_utf8_lossy(&key_out.stderr));
    keep(&Output { stdout: Vec::new(), ..key_out.clone() });
    let key = String::from_utf8(key_out.stdout).expect("utf-8").trim().to_owned();
    secrets.push(key.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let log = std::env::temp_dir().join(format!("ledger-secure-ingest-{}.log", random_suffix()));
    let mut ingest = env
        .ledger()
        .args(["ingest", "--listen", &format!("127.0.0.1:{port}"), "--api-keys"])
        .arg(&keys)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("starting ledger ingest");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/usage");
    let mut ingest_event = generator.valid_event();
    ingest_event.attribution.tenant_id = "acme".into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let r = client.post(&url).bearer_auth(&key).json(&ingest_event).send().await;
        match r {
            Ok(r) => break r.status().as_u16(),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("ledger ingest never answered: {e}"),
        }
    };
    assert_eq!(status, 202, "ingest acknowledged the event after Kafka (SASL_SSL) did");
    sent.valid_jsonl.push_str(&serde_json::to_string(&ingest_event).expect("json"));
    sent.valid_jsonl.push('\n');
    sent.distinct_valid += 1;
    sent.messages += 1;

    // Implausible usage: ingest refuses it; sent around ingest, the processor dead-letters it.
    let mut absurd = generator.valid_event();
    absurd.attribution.tenant_id = "acme".into();
    absurd.input_tokens = 1_000_000_000_000_000_000;
    let refused = client.post(&url).bearer_auth(&key).json(&absurd).send().await.expect("POST");
    assert_eq!(refused.status().as_u16(), 400);
    let body = refused.text().await.expect("body");
    assert!(body.contains("implausible_tokens"), "{body}");
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let codec = ledger_schema::Codec::<UsageEvent>::new().expect("codec");
    let payload = codec.encode(&absurd).expect("encode");
    let record = rdkafka::producer::FutureRecord::to(&env.topics.usage).key("acme").payload(&payload);
    producer.send(record, Duration::from_secs(30)).await.expect("the absurd event reaches Kafka");
    sent.messages += 1;
    sent.invalid += 1;
    let _ = ingest.kill();
    let _ = ingest.wait();
    let ingest_log = std::fs::read_to_string(&log).unwrap_or_default();
    OUTPUTS.lock().unwrap_or_else(|p| p.into_inner()).push_str(&ingest_log);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&keys);

    run_ok(&env, &["process", "--until-drained"]);
    assert_ledger_matches(&env, &sent).await;
    let dlq = String::from_utf8(run_ok(&env, &["dlq", "inspect", "--reason", "implausible_tokens", "--format", "json"]).stdout)
        .expect("utf-8");
    assert_eq!(dlq.lines().count(), 1, "the absurd event is dead-lettered as implausible_tokens: {dlq}");
    assert!(dlq.contains(&absurd.event_id));
    // The month with such an event still reconciles.
    let reconcile = run_ok(&env, &["reconcile"]);
    assert!(String::from_utf8_lossy(&reconcile.stdout).contains("checks passed"));

    // enforce -> signals over SASL_SSL -> the router, which reads them over SASL_SSL too.
    let budgets = std::env::temp_dir().join(format!("{}-budgets.toml", env.group));
    std::fs::write(
        &budgets,
        "[[budget]]\nname = \"acme-cap\"\nscope = { tenant_id = \"acme\" }\nperiod = \"month\"\nlimit_usd = \"0.000001\"\n\
         [[budget.threshold]]\nat_percent = \"100\"\naction = \"block\"\n",
    )
    .expect("budgets file");
    let mut enforce = env.ledger();
    enforce
        .env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", env.group))
        .env("RUST_LOG", "info")
        .args(["enforce", "--budgets"])
        .arg(&budgets)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let enforcer = enforce.spawn().expect("starting ledger enforce");
    let router = Router::start(RouterConfig {
        kafka: env.kafka.clone(),
        signals_topic: env.topics.signals.clone(),
        ..RouterConfig::default()
    })
    .expect("a router over SASL_SSL");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if matches!(router.decide(&CallContext::tenant("acme"), "gpt-4o"), Decision::Block { .. }) {
            break;
        }
        assert!(Instant::now() < deadline, "the router never saw acme's budget block");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = run_ok(&env, &["budgets", "status", "--budgets", budgets.to_str().expect("utf-8"), "--format", "json"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(BudgetState::Block.as_str()));
    let _ = nix_term(enforcer);
    let _ = std::fs::remove_file(&budgets);

    assert_no_secret_printed(&secrets);
}

/// Stops a child with SIGTERM and keeps its output.
fn nix_term(mut child: std::process::Child) -> std::io::Result<()> {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output()?;
    keep(&out);
    Ok(())
}

/// Runs `ledger dlq inspect` with one setting changed; it must fail, naming `setting`.
fn fails_naming(env: &TestEnv, change: (&str, &str), args: &[&str], expected: &[&str]) {
    let mut cmd = env.ledger();
    cmd.args(args).env(change.0, change.1);
    let started = Instant::now();
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{change:?} should fail: {stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line for {change:?}: {stderr}");
    for e in expected {
        assert!(error_lines[0].contains(e), "{change:?}: expected {e:?} in {}", error_lines[0]);
    }
    eprintln!("{change:?} failed in {:?}: {}", started.elapsed(), error_lines[0]);
}

#[test]
fn each_wrong_setting_fails_at_once_naming_the_setting() {
    let env = TestEnv::secure("secure_wrong");
    let files = env.secure.clone().expect("secure");
    let wrong = std::env::temp_dir().join(format!("ledger-wrong-password-{}", random_suffix()));
    std::fs::write(&wrong, "not-the-password").expect("writing a wrong password");
    let wrong = wrong.to_str().expect("utf-8").to_owned();
    let kafka_args = ["dlq", "inspect"];
    fails_naming(
        &env,
        ("LEDGER__KAFKA__SASL_PASSWORD_FILE", &wrong),
        &kafka_args,
        &["refused the credentials of user \"ledger\"", "fix kafka.sasl_password"],
    );
    fails_naming(
        &env,
        ("LEDGER__KAFKA__OPTIONS__SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        &kafka_args,
        &["never answered the protocol handshake", "fix kafka.options.security_protocol"],
    );
    fails_naming(
        &env,
        ("LEDGER__KAFKA__OPTIONS__SSL_CA_LOCATION", "/etc/ssl/certs/ca-certificates.crt"),
        &kafka_args,
        &["TLS certificate of the brokers", "is not trusted", "fix kafka.options.ssl_ca_location"],
    );
    let ch_args = ["report", "spend"];
    fails_naming(
        &env,
        ("LEDGER__CLICKHOUSE__PASSWORD_FILE", &wrong),
        &ch_args,
        &["the server refused the credentials", "fix clickhouse.user and clickhouse.password"],
    );
    fails_naming(
        &env,
        ("LEDGER__CLICKHOUSE__CA_FILE", "/etc/ssl/certs/ca-certificates.crt"),
        &ch_args,
        &["TLS certificate is not trusted", "fix clickhouse.ca_file"],
    );
    let plain_url = ledger_tests::clickhouse_url().replace("http://", "https://");
    fails_naming(&env, ("LEDGER__CLICKHOUSE__URL", &plain_url), &ch_args, &["did not answer TLS", "fix clickhouse.url"]);
    let _ = std::fs::remove_file(&wrong);
    assert_no_secret_printed(&files.secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_over_sasl_ssl_neither_loses_nor_doubles() {
    let env = TestEnv::secure("secure_crash");
    kill_9_rounds(&env, 60_000, 3).await;
    let _ = SecureFiles::of_stack();
}
