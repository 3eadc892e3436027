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

type Rows<'a> = Vec<&'a BTreeMap<String, String>>;

/// The correction rows of an export made after the close (`after`), once its other rows are
/// checked to be the closed rows (`before`) unchanged, adding up to the recorded total.
fn corrections_after<'a>(after: &'a [BTreeMap<String, String>], before: &[BTreeMap<String, String>], recorded: i128) -> Rows<'a> {
    let (charges, corrections): (Rows, Rows) = after.iter().partition(|r| r["ChargeClass"].is_empty());
    assert_eq!(charges.len(), before.len(), "the closed rows are repeated");
    for (a, b) in charges.iter().zip(before) {
        assert_eq!(*a, b, "a closed row never changes");
    }
    assert_eq!(total(&charges), recorded, "the closed total stays as recorded");
    assert!(!corrections.is_empty(), "the change shows as correction rows");
    corrections
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
    let corrections = corrections_after(&after, &before, recorded);
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

/// The catalog the ledger priced with, but for gpt-4o's input price (2.5 -> 3.1 USD per million
/// tokens), written to a file named `stem.json`; `drop` leaves gpt-4o-mini out.
fn corrected_catalog(dir: &std::path::Path, stem: &str, drop: Option<&str>) -> String {
    let text = std::fs::read_to_string(ledger_tests::workspace_root().join("catalog/litellm-prices.json")).unwrap();
    let mut all: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    all["gpt-4o"]["input_cost_per_token"] = json!(3.1e-06);
    if let Some(model) = drop {
        all.remove(model);
    }
    let path = dir.join(format!("{stem}.json"));
    std::fs::write(&path, serde_json::to_string(&all).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_correction_of_a_closed_month_is_a_correction_and_the_closed_total_stays() {
    let env = TestEnv::new("correct");
    env.run_ledger(&["migrate"]);
    let events: Vec<Value> = (0..10)
        .map(|i| {
            let at = format!("2025-05-{:02}T09:30:00Z", 1 + i * 3);
            event(
                &format!("p-{i}"),
                &at,
                if i % 3 == 0 { "acme" } else { "globex" },
                ["gpt-4o", "gpt-4o-mini"][i as usize % 2],
                20_000 + i,
                700,
            )
        })
        .collect();
    process_events(&env, &events);
    env.run_ledger(&["close", "--month", MONTH]);
    let client = env.clickhouse.client().unwrap();
    let db = &env.clickhouse.database;
    let recorded: i128 =
        client.query(&format!("SELECT cost_usd FROM {db}.chargeback_closes WHERE month = '{MONTH}'")).fetch_one().await.unwrap();
    let before = export(&env);

    let dir = std::env::temp_dir().join(format!("ledger-{}", env.group));
    std::fs::create_dir_all(&dir).unwrap();
    let partial = corrected_catalog(&dir, "partial", Some("gpt-4o-mini"));
    fails_with(&env, &["close", "--month", MONTH, "--correct-prices", &partial], "cannot price 5 rows of gpt-4o-mini");
    let fixed = corrected_catalog(&dir, "fixed-2025-06", None);
    let out = env.run_ledger(&["close", "--month", MONTH, "--correct-prices", &fixed]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("recorded a price correction of 2025-05") && text.contains("5 of 10 rows"), "{text}");
    fails_with(&env, &["close", "--month", MONTH, "--correct-prices", &fixed], "nothing to correct");

    let after = export(&env);
    let corrections = corrections_after(&after, &before, recorded);
    let this_month = Utc::now().format("%Y-%m-01T00:00:00Z").to_string();
    for c in &corrections {
        assert_eq!((c["ChargeClass"].as_str(), c["x_CorrectionOf"].as_str()), ("Correction", MONTH));
        assert_eq!(
            (c["SkuId"].contains("gpt-4o-mini"), c["SkuMeter"].as_str()),
            (false, "Input Tokens"),
            "only gpt-4o input: {c:?}"
        );
        assert!(c["x_PriceVersion"].starts_with("fixed-2025-06"), "{c:?}");
        assert_eq!(c["BillingPeriodStart"], this_month, "billed in the month of the correction");
        assert!(c["x_KafkaOffsetFirst"].parse::<i64>().unwrap() <= c["x_KafkaOffsetLast"].parse::<i64>().unwrap());
    }
    // Closed total + corrections = the events priced by the independent oracle at the fixed prices.
    let oracle_at = |catalog: &str| -> i128 {
        ledger_tests::oracle_priced_at(&events, catalog).iter().map(|l| money(l["cost_usd"].as_str().unwrap())).sum()
    };
    assert_eq!(recorded + total(&corrections), oracle_at(&fixed), "closed + corrections = the month at the fixed prices");
    assert_ne!(oracle_at(&fixed), oracle_at("catalog/litellm-prices.json"));

    // Back to the original prices: a new correction reverses the first, corrections add up to 0.
    env.run_ledger(&["close", "--month", MONTH, "--correct-prices", "catalog/litellm-prices.json"]);
    let rows = export(&env);
    let corrections = corrections_after(&rows, &before, recorded);
    assert_eq!(total(&corrections), 0, "corrections = the latest prices minus the ledger's");
    let statement = ledger_ops::close::statement(&env.clickhouse, MONTH, None).await.expect("statement");
    assert_eq!(statement.price_corrections.records.len(), 2);
    assert_eq!(statement.lines_total().unwrap().picos(), recorded);
    assert_eq!(statement.ledger.cost.picos(), oracle_at("catalog/litellm-prices.json"), "the ledger's rows never changed");
    let _ = std::fs::remove_dir_all(&dir);
}
