//! Integration tests against a real ClickHouse server (18.16 in CI, any current release too).
//!
//! Server: `LEDGER_TEST_CLICKHOUSE_URL` (default `http://127.0.0.1:8123`, start one with
//! `ledger stack up`). When it is unreachable the tests FAIL, they do not skip. Each test works in
//! its own database `ledger_test_<random hex>` and drops it at the end, pass or fail.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledger_clickhouse::clickhouse::{self, Compression};
use ledger_clickhouse::{
    ClickHouseConfig, Dimension, Error, ErrorKind, LedgerReader, LedgerRow, LedgerWriter, Lineage, Migration, MigrationStatus,
    Migrator, Rollup, SpendRow, TableTotals, MIGRATIONS,
};
use ledger_core::pricing::{CostTerms, PricedUsage};
use ledger_core::{Money, UsageEvent};

const TOPIC: &str = "llm.usage.v1";

fn server_url() -> String {
    std::env::var("LEDGER_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

fn config(database: &str) -> ClickHouseConfig {
    ClickHouseConfig::new(server_url(), database)
}

/// Runs `body` with a fresh, migrated database; drops the database afterwards, even on failure.
async fn with_database<F, Fut>(migrate: bool, body: F)
where
    F: FnOnce(clickhouse::Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let database = format!("ledger_test_{:016x}", rand::random::<u64>());
    let client = config(&database).client().unwrap();
    if let Err(e) = client.query("SELECT 1").fetch_one::<u8>().await {
        panic!(
            "ClickHouse is not reachable at {} ({e}). Start it with `ledger stack up` or point \
             LEDGER_TEST_CLICKHOUSE_URL at a server; these tests need a real ClickHouse.",
            server_url()
        );
    }
    if migrate {
        Migrator::new(&database).unwrap().migrate(&client).await.expect("migrations apply");
    }
    let result = tokio::spawn(body(client.clone(), database.clone())).await;
    client.query_raw(&format!("DROP DATABASE IF EXISTS {database}")).execute().await.expect("drop the test database");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct Spec<'a> {
    tenant: &'a str,
    model: &'a str,
    event_time: &'a str,
    /// (input term, output term): the cost is their sum.
    terms: (&'a str, &'a str),
    partition: i32,
    offset: i64,
    ingest: &'a str,
}

/// A 1 USD row of tenant `acme`, model `m`, on May 1st 2026, at `offset` of `partition`.
fn acme_row(partition: i32, offset: i64) -> LedgerRow {
    let at = "2026-05-01T00:00:00Z";
    row(&Spec { tenant: "acme", model: "m", event_time: at, terms: ("1", "0"), partition, offset, ingest: at })
}

fn row(s: &Spec<'_>) -> LedgerRow {
    let mut event: UsageEvent = serde_json::from_value(serde_json::json!({
        "event_id": format!("ev-{}-{}", s.partition, s.offset),
        "event_time": s.event_time,
        "tenant_id": s.tenant,
        "provider": "openai",
        "request_model": s.model,
        "input_tokens": 1000 + s.offset,
        "cache_read_input_tokens": 10,
        "output_tokens": 100,
        "reasoning_output_tokens": 7,
    }))
    .unwrap();
    event.tags = BTreeMap::from([("env".to_owned(), "test".to_owned()), ("app".to_owned(), "it".to_owned())]);
    let terms = CostTerms { input: money(s.terms.0), output: money(s.terms.1), ..CostTerms::default() };
    let priced: PricedUsage = PricedUsage {
        model: Arc::from(s.model),
        price_version: Arc::from("litellm-1.110.2@2026-01-01T00:00:00Z"),
        override_version: None,
        alias_of: None,
        terms,
        cost: terms.total().unwrap(),
        routed_from: None,
    };
    let lineage = Lineage { topic: TOPIC.to_owned(), partition: s.partition, offset: s.offset };
    LedgerRow::new(&event, &priced, lineage, utc(s.ingest)).unwrap()
}

async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query_raw(sql).fetch_one::<u64>().await.unwrap()
}

#[tokio::test]
async fn migrations_apply_then_reapply_idempotently_and_detect_edits() {
    with_database(false, |client, db| async move {
        // The database does not exist yet: the migrator creates it.
        let exists = count(&client, &format!("SELECT count() FROM system.databases WHERE name = '{db}'")).await;
        assert_eq!(exists, 0);
        let migrator = Migrator::new(&db).unwrap();
        let first = migrator.migrate(&client).await.unwrap();
        let every: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(every, vec![1, 2, 3, 4, 5]);
        assert_eq!(first.applied(), every);
        assert!(first.already_applied().is_empty());
        let second = migrator.migrate(&client).await.unwrap();
        assert!(second.applied().is_empty());
        assert_eq!(second.already_applied(), every);
        assert!(second.outcomes.iter().all(|o| o.status == MigrationStatus::AlreadyApplied));

        let tables = client
            .query_raw(&format!("SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name"))
            .fetch_all::<String>()
            .await
            .unwrap();
        for t in [
            "schema_migrations",
            "usage_ledger",
            "usage_rollup_day",
            "usage_rollup_day_mv",
            "usage_rollup_hour",
            "usage_rollup_hour_mv",
            "usage_rollup_minute",
            "usage_rollup_minute_mv",
            "spend_by_day",
            "reroute_savings_by_day",
            "cost_by_feature_by_day",
            "cache_savings_by_day",
            "chargeback_closes",
            "chargeback_close_lines",
            "price_corrections",
        ] {
            assert!(tables.iter().any(|x| x == t), "missing table {t} in {tables:?}");
        }
        let applied = migrator.applied(&client).await.unwrap();
        assert_eq!(applied.len(), MIGRATIONS.len());
        assert_eq!(applied[0].checksum, MIGRATIONS[0].checksum());
        assert!(applied[1].applied_at_utc() <= Utc::now());

        // An applied migration whose text changed is a clear, fatal error.
        let edited = format!("{}\n-- edited\n", MIGRATIONS[1].sql);
        let mut migrations = MIGRATIONS.to_vec();
        migrations[1] = Migration { sql: Box::leak(edited.into_boxed_str()), ..MIGRATIONS[1] };
        let err = Migrator::with_migrations(&db, migrations).unwrap().migrate(&client).await.unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { version: 2, .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert!(err.to_string().contains("was changed after it was applied"), "{err}");

        // A database ahead of the binary is refused.
        let err = Migrator::with_migrations(&db, MIGRATIONS[..1].to_vec()).unwrap().migrate(&client).await.unwrap_err();
        assert!(matches!(err, Error::UnknownMigration { version: 2, .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn ledger_and_every_rollup_sum_exactly() {
    with_database(true, |client, db| async move {
        let writer = LedgerWriter::new(client.clone(), &db).unwrap();
        let ingest = "2026-03-31T23:59:59Z";
        let p0 = [
            // acme / gpt-4o: a cost with all 12 fractional digits, and one near 10^15 USD.
            Spec { tenant: "acme", model: "gpt-4o", event_time: "2026-03-01T10:00:01.5Z", terms: ("0.123456789012", "0"), partition: 0, offset: 10, ingest },
            Spec { tenant: "acme", model: "gpt-4o", event_time: "2026-03-01T10:00:59Z", terms: ("999999999999999.000000000001", "0.999999999998"), partition: 0, offset: 11, ingest },
            // same day, another hour
            Spec { tenant: "acme", model: "gpt-4o", event_time: "2026-03-01T11:30:00Z", terms: ("1.000000000001", "0.499999999999"), partition: 0, offset: 12, ingest },
        ];
        let p1 = [
            // another tenant and model, another day and month (event time), same ingest month
            Spec { tenant: "globex", model: "claude-sonnet-4", event_time: "2026-02-28T23:59:59Z", terms: ("0.000000000001", "0"), partition: 1, offset: 5, ingest },
            Spec { tenant: "acme", model: "o3", event_time: "2026-03-02T00:00:00Z", terms: ("2", "3.000000000009"), partition: 1, offset: 6, ingest },
        ];
        let rows0: Vec<LedgerRow> = p0.iter().map(row).collect();
        let rows1: Vec<LedgerRow> = p1.iter().map(row).collect();
        writer.insert_batch(&rows0).await.unwrap();
        writer.insert_batch(&rows1).await.unwrap();

        // Hand-computed:
        //   acme/gpt-4o = 0.123456789012 + 999999999999999.999999999999 + 1.500000000000
        //               = 1000000000000001.623456789011
        //   acme/o3     = 5.000000000009
        //   globex/...  = 0.000000000001
        //   total       = 1000000000000006.623456789021
        let total = money("1000000000000006.623456789021");
        let expected = TableTotals { requests: 5, cost: total };
        let reader = LedgerReader::new(client.clone(), &db).unwrap();
        let totals = reader.ledger_totals().await.unwrap();
        assert_eq!(totals.ledger, expected);
        assert_eq!(totals.rollups.len(), 3);
        for (rollup, t) in &totals.rollups {
            assert_eq!(*t, expected, "{rollup:?}");
        }
        assert!(totals.is_consistent());

        // Every column round-trips through RowBinary, the sub-second part and the tags included.
        let back = client
            .query(&format!("SELECT ?fields FROM {db}.usage_ledger ORDER BY kafka_partition, kafka_offset"))
            .fetch_all::<LedgerRow>()
            .await
            .unwrap();
        let mut sent = rows0.clone();
        sent.extend(rows1.clone());
        assert_eq!(back, sent);
        assert_eq!(back[0].event_time_micros, 500_000);
        assert_eq!(back[0].tag_keys, vec!["app", "env"]);

        // Bucket counts: 3 distinct minutes (10:00, 11:30, and two other days), hours, days.
        let buckets = |r: Rollup| format!("SELECT count() FROM (SELECT bucket, tenant_id, model FROM {db}.{} GROUP BY bucket, tenant_id, model)", r.table());
        assert_eq!(count(&client, &buckets(Rollup::Minute)).await, 4);
        assert_eq!(count(&client, &buckets(Rollup::Hour)).await, 4);
        assert_eq!(count(&client, &buckets(Rollup::Day)).await, 3);
        let day_cost = client
            .query_raw(&format!(
                "SELECT sum(cost_usd) FROM {db}.usage_rollup_day WHERE tenant_id = 'acme' AND model = 'gpt-4o' AND bucket = toDateTime('2026-03-01 00:00:00', 'UTC')"
            ))
            .fetch_one::<i128>()
            .await
            .unwrap();
        assert_eq!(Money::from_picos(day_cost), money("1000000000000001.623456789011"));

        // Forcing the SummingMergeTree merges changes nothing: sums stay exact.
        for r in Rollup::ALL {
            client.query_raw(&format!("OPTIMIZE TABLE {db}.{} FINAL", r.table())).execute().await.unwrap();
        }
        assert_eq!(reader.ledger_totals().await.unwrap().rollups.iter().map(|x| x.1).collect::<Vec<_>>(), vec![expected; 3]);
        let merged_rows = count(&client, &format!("SELECT count() FROM {db}.usage_rollup_day")).await;
        assert_eq!(merged_rows, 3);

        // Spend report: March by tenant and model (day rollup), then an hour range (hour rollup).
        let march = reader.spend_by_tenant_model(utc("2026-03-01T00:00:00Z"), utc("2026-04-01T00:00:00Z")).await.unwrap();
        assert_eq!(
            march,
            vec![
                SpendRow { tenant_id: "acme".into(), model: "gpt-4o".into(), requests: 3, input_tokens: 1010 + 1011 + 1012, output_tokens: 300, cost: money("1000000000000001.623456789011") },
                SpendRow { tenant_id: "acme".into(), model: "o3".into(), requests: 1, input_tokens: 1006, output_tokens: 100, cost: money("5.000000000009") },
            ]
        );
        let hour = reader.spend_by_tenant_model(utc("2026-03-01T11:00:00Z"), utc("2026-03-01T12:00:00Z")).await.unwrap();
        assert_eq!(hour.len(), 1);
        assert_eq!(hour[0].cost, money("1.500000000000"));
        let all = reader.spend(utc("1970-01-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"), &[]).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cost, total);
        assert_eq!(all[0].requests, 5);
        let by_tenant = reader.spend(utc("1970-01-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"), &[Dimension::Tenant]).await.unwrap();
        assert_eq!(by_tenant.iter().map(|r| (r.keys[0].as_str(), r.cost)).collect::<Vec<_>>(), vec![("acme", money("1000000000000006.623456789020")), ("globex", money("0.000000000001"))]);
        let empty = reader.spend_by_tenant_model(utc("2020-01-01T00:00:00Z"), utc("2020-02-01T00:00:00Z")).await.unwrap();
        assert!(empty.is_empty());

        // Recent event ids of one partition, for the dedupe state.
        let mut ids = writer.recent_event_ids(TOPIC, 0, utc("2026-03-31T00:00:00Z")).await.unwrap();
        ids.sort();
        assert_eq!(ids, vec!["ev-0-10", "ev-0-11", "ev-0-12"]);
        assert!(writer.recent_event_ids(TOPIC, 0, utc("2026-04-01T00:00:00Z")).await.unwrap().is_empty());
        assert!(writer.recent_event_ids("other", 0, utc("2026-01-01T00:00:00Z")).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn high_watermarks_are_max_offset_per_partition() {
    with_database(true, |client, db| async move {
        let writer = LedgerWriter::new(client.clone(), &db).unwrap();
        assert!(writer.high_watermarks(TOPIC).await.unwrap().is_empty());
        // Offsets need not be contiguous (rejected events go to the dead-letter topic).
        writer.insert_batch(&[acme_row(0, 5), acme_row(0, 6), acme_row(0, 9)]).await.unwrap();
        writer.insert_batch(&[acme_row(1, 100)]).await.unwrap();
        writer.insert_batch(&[acme_row(0, 10), acme_row(0, 11)]).await.unwrap();
        let mut other = acme_row(2, 7777);
        other.kafka_topic = "another.topic".into();
        writer.insert_batch(&[other]).await.unwrap();
        writer.insert_batch(&[]).await.unwrap(); // no-op

        assert_eq!(writer.high_watermarks(TOPIC).await.unwrap(), HashMap::from([(0, 11), (1, 100)]));
        assert_eq!(writer.high_watermarks("another.topic").await.unwrap(), HashMap::from([(2, 7777)]));
        assert!(writer.high_watermarks("x' OR '1'='1").await.unwrap().is_empty()); // bound, not spliced

        // The same through an uncompressed client: both transports work on the server.
        let plain = LedgerWriter::new(client.clone().with_compression(Compression::None), &db).unwrap();
        plain.insert_batch(&[acme_row(1, 101)]).await.unwrap();
        assert_eq!(plain.high_watermarks(TOPIC).await.unwrap()[&1], 101);
    })
    .await;
}

#[tokio::test]
async fn batches_breaking_the_fence_preconditions_are_refused_and_not_written() {
    with_database(true, |client, db| async move {
        let writer = LedgerWriter::new(client.clone(), &db).unwrap();
        let mut other_topic = acme_row(0, 2);
        other_topic.kafka_topic = "other".into();
        let mut other_ingest = acme_row(0, 2);
        other_ingest.ingest_time += 1;
        let bad: Vec<(&str, Vec<LedgerRow>)> = vec![
            ("two partitions", vec![acme_row(0, 1), acme_row(1, 2)]),
            ("two topics", vec![acme_row(0, 1), other_topic]),
            ("repeated offset", vec![acme_row(0, 1), acme_row(0, 1)]),
            ("decreasing offsets", vec![acme_row(0, 2), acme_row(0, 1)]),
            ("two ingest times", vec![acme_row(0, 1), other_ingest]),
        ];
        for (what, rows) in bad {
            let err = writer.insert_batch(&rows).await.unwrap_err();
            assert!(matches!(err, Error::InvalidBatch(_)), "{what}: {err}");
            assert!(!err.is_retryable(), "{what}");
        }
        let too_many: Vec<LedgerRow> = (0..=ledger_clickhouse::MAX_BATCH_ROWS as i64).map(|o| acme_row(0, o)).collect();
        assert!(matches!(LedgerWriter::check_batch(&too_many), Err(Error::InvalidBatch(_))));
        assert_eq!(count(&client, &format!("SELECT count() FROM {db}.usage_ledger")).await, 0);
    })
    .await;
}

#[tokio::test]
async fn decimal_extremes_round_trip_exactly() {
    with_database(true, |client, db| async move {
        // Decimal(38, 12) holds |raw| <= 10^38 - 1.
        let max = 10i128.pow(38) - 1;
        let values = [max, -max, 1, -1, 0, 123_456_789_012_345_678_901_234_567_890_123_456_i128, i128::from(i64::MAX)];
        let ingest = "2026-06-01T00:00:00Z";
        let mut rows = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut r = row(&Spec {
                tenant: &format!("t{i}"),
                model: "m",
                event_time: "2026-06-01T00:00:00Z",
                terms: ("0", "0"),
                partition: 0,
                offset: i as i64,
                ingest,
            });
            r.cost_usd = *v;
            r.output_cost_usd = *v;
            r.provided_cost_usd = Some(-*v);
            r.routed_from_cost_usd = Some(*v);
            r.savings_usd = *v;
            rows.push(r);
        }
        rows[4].provided_cost_usd = None;
        LedgerWriter::new(client.clone(), &db).unwrap().insert_batch(&rows).await.unwrap();
        let back = client
            .query(&format!("SELECT ?fields FROM {db}.usage_ledger ORDER BY kafka_offset"))
            .fetch_all::<LedgerRow>()
            .await
            .unwrap();
        assert_eq!(back, rows);
        // ClickHouse's own text form of each value is exactly Money's.
        let text = client
            .query_raw(&format!("SELECT cost_usd FROM {db}.usage_ledger ORDER BY kafka_offset"))
            .fetch_bytes("TabSeparated")
            .unwrap()
            .collect()
            .await
            .unwrap();
        let parsed: Vec<i128> =
            std::str::from_utf8(&text).unwrap().lines().map(|l| l.parse::<Money>().unwrap().picos()).collect();
        assert_eq!(parsed, values.to_vec());
        let max_text = Money::from_picos(max).to_string();
        assert_eq!(max_text, "99999999999999999999999999.999999999999");
        // A literal parsed by the server arrives as the same i128.
        let v = client
            .query_raw("SELECT toDecimal128('-99999999999999999999999999.999999999999', 12)")
            .fetch_one::<i128>()
            .await
            .unwrap();
        assert_eq!(v, -max);
        // Rollups sum per key; each tenant has one row, so each sum is the value itself.
        let day: Vec<i128> = client
            .query_raw(&format!("SELECT sum(cost_usd) FROM {db}.usage_rollup_day GROUP BY tenant_id ORDER BY tenant_id"))
            .fetch_all::<i128>()
            .await
            .unwrap();
        assert_eq!(day, values.to_vec());
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_connection_error() {
    let client = ClickHouseConfig::new("http://127.0.0.1:1", "ledger").client().unwrap();
    let err = Migrator::new("ledger").unwrap().migrate(&client).await.unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(err.is_retryable());
    // A bad statement is fatal.
    let database = format!("ledger_test_{:016x}", rand::random::<u64>());
    let client = config(&database).client().unwrap();
    let err = LedgerReader::new(client, &database).unwrap().ledger_totals().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal, "{err}"); // unknown database
}

/// The processor's encoder ([`LedgerBatch`]) and the serde row ([`LedgerRow`]) must write the
/// same rows: every optional column empty and filled, tags, routing savings, extreme values.
#[tokio::test]
async fn encoded_batch_reads_back_as_ledger_rows() {
    with_database(true, |client, db| async move {
        let full: UsageEvent = serde_json::from_value(serde_json::json!({
            "event_id": "ev-full",
            "event_time": "2026-03-01T10:00:01.123456Z",
            "tenant_id": "acme",
            "team": "search", "project": "ranker", "user_id": "u-7", "api_key_id": "key-1",
            "feature": "summaries", "environment": "prod",
            "tags": {"zone": "eu", "app": "it", "ünïcode": "✓"},
            "provider": "anthropic", "operation": "chat",
            "request_model": "claude-haiku-4-5", "response_model": "claude-haiku-4-5-20251001",
            "routed_from_model": "claude-opus-4-1",
            "input_tokens": 9_007_199_254_740_993_i64, "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 4, "cache_creation_1h_input_tokens": 5,
            "output_tokens": 6, "reasoning_output_tokens": 2,
            "service_tier": "priority", "provided_cost_usd": "-0.000000000001",
            "latency_ms": -1, "status": "error", "response_id": "resp-1", "trace_id": "trace-1",
        }))
        .unwrap();
        let bare: UsageEvent = serde_json::from_value(serde_json::json!({
            "event_id": "ev-bare",
            "event_time": "2106-02-07T06:28:15Z",
            "tenant_id": "",
            "provider": "openai",
            "request_model": "gpt-4o-mini",
        }))
        .unwrap();
        let terms = CostTerms {
            input: money("99999999999999999999999999.999999999999"),
            cache_read: money("0.000000000001"),
            cache_write: money("1"),
            cache_write_1h: money("2.5"),
            output: money("0"),
            reasoning: money("0.333333333333"),
        };
        let rerouted: PricedUsage = PricedUsage {
            model: Arc::from("claude-haiku-4-5"),
            price_version: Arc::from("litellm@2026-01-01T00:00:00Z"),
            override_version: None,
            alias_of: None,
            terms,
            cost: terms.total().unwrap(),
            routed_from: Some(ledger_core::pricing::RoutedFromCost {
                model: Arc::from("claude-opus-4-1"),
                cost: money("123.456"),
                savings: money("-7.000000000001"),
            }),
        };
        let plain = PricedUsage { routed_from: None, ..rerouted.clone() };
        let ingest = utc("2026-03-31T23:59:59Z");

        let mut batch = ledger_clickhouse::LedgerBatch::new(TOPIC, 3, ingest).unwrap();
        let cases = [(&full, &rerouted, 41), (&bare, &plain, 42), (&full, &plain, 1_000_000_007)];
        for (event, priced, offset) in cases {
            batch.push(&event.as_view(), priced, offset).unwrap();
        }
        // Nothing is appended on an error: an offset going back, an event time out of range.
        assert!(batch.push(&full.as_view(), &plain, 5).is_err());
        let mut too_late = bare.clone();
        too_late.event_time = utc("2106-02-07T06:28:16Z");
        assert!(batch.push(&too_late.as_view(), &plain, 1_000_000_008).is_err());
        let span = batch.span();
        assert_eq!((span.len(), span.first_offset(), span.last_offset()), (3, 41, 1_000_000_007));

        // A second partition's batch in the same insert: its array offsets and null maps
        // continue the first batch's in the one block.
        let mut other = ledger_clickhouse::LedgerBatch::new(TOPIC, 4, ingest).unwrap();
        let other_cases = [(&bare, &plain, 7), (&full, &rerouted, 8), (&bare, &rerouted, 9)];
        for (event, priced, offset) in other_cases {
            other.push(&event.as_view(), priced, offset).unwrap();
        }

        let writer = LedgerWriter::new(client.clone(), &db).unwrap();
        writer.insert_encoded(&[batch.seal(), other.seal()]).await.unwrap();

        let got = client
            .query(&format!("SELECT ?fields FROM {db}.usage_ledger ORDER BY kafka_partition, kafka_offset"))
            .fetch_all::<LedgerRow>()
            .await
            .unwrap();
        let want: Vec<LedgerRow> = [(3, &cases), (4, &other_cases)]
            .into_iter()
            .flat_map(|(partition, cases)| cases.iter().map(move |c| (partition, c)))
            .map(|(partition, (event, priced, offset))| {
                let lineage = Lineage { topic: TOPIC.to_owned(), partition, offset: *offset };
                LedgerRow::new(event, priced, lineage, ingest).unwrap()
            })
            .collect();
        assert_eq!(got, want);
    })
    .await;
}

/// The columns and types the processor's `Native` inserts declare are the migrated table's.
#[tokio::test]
async fn native_columns_match_the_migrated_ledger() {
    with_database(true, |client, db| async move {
        let mut table: Vec<(String, String)> = client
            .query("SELECT name, type FROM system.columns WHERE database = ? AND table = 'usage_ledger'")
            .bind(db.as_str())
            .fetch_all()
            .await
            .unwrap();
        let mut encoded: Vec<(String, String)> =
            ledger_clickhouse::native_columns().map(|(n, t)| (n.to_owned(), t.to_owned())).collect();
        table.sort();
        encoded.sort();
        assert_eq!(encoded, table);
    })
    .await;
}

/// An insert larger than its send chunks (columns of over 1 MB, sliced, and small ones gathered),
/// LZ4-compressed, reads back whole: every row, every tag, each partition's fence.
#[tokio::test]
async fn a_large_encoded_insert_reads_back_whole() {
    with_database(true, |client, db| async move {
        let priced: PricedUsage = PricedUsage {
            model: Arc::from("gpt-4o"),
            price_version: Arc::from("v@2026-01-01T00:00:00Z"),
            override_version: None,
            alias_of: None,
            terms: CostTerms { input: money("0.000000000007"), ..CostTerms::default() },
            cost: money("0.000000000007"),
            routed_from: None,
        };
        let ingest = utc("2026-03-01T00:00:00Z");
        let mut batches = Vec::new();
        for partition in 0..2 {
            let mut batch = ledger_clickhouse::LedgerBatch::new(TOPIC, partition, ingest).unwrap();
            for offset in 0..40_000i64 {
                let mut event: UsageEvent = serde_json::from_value(serde_json::json!({
                    "event_id": format!("large-insert-{partition}-{offset:020}"),
                    "event_time": "2026-02-28T23:00:00Z", "tenant_id": "acme",
                    "provider": "openai", "request_model": "gpt-4o", "input_tokens": offset,
                }))
                .unwrap();
                event.tags = (0..offset % 3).map(|t| (format!("k{t}"), format!("v{offset}"))).collect();
                batch.push(&event.as_view(), &priced, offset).unwrap();
            }
            batches.push(batch.seal());
        }
        // Compressed, as to a remote server: each chunk becomes one LZ4 block (the other tests
        // send to this loopback server uncompressed).
        let writer = LedgerWriter::new(client.clone().with_compression(Compression::Lz4), &db).unwrap();
        writer.insert_encoded(&batches).await.unwrap();

        let (rows, ids, tokens, tags, tagged_ok): (u64, u64, u64, u64, u64) = client
            .query(&format!(
                "SELECT count(), uniqExact(event_id), sum(input_tokens), sum(length(tag_keys)), \
                 countIf(length(tag_keys) = kafka_offset % 3 AND arrayAll(v -> v = concat('v', toString(kafka_offset)), tag_values)) \
                 FROM {db}.usage_ledger"
            ))
            .fetch_one()
            .await
            .unwrap();
        assert_eq!((rows, ids, tokens, tags, tagged_ok), (80_000, 80_000, 2 * 799_980_000, 2 * 39_999, 80_000));
        assert_eq!(writer.high_watermarks(TOPIC).await.unwrap(), HashMap::from([(0, 39_999), (1, 39_999)]));
    })
    .await;
}

/// One insert carries the batches of several Kafka partitions, even across an ingest month
/// (two parts): every row lands once, and each partition's fence is its last offset.
#[tokio::test]
async fn encoded_batches_of_several_partitions_go_in_one_insert() {
    with_database(true, |client, db| async move {
        let event = |id: &str| -> UsageEvent {
            serde_json::from_value(serde_json::json!({
                "event_id": id, "event_time": "2026-03-31T23:59:00Z", "tenant_id": "acme",
                "provider": "openai", "request_model": "gpt-4o", "input_tokens": 10,
            }))
            .unwrap()
        };
        let terms = CostTerms { input: money("0.000000000007"), ..CostTerms::default() };
        let priced: PricedUsage = PricedUsage {
            model: Arc::from("gpt-4o"),
            price_version: Arc::from("v@2026-01-01T00:00:00Z"),
            override_version: None,
            alias_of: None,
            terms,
            cost: terms.total().unwrap(),
            routed_from: None,
        };
        let mut march = ledger_clickhouse::LedgerBatch::new(TOPIC, 0, utc("2026-03-31T23:59:59Z")).unwrap();
        let mut april = ledger_clickhouse::LedgerBatch::new(TOPIC, 1, utc("2026-04-01T00:00:00Z")).unwrap();
        for offset in 0..5 {
            march.push(&event(&format!("m{offset}")).as_view(), &priced, offset).unwrap();
        }
        for offset in 100..103 {
            april.push(&event(&format!("a{offset}")).as_view(), &priced, offset).unwrap();
        }
        let writer = LedgerWriter::new(client.clone(), &db).unwrap();
        writer.insert_encoded(&[march.seal(), april.seal()]).await.unwrap();

        let fences = writer.high_watermarks(TOPIC).await.unwrap();
        assert_eq!(fences, HashMap::from([(0, 4), (1, 102)]));
        let months = count(&client, &format!("SELECT uniqExact(toYYYYMM(ingest_time)) FROM {db}.usage_ledger")).await;
        assert_eq!(months, 2);
        let totals = LedgerReader::new(client.clone(), &db).unwrap().ledger_totals().await.unwrap();
        let expected = TableTotals { requests: 8, cost: money("0.000000000056") };
        assert_eq!(totals.ledger, expected);
        for (rollup, t) in &totals.rollups {
            assert_eq!(*t, expected, "{rollup:?}");
        }
    })
    .await;
}
