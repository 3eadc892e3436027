//! Month-end close and corrections on the real Kafka and ClickHouse: a fixed past month's usage
//! is processed and closed with `ledger close`; then late events for that month arrive (one with
//! the attributes of an existing charge line, one of a tenant the month had not seen) and are
//! processed. The next FOCUS export of the month
//!
//! * repeats the closed rows exactly as they were (the closed total stays as recorded in
//!   `chargeback_closes`),
//! * adds the late events as rows with `ChargeClass` "Correction" for that month, billed in the
//!   month they reached the ledger and traced to offsets above the close's fence,
//! * and closed total + corrections = the ledger's month = the independent oracle.
//!
//! A month that has not ended, or that is already closed, is refused with the reason.

use std::collections::BTreeMap;

use chrono::{Datelike, Utc};
use ledger_core::Money;
use ledger_tests::{oracle_priced, process_events, TestEnv};
use serde_json::{json, Value};

const MONTH: &str = "2025-05";

fn event(id: &str, at: &str, tenant: &str, model: &str, input: u64, output: u64) -> Value {
    json!({
        "event_id": id, "event_time": at, "tenant_id": tenant, "team": "search", "project": "s-1",
        "feature": "chat", "provider": "openai", "request_model": model,
        "input_tokens": input, "cache_read_input_tokens": input / 4, "output_tokens": output,
    })
}

fn money(text: &str) -> i128 {
    text.parse::<Money>().unwrap_or_else(|e| panic!("{text:?}: {e}")).picos()
}

/// The export's rows as column -> value maps.
fn export(env: &TestEnv) -> Vec<BTreeMap<String, String>> {
    let out = env.run_ledger(&["export", "focus", "--month", MONTH]);
    let rows = ledger_ops::format::parse_csv(&String::from_utf8_lossy(&out.stdout)).expect("the CSV parses");
    let header = rows[0].clone();
    rows[1..].iter().map(|r| header.iter().cloned().zip(r.iter().cloned()).collect()).collect()
}

fn total(rows: &[&BTreeMap<String, String>]) -> i128 {
    rows.iter().map(|r| money(&r["BilledCost"])).sum()
}

fn fails_with(env: &TestEnv, args: &[&str], needle: &str) {
    let out = env.ledger().args(args).output().expect("running ledger");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(needle), "{args:?} must fail with {needle:?}:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_for_a_closed_month_is_a_correction_and_the_closed_total_stays() {
    let env = TestEnv::new("close");
    env.run_ledger(&["migrate"]);
    let on_time: Vec<Value> = (0..8)
        .map(|i| {
            let at = format!("2025-05-{:02}T10:00:00Z", 1 + i * 4);
            event(&format!("c-{i}"), &at, if i % 2 == 0 { "acme" } else { "globex" }, "gpt-4o", 10_000 + i, 500)
        })
        .collect();
    process_events(&env, &on_time);

    let next = Utc::now() + chrono::Duration::days(40);
    fails_with(&env, &["close", "--month", &format!("{}-{:02}", next.year(), next.month())], "has not ended yet");
    let closed = env.run_ledger(&["close", "--month", MONTH]);
    assert!(String::from_utf8_lossy(&closed.stdout).contains("closed 2025-05"), "{}", String::from_utf8_lossy(&closed.stdout));
    fails_with(&env, &["close", "--month", MONTH], "was already closed");

    let client = env.clickhouse.client().unwrap();
    let db = &env.clickhouse.database;
    let recorded: i128 =
        client.query(&format!("SELECT cost_usd FROM {db}.chargeback_closes WHERE month = '{MONTH}'")).fetch_one().await.unwrap();
    let before = export(&env);
    assert!(before.iter().all(|r| r["ChargeClass"].is_empty()), "a closed month's own rows are no corrections");
    assert_eq!(total(&before.iter().collect::<Vec<_>>()), recorded, "the export of the closed month = the recorded close");

    // Late events: one like an existing line (acme, gpt-4o, day 1), one of a tenant not seen yet.
    let late = vec![
        event("late-1", "2025-05-01T18:00:00Z", "acme", "gpt-4o", 10_000, 500),
        event("late-2", "2025-05-20T08:00:00Z", "late-co", "gpt-4o-mini", 7_777, 333),
    ];
    process_events(&env, &late);

    let after = export(&env);
    type Rows<'a> = Vec<&'a BTreeMap<String, String>>;
    let (charges, corrections): (Rows, Rows) = after.iter().partition(|r| r["ChargeClass"].is_empty());
    assert_eq!(charges.len(), before.len(), "the closed rows are repeated");
    for (a, b) in charges.iter().zip(&before) {
        assert_eq!(*a, b, "a closed row never changes");
    }
    assert_eq!(total(&charges), recorded, "the closed total stays as recorded");
    assert!(!corrections.is_empty(), "the late events are correction rows");
    let this_month = Utc::now().format("%Y-%m-01T00:00:00Z").to_string();
    let closes = ledger_clickhouse::close::closes(&client, db, MONTH).await.expect("the close");
    assert_eq!(closes.len(), 1, "one close");
    let fence: BTreeMap<i32, i64> = closes[0].fence.0.iter().map(|((_, p), o)| (*p, *o)).collect();
    let mut tenants = std::collections::BTreeSet::new();
    for c in &corrections {
        assert_eq!(c["ChargeClass"], "Correction");
        assert_eq!(c["x_CorrectionOf"], MONTH);
        assert!(c["ChargePeriodStart"].starts_with(MONTH), "a correction is charged to the month it corrects: {c:?}");
        assert_eq!(c["BillingPeriodStart"], this_month, "and billed in the month it reached the ledger");
        let partition: i32 = c["x_KafkaPartition"].parse().unwrap();
        let first: i64 = c["x_KafkaOffsetFirst"].parse().unwrap();
        assert!(fence.get(&partition).is_none_or(|f| first > *f), "its offsets lie above the close's fence: {c:?} {fence:?}");
        tenants.insert(c["SubAccountId"].clone());
    }
    assert_eq!(tenants.into_iter().collect::<Vec<_>>(), vec!["acme".to_owned(), "late-co".to_owned()]);

    // Closed total + corrections = the ledger = the oracle.
    let ledger: i128 = client
        .query(&format!("SELECT sum(cost_usd) FROM {db}.usage_ledger WHERE toYYYYMM(event_time) = 202505"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(recorded + total(&corrections), ledger, "closed total + corrections = the ledger");
    let all: Vec<Value> = on_time.iter().chain(&late).cloned().collect();
    let oracle: i128 = oracle_priced(&all).iter().map(|l| money(l["cost_usd"].as_str().unwrap())).sum();
    assert_eq!(ledger, oracle);

    // The same through the library the CLI renders.
    let statement = ledger_ops::close::statement(&env.clickhouse, MONTH, None).await.expect("statement");
    assert_eq!(statement.lines_total().unwrap().picos(), recorded);
    assert_eq!(
        statement.lines_total().unwrap().picos() + statement.corrections_total().unwrap().picos(),
        statement.ledger.cost.picos()
    );
    let late_co = ledger_ops::close::statement(&env.clickhouse, MONTH, Some("late-co")).await.expect("one tenant's statement");
    assert!(
        late_co.lines.is_empty() && late_co.corrections.len() == 3,
        "late-co has only corrections (input, cache read, output)"
    );
}
