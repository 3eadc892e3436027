//! `ledger prices diff --ledger` end to end: events priced into the ledger with one catalog, the
//! ledger's rows re-priced at a newer one, and the cost under the newer one checked against the
//! independent oracle pricing the original events at it, to the pico-dollar.

use chrono::{Datelike, Duration, Utc};
use ledger_core::catalog::Catalog;
use ledger_tests::{oracle_total_with, produce_synthetic, workspace_root, TestEnv};

const OLD: &str = "catalog/litellm-prices.json";

/// The 65-model catalog with gpt-4o-mini's input price doubled (the text edited, nothing else).
fn newer_catalog(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(workspace_root().join(OLD)).expect("catalog");
    let (head, tail) = text.split_once("\"gpt-4o-mini\": {").expect("gpt-4o-mini in the catalog");
    let tail = tail.replacen("\"input_cost_per_token\": 1.5e-07,", "\"input_cost_per_token\": 3e-07,", 1);
    let path = dir.join("litellm-prices-next.json");
    std::fs::write(&path, format!("{head}\"gpt-4o-mini\": {{{tail}")).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledgers_rows_repriced_at_a_new_catalog_match_the_oracle() {
    let env = TestEnv::new("pdiff");
    env.run_ledger(&["migrate"]);
    let sent = produce_synthetic(&env, 2_000, 23, 0, 0).await;
    env.run_ledger(&["process", "--until-drained", "--catalog", OLD]);
    let totals = env.totals().await;
    assert_eq!(totals.ledger.requests, sent.distinct_valid);

    let dir = std::env::temp_dir().join(format!("ledger-prices-diff-{}", ledger_tests::random_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let new = newer_catalog(&dir);
    let (catalog, _) = ledger_processor::catalog::load_specs(std::slice::from_ref(&new), None).expect("catalog");
    let catalog: Catalog = catalog;
    let now = Utc::now();
    let report = ledger_ops::price_diff::reprice(&env.clickhouse, &catalog, now - Duration::days(1), now + Duration::days(1))
        .await
        .expect("re-priced");
    assert_eq!(report.total.rows, totals.ledger.requests);
    assert_eq!(report.total.old_cost, totals.ledger.cost, "the rows' charged cost is the ledger's");
    assert!(report.total.unpriced.is_empty(), "{:?}", report.total.unpriced);
    let (_, at_new) = oracle_total_with(&sent.valid_jsonl, &[new.as_str()]);
    assert_eq!(report.total.new_cost.picos(), at_new, "re-priced rows = the oracle pricing the events at NEW");
    assert_eq!(report.total.delta.picos(), at_new - totals.ledger.cost.picos());
    let mini = &report.models["gpt-4o-mini"];
    assert!(mini.delta.picos() > 0, "only gpt-4o-mini's price changed: {mini:?}");
    let others = report.models.values().filter(|m| m.model != "gpt-4o-mini").map(|m| m.delta.picos()).sum::<i128>();
    assert_eq!(others, 0);

    // The command: the changed field, and the month's rows with the same delta.
    let month = format!("{}-{:02}", now.year(), now.month());
    let out = env.run_ledger(&["prices", "diff", OLD, &new, "--ledger", "--month", &month]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 added, 0 removed, 1 changed") && text.contains("input_cost_per_token"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    if (now - Duration::minutes(15)).month() == now.month() {
        assert!(text.contains(&mini.delta.to_string()), "the month's delta of gpt-4o-mini in:\n{text}");
    }
}
