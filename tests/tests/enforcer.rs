//! The budget enforcer on the real Kafka (and, in one test, behind the real processor and
//! ClickHouse): `ledger enforce` turns cumulative spend into one signal per transition on the
//! compacted signals topic, survives `kill -9` without repeating or missing a transition, resets
//! at a period rollover, keeps tenants apart, and refuses an invalid budgets file with every
//! problem listed.
//!
//! Nothing here waits for "long enough": absence of a duplicate is shown causally (a marker
//! signal published after the point where a duplicate would have been).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as ChronoDuration, DurationRound, TimeZone, Utc};
use ledger_core::money::Money;
use ledger_core::signal::{BudgetSignal, BudgetState};
use ledger_core::spend::{SpendUpdate, BUCKET_HOUR};
use ledger_schema::{BudgetSignalCodec, SpendUpdateCodec};
use ledger_tests::{oracle_total, random_suffix, read_topic, TestEnv};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use BudgetState::{Block, Notify, Ok as OkState, Reroute, Throttle};

/// A running `ledger enforce`.
struct EnforcerProcess {
    child: Child,
    log: PathBuf,
}

impl EnforcerProcess {
    fn start(env: &TestEnv, budgets: &PathBuf) -> EnforcerProcess {
        let log = std::env::temp_dir().join(format!("enforcer-{}.log", random_suffix()));
        let child = env
            .ledger()
            .args(["enforce", "--budgets"])
            .arg(budgets)
            .env("RUST_LOG", "info")
            .env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", env.group))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starting ledger enforce");
        EnforcerProcess { child, log }
    }

    /// `kill -9`: no chance to finish anything.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaping");
    }

    /// SIGTERM; the enforcer must exit cleanly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        assert!(status.success());
        let exit = self.child.wait().expect("waiting for the enforcer");
        assert!(exit.success(), "the enforcer exits cleanly on SIGTERM ({exit}):\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EnforcerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_budgets(text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("budgets-{}.toml", random_suffix()));
    std::fs::write(&path, text).expect("writing the budgets file");
    path
}

/// A day budget of 100 USD with all four actions and no look-ahead (deterministic transitions).
fn day_budget(name: &str, tenant: &str) -> String {
    format!(
        r#"
[[budget]]
name = "{name}"
scope = {{ tenant_id = "{tenant}" }}
period = "day"
limit_usd = "100"
lookahead_secs = 0
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "80"
action = "throttle"
throttle_fraction = "0.25"
retry_after_ms = 1000
[[budget.threshold]]
at_percent = "90"
action = "reroute"
reroute = {{ "gpt-4o" = "gpt-4o-mini" }}
[[budget.threshold]]
at_percent = "100"
action = "block"
"#
    )
}

fn this_hour() -> DateTime<Utc> {
    Utc::now().duration_trunc(ChronoDuration::hours(1)).expect("hour")
}

fn spend(tenant: &str, bucket: DateTime<Utc>, partition: i32, usd: &str, offset: i64) -> SpendUpdate {
    SpendUpdate {
        scope: ledger_core::attribution::Attribution::tenant(tenant).with_model(None).to_owned_key(),
        period_start: bucket,
        bucket: BUCKET_HOUR.into(),
        source_topic: "llm.usage.v1".into(),
        source_partition: partition,
        cost_usd: usd.parse().expect("amount"),
        input_tokens: 1000,
        output_tokens: 100,
        total_tokens: 1100,
        request_count: 1,
        last_offset: offset,
        max_event_time: bucket,
        updated_at: Utc::now(),
    }
}

/// Creates the test's topics and waits until every partition has a leader.
async fn ensure_topics(env: &TestEnv) {
    ledger_kafka::admin::ensure_topics(&env.kafka, &ledger_kafka::admin::ledger_topics(&env.topics, 4))
        .await
        .expect("creating topics");
    let deadline = Instant::now() + Duration::from_secs(60);
    for topic in [&env.topics.spend, &env.topics.signals] {
        loop {
            match ledger_kafka::reader::topic_watermarks(&env.kafka, topic, Duration::from_secs(5)) {
                Ok(Some(_)) => break,
                other => assert!(Instant::now() < deadline, "topic {topic} has no leader after 60 s: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

async fn produce_spend(env: &TestEnv, updates: &[SpendUpdate]) {
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    let codec = SpendUpdateCodec::new().expect("codec");
    for u in updates {
        let payload = codec.encode(u).expect("encode");
        let key = u.key();
        let record = FutureRecord::to(&env.topics.spend).key(&key).payload(&payload);
        let delivery = ledger_kafka::producer::enqueue(&producer, record).await.expect("enqueue");
        delivery.await.expect("delivery").expect("kafka ack");
    }
}

/// Every signal on the topic, per key in publication order.
fn signals(env: &TestEnv) -> BTreeMap<String, Vec<BudgetSignal>> {
    let codec = BudgetSignalCodec::new().expect("codec");
    let mut messages = read_topic(env, &env.topics.signals);
    messages.sort_by_key(|m| (m.partition(), m.offset()));
    let mut out: BTreeMap<String, Vec<BudgetSignal>> = BTreeMap::new();
    for m in messages {
        let s = codec.decode(m.payload().expect("payload")).expect("signal decodes");
        assert_eq!(m.key(), Some(s.scope.as_bytes()), "signals are keyed by scope");
        out.entry(s.scope.clone()).or_default().push(s);
    }
    out
}

/// Waits until `key` has at least `n` signals, and returns that key's signals.
fn wait_for(env: &TestEnv, key: &str, n: usize, enforcer: Option<&EnforcerProcess>) -> Vec<BudgetSignal> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = signals(env).remove(key).unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "waited 90 s for {n} signals of {key}, have {:?}\nenforcer log:\n{}",
            got.iter().map(|s| s.state).collect::<Vec<_>>(),
            enforcer.map(EnforcerProcess::log_text).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn states(signals: &[BudgetSignal]) -> Vec<BudgetState> {
    signals.iter().map(|s| s.state).collect()
}

fn assert_sequences(signals: &[BudgetSignal]) {
    let seqs: Vec<i64> = signals.iter().map(|s| s.sequence).collect();
    assert_eq!(seqs, (1..=signals.len() as i64).collect::<Vec<_>>(), "sequences strictly increase by one per key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_drives_a_scope_through_every_threshold_once_across_kill_and_restart() {
    let env = TestEnv::new("enforcer");
    ensure_topics(&env).await;
    let suffix = random_suffix();
    let (acme, beta) = (format!("acme-{suffix}"), format!("beta-{suffix}"));
    let budgets = write_budgets(&(day_budget("acme-day", &acme) + &day_budget("beta-day", &beta)));
    let (acme_key, beta_key) = (format!("day:tenant_id={acme}"), format!("day:tenant_id={beta}"));
    let hour = this_hour();

    let enforcer = EnforcerProcess::start(&env, &budgets);
    // Every budget starts with its state for the period.
    assert_eq!(states(&wait_for(&env, &acme_key, 1, Some(&enforcer))), vec![OkState]);
    // Two source partitions add up: 30 + 25 = 55% -> notify.
    produce_spend(&env, &[spend(&acme, hour, 0, "30", 1), spend(&acme, hour, 1, "25", 1)]).await;
    assert_eq!(states(&wait_for(&env, &acme_key, 2, Some(&enforcer))), vec![OkState, Notify]);
    // Cumulative: partition 0 grows to 60 -> 85 USD -> throttle.
    produce_spend(&env, &[spend(&acme, hour, 0, "60", 2)]).await;
    assert_eq!(states(&wait_for(&env, &acme_key, 3, Some(&enforcer))), vec![OkState, Notify, Throttle]);

    // kill -9, then spend moves on while nobody watches: 92 USD.
    enforcer.kill();
    produce_spend(&env, &[spend(&acme, hour, 0, "67", 3)]).await;
    let enforcer = EnforcerProcess::start(&env, &budgets);
    let after_restart = wait_for(&env, &acme_key, 4, Some(&enforcer));
    assert_eq!(states(&after_restart), vec![OkState, Notify, Throttle, Reroute], "no repeat, no miss");
    // A repeated (stale) update changes nothing; the next cumulative one blocks: 100.5 USD.
    produce_spend(&env, &[spend(&acme, hour, 0, "67", 3), spend(&acme, hour, 0, "75.5", 4)]).await;
    let acme_signals = wait_for(&env, &acme_key, 5, Some(&enforcer));

    // The other tenant: its own spend only. Its NOTIFY is also the marker that the enforcer
    // processed everything produced before it.
    produce_spend(&env, &[spend(&beta, hour, 0, "60", 1)]).await;
    let beta_signals = wait_for(&env, &beta_key, 2, Some(&enforcer));
    enforcer.stop();

    // A second restart without new acme spend: beta's next signal is the marker.
    let enforcer = EnforcerProcess::start(&env, &budgets);
    produce_spend(&env, &[spend(&beta, hour, 0, "81", 2)]).await;
    let beta_after = wait_for(&env, &beta_key, 3, Some(&enforcer));
    enforcer.stop();

    let all = signals(&env);
    let acme_final = &all[&acme_key];
    assert_eq!(acme_final, &acme_signals, "no acme signal after the block, across a graceful restart");
    assert_eq!(states(acme_final), vec![OkState, Notify, Throttle, Reroute, Block]);
    assert_sequences(acme_final);
    let block = &acme_final[4];
    assert_eq!(block.spend_usd, "100.5".parse::<Money>().unwrap());
    assert_eq!(block.remaining_usd, Some("-0.5".parse::<Money>().unwrap()));
    assert_eq!(block.limit_usd, Some(Money::from_usd(100)));
    assert!(block.reroute.is_empty() && block.throttle_fraction_ppm.is_none(), "a block carries no reroute and no throttle");
    let throttle = &acme_final[2];
    assert_eq!((throttle.throttle_fraction_ppm, throttle.retry_after_ms), (Some(250_000), Some(1000)));
    let reroute = &acme_final[3];
    assert_eq!(reroute.reroute.get("gpt-4o").map(String::as_str), Some("gpt-4o-mini"));
    assert_eq!(reroute.spend_usd, Money::from_usd(92));
    assert_eq!(block.scope_fields, BTreeMap::from([("tenant_id".to_owned(), acme.clone())]));
    assert_eq!(block.valid_until, block.period_end);
    let day_start = Utc.with_ymd_and_hms(hour.year(), hour.month(), hour.day(), 0, 0, 0).unwrap();
    assert_eq!((block.period_start, block.period_end), (day_start, day_start + ChronoDuration::days(1)));

    assert_eq!(states(&beta_signals), vec![OkState, Notify], "acme's spend never reaches beta");
    assert_eq!(beta_signals[1].spend_usd, Money::from_usd(60));
    assert_eq!(states(&beta_after), vec![OkState, Notify, Throttle]);
    assert_sequences(&beta_after);

    // `ledger budgets status` shows the same picture.
    let out = env.run_ledger(&["budgets", "status", "--budgets", budgets.to_str().unwrap(), "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let row = |name: &str| rows.as_array().unwrap().iter().find(|r| r["budget"] == name).cloned().expect("row");
    assert_eq!(row("acme-day")["state"], "BLOCK");
    assert_eq!(row("acme-day")["spend_usd"], "100.500000000000");
    assert_eq!(row("acme-day")["used_percent"], "100.5");
    assert_eq!(row("beta-day")["state"], "THROTTLE");
    assert_eq!(row("beta-day")["spend_usd"], "81.000000000000");
    let table = env.run_ledger(&["budgets", "status", "--budgets", budgets.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("acme-day") && text.contains("BLOCK") && text.contains("100.50"), "status table:\n{text}");
    let _ = std::fs::remove_file(budgets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_period_starts_from_zero_and_a_policy_change_is_applied_live() {
    let env = TestEnv::new("enforcer_period");
    ensure_topics(&env).await;
    let tenant = format!("roll-{}", random_suffix());
    let key = format!("day:tenant_id={tenant}");
    let now = this_hour();
    let yesterday = now - ChronoDuration::days(1);
    // Yesterday's bucket blew the budget; today's spend is 10 USD.
    produce_spend(&env, &[spend(&tenant, yesterday, 0, "500", 1), spend(&tenant, now, 0, "10", 2)]).await;
    let budgets = write_budgets(&day_budget("roll-day", &tenant));
    let enforcer = EnforcerProcess::start(&env, &budgets);
    let first = wait_for(&env, &key, 1, Some(&enforcer));
    assert_eq!(states(&first), vec![OkState], "yesterday's spend does not count today");
    assert_eq!(first[0].spend_usd, Money::from_usd(10));
    assert!(first[0].period_start <= Utc::now() && Utc::now() < first[0].period_end);

    // The limit is lowered to 15 USD while the enforcer runs: 10 of 15 is 66% -> notify.
    std::fs::write(&budgets, day_budget("roll-day", &tenant).replace("limit_usd = \"100\"", "limit_usd = \"15\"")).unwrap();
    let second = wait_for(&env, &key, 2, Some(&enforcer));
    assert_eq!(states(&second), vec![OkState, Notify]);
    assert_eq!(second[1].limit_usd, Some(Money::from_usd(15)));
    // An invalid edit is refused and the policy in force stays: more spend still throttles.
    std::fs::write(&budgets, "[[budget]]\nname = 1\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !enforcer.log_text().contains("the changed budgets file is invalid") {
        assert!(Instant::now() < deadline, "the refusal is logged:\n{}", enforcer.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(enforcer.log_text().contains("field `name`: expected a string"), "with its problems:\n{}", enforcer.log_text());
    produce_spend(&env, &[spend(&tenant, now, 0, "12.5", 3)]).await;
    let third = wait_for(&env, &key, 3, Some(&enforcer));
    assert_eq!(states(&third), vec![OkState, Notify, Throttle]);
    enforcer.stop();
    let _ = std::fs::remove_file(budgets);
}

#[test]
fn an_invalid_budgets_file_is_refused_with_every_problem() {
    let env = TestEnv::new("enforcer_invalid");
    let budgets = write_budgets(
        r#"
[defaults]
timezone = "Mars/Olympus"
[[budget]]
name = "a"
scope = { tenant_id = "acme", user_id = "u", model = "m" }
period = "month"
limit_usd = "100"
[[budget.threshold]]
at_percent = "90"
action = "block"
[[budget.threshold]]
at_percent = "80"
action = "notify"
[[budget]]
name = "a"
scope = { tenant_id = "acme" }
period = "day"
limit_usd = 1.5
speed = "fast"
[[budget.threshold]]
at_percent = "50"
action = "reroute"
reroute = { "gpt-4o" = "gpt-4o" }
"#,
    );
    for args in [vec!["enforce", "--budgets"], vec!["budgets", "check"]] {
        let out = env.ledger().args(&args).arg(&budgets).output().expect("running ledger");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail on an invalid budgets file");
        for needle in [
            "problem(s)",
            "[defaults], field `timezone`",
            "budget \"a\", field `scope`: tenant_id + user_id + model is not a scope",
            "field `threshold[2].at_percent`: 80% is not above threshold[1] (90%)",
            "field `threshold[2].action`: notify after block",
            "field `limit_usd`: 1.5 is a TOML float",
            "field `speed`: unknown key",
            "reroutes a model to itself",
            "field `name`: duplicate name",
            "fix the budgets file",
        ] {
            assert!(stderr.contains(needle), "{args:?}: missing {needle:?} in:\n{stderr}");
        }
    }
    let _ = std::fs::remove_file(budgets);
}

/// Usage events of one tenant at `now`, 10 calls of gpt-4o.
fn usage_events(tenant: &str, batch: &str) -> String {
    let at = (Utc::now() - ChronoDuration::seconds(30)).to_rfc3339();
    (0..10)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("{tenant}-{batch}-{i}"), "event_time": at, "tenant_id": tenant,
                "team": "search", "provider": "openai", "request_model": "gpt-4o",
                "input_tokens": 10_000 + i, "output_tokens": 2_000,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_through_the_real_processor_drives_a_team_budget() {
    let env = TestEnv::new("enforcer_e2e");
    env.run_ledger(&["migrate"]);
    ensure_topics(&env).await;
    let tenant = format!("e2e-{}", random_suffix());
    let first = usage_events(&tenant, "a");
    let second = usage_events(&tenant, "b");
    let (_, first_cost) = oracle_total(&first);
    // The first batch is 2/3 of the limit (notify at 50%), both batches 4/3 (block at 100%).
    let limit = Money::from_picos(first_cost * 3 / 2);
    let budgets = write_budgets(&format!(
        r#"
[[budget]]
name = "team-month"
scope = {{ tenant_id = "{tenant}", team = "search" }}
period = "month"
limit_usd = "{limit}"
lookahead_secs = 0
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "100"
action = "block"
"#
    ));
    let key = format!("month:tenant_id={tenant},team=search");
    let enforcer = EnforcerProcess::start(&env, &budgets);
    assert_eq!(states(&wait_for(&env, &key, 1, Some(&enforcer))), vec![OkState]);

    for (batch, n) in [(&first, 2), (&second, 3)] {
        let file = std::env::temp_dir().join(format!("events-{}.jsonl", random_suffix()));
        std::fs::write(&file, batch).unwrap();
        env.run_ledger(&["produce", "--json", file.to_str().unwrap()]);
        env.run_ledger(&["process", "--until-drained"]);
        wait_for(&env, &key, n, Some(&enforcer));
        let _ = std::fs::remove_file(file);
    }
    enforcer.stop();
    let got = &signals(&env)[&key];
    assert_eq!(states(got), vec![OkState, Notify, Block]);
    assert_eq!(got[1].spend_usd.picos(), first_cost, "the notify carries the exact ledger cost of the first batch");
    let (_, both) = oracle_total(&(first + &second));
    assert_eq!(got[2].spend_usd.picos(), both, "the block carries the exact cost of both batches");
    assert_eq!(got[2].scope_fields.get("team").map(String::as_str), Some("search"));
    let _ = std::fs::remove_file(budgets);
}
