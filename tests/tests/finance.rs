//! Finance and analytics, end to end on the real Kafka and ClickHouse: synthetic usage (with
//! resends, invalid events, spend without a team, an unmapped team and rerouted requests) is
//! processed into the ledger, then
//!
//! * `ledger report chargeback` (by team and by cost center, CSV and JSON) adds up exactly to the
//!   ledger's total for the month, shows and allocates the unattributed spend, and its CSV
//!   parses back to the same numbers;
//! * `ledger reconcile` passes on the clean ledger (dead-lettered offsets and deduplicated
//!   resends are not gaps), fails on an injected duplicate row and on a removed row, naming them;
//! * `ledger report spend --chart` writes a well-formed SVG naming every team;
//! * every `docs/sql/*.sql` query runs on this ClickHouse against the ledger's data.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use ledger_core::{Money, UsageEvent};
use ledger_tests::{produce_synthetic, random_suffix, workspace_root, TestEnv};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A usage event two minutes old with the given attribution.
fn event(id: &str, tenant: &str, team: Option<&str>, model: &str, routed_from: Option<&str>) -> UsageEvent {
    let at = (chrono::Utc::now() - chrono::Duration::minutes(2)).to_rfc3339();
    let mut v = json!({
        "event_id": id, "event_time": at, "tenant_id": tenant, "provider": "openai",
        "request_model": model, "input_tokens": 12_345, "cache_read_input_tokens": 2_000,
        "output_tokens": 678, "feature": "chat",
    });
    if let Some(t) = team {
        v["team"] = json!(t);
        v["project"] = json!(format!("{t}-x"));
    }
    if let Some(r) = routed_from {
        v["routed_from_model"] = json!(r);
    }
    serde_json::from_value(v).expect("a valid usage event")
}

/// Sends events keyed by tenant to the test's usage topic.
async fn send(env: &TestEnv, events: &[UsageEvent]) {
    let codec = ledger_schema::Codec::<UsageEvent>::new().expect("codec");
    let producer = ledger_kafka::producer::idempotent_producer(&env.kafka).expect("producer");
    for e in events {
        let payload = codec.encode(e).expect("encode");
        let record = FutureRecord::to(&env.topics.usage).key(e.attribution.tenant_id.as_str()).payload(payload.as_slice());
        producer.send(record, Duration::from_secs(30)).await.expect("kafka ack");
    }
}

/// `sum(cost_usd)` (pico-dollars) and `count()` of the ledger rows matching `condition`.
async fn ledger_sum(env: &TestEnv, condition: &str) -> (i128, u64) {
    let client = env.clickhouse.client().expect("client");
    let from = format!("FROM {}.usage_ledger WHERE {condition}", env.clickhouse.database);
    let cost = client.query(&format!("SELECT sum(cost_usd) {from}")).fetch_one::<i128>().await.expect("ledger sum");
    let rows = client.query(&format!("SELECT count() {from}")).fetch_one::<u64>().await.expect("ledger count");
    (cost, rows)
}

/// Months (YYYY-MM) that have ledger rows, by event time UTC.
async fn ledger_months(env: &TestEnv) -> Vec<String> {
    let client = env.clickhouse.client().expect("client");
    let sql = format!("SELECT DISTINCT toUInt32(toYYYYMM(event_time)) FROM {}.usage_ledger ORDER BY 1", env.clickhouse.database);
    let months = client.query(&sql).fetch_all::<u32>().await.expect("months");
    months.into_iter().map(|m| format!("{}-{:02}", m / 100, m % 100)).collect()
}

fn month_condition(month: &str) -> String {
    format!("toYYYYMM(event_time) = {}", month.replace('-', ""))
}

/// One parsed line of the chargeback CSV.
#[derive(Debug, Clone)]
struct CsvLine {
    line: String,
    key: String,
    requests: u64,
    direct: i128,
    allocated: i128,
    charged: i128,
}

fn parse_csv(text: &str, key_column: &str) -> Vec<CsvLine> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("line,{key_column},requests,direct_usd,allocated_usd,charged_usd").as_str()),
        "CSV header"
    );
    let money = |s: &str| -> i128 {
        let (_, frac) = s.split_once('.').expect("amounts have a decimal point");
        assert_eq!(frac.len(), 12, "12 fractional digits: {s}");
        s.parse::<Money>().expect("exact decimal").picos()
    };
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "six fields: {l}");
            CsvLine {
                line: f[0].to_owned(),
                key: f[1].to_owned(),
                requests: f[2].parse().expect("requests"),
                direct: money(f[3]),
                allocated: money(f[4]),
                charged: money(f[5]),
            }
        })
        .collect()
}

/// Checks the arithmetic of a chargeback CSV against the ledger's month: the attributed and
/// unattributed lines add up to the total line, which is the ledger's total; the allocation
/// gives away exactly the unattributed spend, proportionally within one pico-dollar.
fn check_chargeback(lines: &[CsvLine], ledger_cost: i128, ledger_rows: u64) -> (Vec<CsvLine>, CsvLine) {
    let attributed: Vec<CsvLine> = lines.iter().filter(|l| l.line == "attributed").cloned().collect();
    let unattributed = lines.iter().find(|l| l.line == "unattributed").expect("an unattributed line").clone();
    let total = lines.iter().find(|l| l.line == "total").expect("a total line");
    assert_eq!(lines.len(), attributed.len() + 2, "only attributed lines besides unattributed and total");
    assert_eq!((total.direct, total.charged, total.requests), (ledger_cost, ledger_cost, ledger_rows), "total = ledger");
    let direct: i128 = attributed.iter().map(|l| l.direct).sum::<i128>() + unattributed.direct;
    let charged: i128 = attributed.iter().map(|l| l.charged).sum::<i128>() + unattributed.charged;
    let requests: u64 = attributed.iter().map(|l| l.requests).sum::<u64>() + unattributed.requests;
    assert_eq!((direct, charged, requests), (ledger_cost, ledger_cost, ledger_rows), "lines add up exactly");
    let given: i128 = attributed.iter().map(|l| l.allocated).sum();
    assert_eq!(given, -unattributed.allocated, "the allocation gives away what the unattributed line gives up");
    let w: i128 = attributed.iter().map(|l| l.direct).sum();
    for l in &attributed {
        assert_eq!(l.charged, l.direct + l.allocated, "{l:?}");
        // |allocated - U * direct / W| < 1 pico  <=>  |allocated * W - U * direct| < W
        let err = (l.allocated * w - unattributed.direct * l.direct).abs();
        assert!(err < w, "allocation of {l:?} is not proportional within a pico-dollar");
    }
    (attributed, unattributed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chargeback_reconcile_chart_and_sql_agree_with_the_ledger() {
    let env = TestEnv::new("finance");
    env.run_ledger(&["migrate"]);
    // Resends (2%) and invalid events (2%, dead-lettered) make offsets the ledger does not hold.
    let sent = produce_synthetic(&env, 2_000, 7, 20_000, 20_000).await;
    assert!(sent.duplicates > 0 && sent.invalid > 0, "the load has resends and invalid events");
    let prefix = format!("fin-{}", random_suffix());
    let mut extra = Vec::new();
    for i in 0..5 {
        extra.push(event(&format!("{prefix}-noteam-{i}"), ["acme", "globex"][i % 2], None, "gpt-4o", None));
    }
    for i in 0..3 {
        extra.push(event(&format!("{prefix}-skunk-{i}"), "acme", Some("skunkworks"), "gpt-4o-mini", None));
    }
    for i in 0..4 {
        extra.push(event(&format!("{prefix}-routed-{i}"), "globex", Some("search"), "gpt-4o-mini", Some("gpt-4o")));
    }
    send(&env, &extra).await;
    env.run_ledger(&["process", "--until-drained"]);

    let (all_cost, all_rows) = ledger_sum(&env, "1").await;
    assert_eq!(all_rows, sent.distinct_valid + extra.len() as u64, "every distinct valid event once");
    let months = ledger_months(&env).await;
    assert!(!months.is_empty());

    // Chargeback by team, per month (a run right after midnight on the 1st spans two months).
    let mut months_total = 0i128;
    for month in &months {
        let (cost, rows) = ledger_sum(&env, &month_condition(month)).await;
        let csv = stdout(&env.run_ledger(&["report", "chargeback", "--month", month, "--format", "csv"]));
        let lines = parse_csv(&csv, "team");
        let (attributed, unattributed) = check_chargeback(&lines, cost, rows);
        let (no_team, no_team_rows) = ledger_sum(&env, &format!("team = '' AND {}", month_condition(month))).await;
        assert_eq!((unattributed.direct, unattributed.requests), (no_team, no_team_rows), "unattributed = no team");
        for l in &attributed {
            let (team_cost, team_rows) = ledger_sum(&env, &format!("team = '{}' AND {}", l.key, month_condition(month))).await;
            assert_eq!((l.direct, l.requests), (team_cost, team_rows), "direct spend of team {}", l.key);
        }
        months_total += cost;
    }
    assert_eq!(months_total, all_cost, "the months partition the ledger");

    // By cost center with the example mapping: "research" and "skunkworks" are unmapped,
    // acme's platform team has its own cost center.
    let month = months.last().expect("a month").clone();
    let (cost, rows) = ledger_sum(&env, &month_condition(&month)).await;
    let mapping = workspace_root().join("config/cost-centers.example.toml");
    let mapping = mapping.to_str().expect("utf-8 path");
    let csv = stdout(&env.run_ledger(&[
        "report",
        "chargeback",
        "--month",
        &month,
        "--by",
        "cost-center",
        "--mapping",
        mapping,
        "--format",
        "csv",
    ]));
    let lines = parse_csv(&csv, "cost_center");
    let (attributed, unattributed) = check_chargeback(&lines, cost, rows);
    let m = month_condition(&month);
    let (unmapped, unmapped_rows) =
        ledger_sum(&env, &format!("team NOT IN ('search', 'support', 'growth', 'platform') AND {m}")).await;
    assert_eq!((unattributed.direct, unattributed.requests), (unmapped, unmapped_rows), "no team + unmapped teams");
    assert!(unattributed.direct > 0 && unattributed.charged == 0, "the unattributed spend is allocated in full");
    let by_cc: BTreeMap<&str, &CsvLine> = attributed.iter().map(|l| (l.key.as_str(), l)).collect();
    let (search, _) = ledger_sum(&env, &format!("team = 'search' AND {m}")).await;
    assert_eq!(by_cc["CC-1001 Search"].direct, search);
    let (acme_platform, _) = ledger_sum(&env, &format!("team = 'platform' AND tenant_id = 'acme' AND {m}")).await;
    let (platform, _) = ledger_sum(&env, &format!("team = 'platform' AND {m}")).await;
    if acme_platform > 0 {
        assert_eq!(by_cc["CC-3002 Platform (acme)"].direct, acme_platform, "tenant/team wins over team");
    }
    if platform > acme_platform {
        assert_eq!(by_cc["CC-3001 Platform engineering"].direct, platform - acme_platform);
    }

    // JSON carries the same exact numbers; the table names the unattributed spend.
    let out = env.run_ledger(&[
        "report",
        "chargeback",
        "--month",
        &month,
        "--by",
        "cost-center",
        "--mapping",
        mapping,
        "--format",
        "json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let total: Money = doc["total"]["cost_usd"].as_str().expect("total").parse().expect("exact");
    assert_eq!(total.picos(), cost);
    let json_charged: i128 = doc["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["charged_usd"].as_str().expect("charged").parse::<Money>().expect("exact").picos())
        .sum::<i128>()
        + doc["unattributed"]["unallocated_usd"].as_str().expect("unallocated").parse::<Money>().expect("exact").picos();
    assert_eq!(json_charged, cost);
    let reasons = doc["unattributed"]["reasons"].to_string();
    assert!(reasons.contains("no team") && reasons.contains("skunkworks"), "{reasons}");
    let table = stdout(&env.run_ledger(&["report", "chargeback", "--month", &month]));
    assert!(table.contains("unattributed") && table.contains("TOTAL"), "{table}");
    assert!(table.contains(&Money::from_picos(cost).to_string()), "exact total printed: {table}");
    // The printed cents add up to the printed total in both amount columns.
    let cents = |cell: &str| -> i64 { cell.trim().replace('.', "").parse().expect("an amount in cents") };
    let (mut direct_sum, mut charged_sum, mut printed_total) = (0i64, 0i64, None);
    for row in table.lines().filter(|l| l.contains('┆') && !l.contains("requests")) {
        let cells: Vec<&str> = row.trim_matches(|c| c == '│' || c == ' ').split('┆').collect();
        assert_eq!(cells.len(), 5, "{row}");
        if cells[0].trim() == "TOTAL" {
            printed_total = Some((cents(cells[2]), cents(cells[4])));
        } else {
            direct_sum += cents(cells[2]);
            charged_sum += cents(cells[4]);
            assert_eq!(cents(cells[2]) + cents(cells[3]), cents(cells[4]), "row adds up: {row}");
        }
    }
    assert_eq!(printed_total, Some((direct_sum, charged_sum)), "printed columns add up:\n{table}");
    let refused = env.ledger().args(["report", "chargeback", "--month", &month, "--by", "cost-center"]).output().expect("run");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--mapping"));
    let bad = env.ledger().args(["report", "chargeback", "--month", "2026-13"]).output().expect("run");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));

    // Reconcile: clean. Dead letters and resends are accounted for, not gaps.
    let out = env.ledger().arg("reconcile").output().expect("run reconcile");
    let text = stdout(&out);
    assert!(out.status.success(), "reconcile must pass on a clean run:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("PASS").count(), 5, "{text}");
    assert!(text.contains("Dead-lettered offsets"), "dead-lettered offsets are listed:\n{text}");
    assert!(text.contains("deduplicated"), "{text}");
    let out = env.ledger().args(["reconcile", "--format", "json"]).output().expect("run reconcile");
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["passed"], json!(true), "{doc}");
    assert_eq!(doc["gaps"]["count"], json!(0), "{doc}");
    assert_eq!(doc["checks"].as_array().map(Vec::len), Some(5), "{doc}");
    let dead = doc["dead_lettered"]["count"].as_u64().expect("count");
    let resends = doc["deduplicated_resends"].as_u64().expect("resends");
    // Offsets at the very start or end of a partition are outside the checked span.
    assert!(dead > 0 && dead <= sent.invalid, "dead-lettered offsets inside the spans: {dead} of {}", sent.invalid);
    assert!(resends > 0 && resends <= sent.duplicates, "resends inside the spans: {resends} of {}", sent.duplicates);

    // The chart: a well-formed SVG naming every team (and the spend without one).
    let chart = std::env::temp_dir().join(format!("ledger-finance-{}.svg", random_suffix()));
    env.run_ledger(&["report", "spend", "--chart", chart.to_str().expect("utf-8 path")]);
    let svg = std::fs::read_to_string(&chart).expect("the chart was written");
    let _ = std::fs::remove_file(&chart);
    assert_well_formed_svg(&svg);
    let client = env.clickhouse.client().expect("client");
    let teams = client
        .query(&format!("SELECT DISTINCT team FROM {}.usage_ledger", env.clickhouse.database))
        .fetch_all::<String>()
        .await
        .expect("teams");
    assert!(teams.len() >= 7, "5 synthetic teams, skunkworks and none: {teams:?}");
    for team in &teams {
        let name = if team.is_empty() { "(no team)" } else { team.as_str() };
        assert!(svg.contains(&format!("· {name}: ")), "the chart shows team {name}");
    }
    assert!(svg.contains(&format!("total {} USD", Money::from_picos(all_cost))), "exact total in the chart");

    // Every documented query runs on this server against the ledger's data.
    let sql_dir = workspace_root().join("docs/sql");
    let mut files: Vec<_> = std::fs::read_dir(&sql_dir)
        .expect("docs/sql")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the documented queries: {files:?}");
    let mut results = BTreeMap::new();
    for file in &files {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(format!("{}/?database={}", env.clickhouse.url.trim_end_matches('/'), env.clickhouse.database))
            .output()
            .expect("curl");
        let body = stdout(&out);
        let (rows, status) = body.trim_end().rsplit_once('\n').unwrap_or(("", body.trim()));
        let name = file.file_name().expect("name").to_string_lossy().into_owned();
        assert_eq!(status, "200", "{name} failed on ClickHouse:\n{rows}");
        assert!(!rows.trim().is_empty(), "{name} returned no rows on a ledger with data");
        results.insert(name, rows.to_owned());
    }
    // Spot checks of the numbers: rerouting saved money on the 4 routed events; the cost per
    // 1,000 requests of all features weighs back to the ledger's total.
    let reroute = &results["reroute_savings.sql"];
    assert!(reroute.contains("gpt-4o\tgpt-4o-mini\t4\t"), "{reroute}");
    let cache = &results["cache_savings.sql"];
    assert!(cache.lines().count() > 0, "{cache}");
    let by_feature = &results["cost_per_1k_requests_by_feature.sql"];
    let spend_sum: i128 =
        by_feature.lines().map(|l| l.split('\t').nth(4).expect("spend_usd").parse::<Money>().expect("exact").picos()).sum();
    assert_eq!(spend_sum, all_cost, "feature spend adds up to the ledger");

    // The views of migration 0003 answer the same questions, exactly.
    let query = |sql: &str| -> String {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--data-binary", sql])
            .arg(format!("{}/?database={}", env.clickhouse.url.trim_end_matches('/'), env.clickhouse.database))
            .output()
            .expect("curl");
        let body = stdout(&out);
        let (rows, status) = body.trim_end().rsplit_once('\n').unwrap_or(("", body.trim()));
        assert_eq!(status, "200", "{sql} failed on ClickHouse:\n{rows}");
        rows.trim().to_owned()
    };
    let picos = |text: &str| text.parse::<Money>().unwrap_or_else(|e| panic!("{text:?}: {e}")).picos();
    assert_eq!(picos(&query("SELECT sum(spend_usd) FROM spend_by_day")), all_cost, "spend_by_day");
    assert_eq!(picos(&query("SELECT sum(spend_usd) FROM cost_by_feature_by_day")), all_cost, "cost_by_feature_by_day");
    let reroutes = query("SELECT sum(rerouted_requests), sum(saved_usd) FROM reroute_savings_by_day");
    let (count, saved) = reroutes.split_once('\t').expect("two columns");
    let ledger_saved = query("SELECT sum(savings_usd) FROM usage_ledger");
    assert_eq!((count, picos(saved)), ("4", picos(&ledger_saved)), "reroute_savings_by_day");
    let cache_view = picos(&query("SELECT sum(saved_usd) FROM cache_savings_by_day"));
    let cache_doc: i128 = cache.lines().map(|l| picos(l.split('\t').nth(6).expect("saved_usd"))).sum();
    assert_eq!(cache_view, cache_doc, "cache_savings_by_day agrees with docs/sql/cache_savings.sql");
    assert!(cache_view > 0, "the synthetic load reads from caches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_fails_on_a_duplicate_row_and_on_a_removed_row() {
    let env = TestEnv::new("reconcile");
    env.run_ledger(&["migrate"]);
    produce_synthetic(&env, 300, 3, 0, 0).await;
    env.run_ledger(&["process", "--until-drained"]);
    let db = env.clickhouse.database.clone();
    let client = env.clickhouse.client().expect("client");
    let out = env.ledger().arg("reconcile").output().expect("run");
    assert!(out.status.success(), "clean ledger passes:\n{}", stdout(&out));

    // Two rows in the middle of partition 0's offsets: one to copy, one to remove.
    let offsets = client
        .query(&format!("SELECT kafka_offset FROM {db}.usage_ledger WHERE kafka_partition = 0 ORDER BY kafka_offset"))
        .fetch_all::<i64>()
        .await
        .expect("offsets");
    assert!(offsets.len() >= 10, "partition 0 has rows: {}", offsets.len());
    let (copied, removed) = (offsets[offsets.len() / 3], offsets[offsets.len() / 2]);
    let topic = &env.topics.usage;

    // A duplicate row: the rollups follow (the views see the insert), the offset check does not.
    client
        .query(&format!(
            "INSERT INTO {db}.usage_ledger SELECT * FROM {db}.usage_ledger WHERE kafka_partition = 0 AND kafka_offset = {copied}"
        ))
        .execute()
        .await
        .expect("inject a duplicate");
    let out = env.ledger().arg("reconcile").output().expect("run");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "a duplicate fails reconciliation:\n{text}");
    assert!(text.contains("Duplicate offsets") && text.contains(&format!("{topic}/0/{copied}: 2 rows")), "{text}");
    assert_eq!(text.matches("PASS").count(), 4, "only the duplicate check fails:\n{text}");

    // A removed row: a gap in the offsets, and the rollups no longer match the ledger.
    client
        .query(&format!("ALTER TABLE {db}.usage_ledger DELETE WHERE kafka_partition = 0 AND kafka_offset = {removed}"))
        .execute()
        .await
        .expect("delete a row");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = client
            .query(&format!("SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0"))
            .fetch_one::<u64>()
            .await
            .expect("mutations");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the DELETE mutation did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = env.ledger().arg("reconcile").output().expect("run");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "a removed row fails reconciliation:\n{text}");
    assert!(text.contains("Offset gaps") && text.contains(&format!("{topic}/0/{removed}: event ")), "{text}");
    assert!(text.contains("neither in the ledger nor dead-lettered"), "{text}");
    let out = env.ledger().args(["reconcile", "--format", "json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((doc["passed"].clone(), doc["gaps"]["count"].clone()), (json!(false), json!(1)), "{doc}");
    assert!(doc["gaps"]["listed"][0].as_str().unwrap_or("").starts_with(&format!("{topic}/0/{removed}:")), "{doc}");
    assert_eq!(doc["duplicate_offsets"]["count"], json!(1), "{doc}");
    for rollup in ["usage_rollup_minute", "usage_rollup_hour", "usage_rollup_day"] {
        let line = text.lines().find(|l| l.contains(&format!("{rollup} = ledger"))).expect("rollup line");
        assert!(line.contains("FAIL") && line.contains("request_count"), "{line}");
    }
}

/// Checks that `svg` is one well-formed `<svg>` element: tags balance, attribute values are
/// quoted, and text has no bare `<` or unescaped `&`.
fn assert_well_formed_svg(svg: &str) {
    let body = svg.trim();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").expect("XML declaration ends") + 2..],
        None => body,
    };
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start]);
        let end = rest[start..].find('>').expect("tag closes") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "closing tag matches");
        } else {
            let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
            assert!(!name.is_empty(), "tag name in <{tag}>");
            assert_eq!(tag.matches('"').count() % 2, 0, "attribute quotes balance in <{tag}>");
            if stack.is_empty() {
                roots += 1;
                assert_eq!(name, "svg", "the root is <svg>");
                assert!(tag.contains("xmlns=\"http://www.w3.org/2000/svg\""), "SVG namespace");
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    assert_eq!(roots, 1, "exactly one root element");
    let names: BTreeSet<&str> = ["rect", "title", "text"].into();
    for n in names {
        assert!(svg.contains(&format!("<{n}")), "the chart has <{n}> elements");
    }
}

fn check_text(text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        let entity = &rest[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| entity.starts_with(e)),
            "unescaped & in text: {text}"
        );
        rest = &rest[i + 1..];
    }
}
