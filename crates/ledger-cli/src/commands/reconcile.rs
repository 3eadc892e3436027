//! `ledger reconcile`: checks that the ledger, its rollups and its Kafka offsets agree.
//!
//! Checks, each printed as pass or fail:
//! 1. per rollup (minute, hour, day): every counter (requests, tokens, each cost term, savings,
//!    provided and routed sums and counts) equals the ledger's over the same buckets, exactly;
//! 2. no Kafka offset has more than one ledger row (a double insert);
//! 3. per source partition, every offset between the lowest and highest offset of the range's
//!    rows has a ledger row, or was dead-lettered (read from the dead-letter topic's source
//!    headers; listed), or is a resend the processor deduplicated (its `event_id`, read back
//!    from the usage topic, already has a ledger row at another offset). Anything else is a gap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::DateTime;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use ledger_clickhouse::reconcile::{self as rc, OffsetSpan};
use ledger_clickhouse::Rollup;
use ledger_core::UsageEvent;
use ledger_kafka::KafkaConfig;
use ledger_processor::dead_letter::DeadLetterRecord;

use super::migrate::{explain, ClickHouseArgs};
use super::report::parse_bound;

/// A read that makes no progress for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Metadata and watermark requests.
const META_TIMEOUT: Duration = Duration::from_secs(10);
/// Missing offsets read back from the usage topic at most (beyond: reported unverified).
const MAX_READBACK: u64 = 100_000;
/// Exit code when a check fails (errors exit with 1).
const EXIT_CHECK_FAILED: u8 = 2;

/// Arguments of `ledger reconcile`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger reconcile                                    # the whole ledger
  ledger reconcile --from 2026-11-01 --to 2026-11-30  # rows with event time in November (UTC)
  ledger reconcile --from 2026-11-28T10:00:00Z --to 2026-11-28T11:00:00Z --limit 100
  ledger reconcile --format json | jq .passed          # for cron jobs and alerts

Checks, each printed as pass or fail:
  rollup = ledger   every counter of usage_rollup_minute/_hour/_day equals the ledger's over the
                    same buckets (bounds are widened to whole buckets of each rollup)
  no duplicates     no Kafka topic/partition/offset has two ledger rows
  no offset gaps    between the lowest and highest offset of the range's rows, per partition,
                    every offset is in the ledger, dead-lettered (listed), or a resend the
                    processor deduplicated (its event_id is in the ledger at another offset)
Exit status: 0 when every check passes, 2 when one fails, 1 on errors (e.g. unreachable services).
Offsets below the lowest one of the range are not checked (narrow ranges see only their span).
Run it on closed ranges or with the processor caught up: rows written during the checks can
show up as differences.")]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Start (inclusive): a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time. Default: all data.
    #[arg(long, value_name = "T")]
    from: Option<String>,
    /// End: a date includes that whole day (UTC); an RFC 3339 time is exclusive. Default: all data.
    #[arg(long, value_name = "T")]
    to: Option<String>,
    /// Problems and dead-lettered offsets listed at most (per list).
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Output format of `ledger reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A pass/fail table, then the problems and dead-lettered offsets found.
    Table,
    /// One JSON document (checks, duplicates, gaps, dead-lettered offsets), for scripts.
    Json,
}

/// One line of the result table.
#[derive(Debug)]
struct Check {
    name: String,
    passed: bool,
    detail: String,
}

/// A dead letter's source position and reason.
#[derive(Debug, Clone)]
struct DeadLettered {
    reason: String,
    event_id: Option<String>,
}

/// Missing offsets of one partition after the dead letters are taken out.
#[derive(Debug, Default)]
struct Unexplained {
    /// `(offset, event_id)` of resends the ledger holds at another offset.
    resends: Vec<(i64, String)>,
    /// `(offset, what)` of real gaps.
    gaps: Vec<(i64, String)>,
}

pub(crate) async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let from = match &args.from {
        Some(s) => parse_bound(s, false)?,
        None => DateTime::from_timestamp(0, 0).context("epoch")?,
    };
    let to = match &args.to {
        Some(s) => parse_bound(s, true)?,
        None => parse_bound("2106-01-01", false)?,
    };
    anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
    let full = args.clickhouse.config.load()?;
    let config = args.clickhouse.config()?;
    let client = config.client().context("invalid ClickHouse settings")?;
    let db = config.database.clone();
    let range = match (&args.from, &args.to) {
        (None, None) => "all time".to_owned(),
        _ => format!("{} .. {}", from.format("%Y-%m-%d %H:%M:%S UTC"), to.format("%Y-%m-%d %H:%M:%S UTC")),
    };
    let bar = progress(5, "reconciling");
    let mut checks = Vec::new();

    // 1. Rollups against the ledger.
    for rollup in Rollup::ALL {
        bar.set_message(format!("summing the ledger and {}", rollup.table()));
        let cmp = rc::compare_rollup(&client, &db, rollup, from, to).await.map_err(|e| explain(e, &config.url))?;
        let detail = if cmp.matches() {
            format!(
                "{} requests, {} USD, all {} counters equal",
                cmp.ledger.request_count,
                cmp.ledger.cost_usd,
                cmp.ledger.fields().len()
            )
        } else {
            let diffs: Vec<String> = cmp
                .ledger
                .differences(&cmp.rollup_counters)
                .into_iter()
                .map(|(name, l, r)| format!("{name}: ledger {l}, rollup {r}"))
                .collect();
            format!("differs: {}", diffs.join("; "))
        };
        checks.push(Check { name: format!("{} = ledger", rollup.table()), passed: cmp.matches(), detail });
        bar.inc(1);
    }

    // 2. Duplicate offsets.
    bar.set_message("looking for duplicate offsets");
    let limit = u64::try_from(args.limit.max(1)).unwrap_or(20);
    let duplicates =
        rc::duplicate_offsets(&client, &db, from, to, limit + 1).await.map_err(|e| explain(e, &config.url))?;
    let spans = rc::offset_spans(&client, &db, from, to).await.map_err(|e| explain(e, &config.url))?;
    let extra_rows: u64 = spans.iter().map(|s| s.rows - s.distinct_offsets).sum();
    checks.push(Check {
        name: "no duplicate offsets".into(),
        passed: duplicates.is_empty(),
        detail: if duplicates.is_empty() {
            format!("{} rows, each at its own offset", spans.iter().map(|s| s.rows).sum::<u64>())
        } else {
            format!("{extra_rows} extra rows at already-used offsets (listed below)")
        },
    });
    bar.inc(1);

    // 3. Offset gaps: ledger, then dead letters, then resends read back from the usage topic.
    bar.set_message("finding missing offsets");
    let mut missing: BTreeMap<(String, i32), Vec<(i64, i64)>> = BTreeMap::new();
    for span in spans.iter().filter(|s| !s.is_contiguous()) {
        let present = rc::offsets_in_span(&client, &db, &span.topic, span.partition, span.min_offset, span.max_offset)
            .await
            .map_err(|e| explain(e, &config.url))?;
        missing.insert((span.topic.clone(), span.partition), rc::missing_ranges(&present, span.min_offset, span.max_offset));
    }
    bar.inc(1);
    bar.set_message(format!("reading dead letters from {}", full.topics.dead_letter));
    let kafka = full.kafka.clone();
    let dlq_topic = full.topics.dead_letter.clone();
    let span_keys: Vec<(String, i32, i64, i64)> =
        spans.iter().map(|s| (s.topic.clone(), s.partition, s.min_offset, s.max_offset)).collect();
    let (k, t) = (kafka.clone(), dlq_topic.clone());
    let dead_letters = tokio::task::spawn_blocking(move || read_dead_letters(&k, &t, &span_keys))
        .await
        .context("the dead-letter reader panicked")??;
    bar.inc(1);

    bar.set_message("reading unexplained offsets back from the usage topic");
    let mut unexplained_ranges: Vec<PartitionRanges> = Vec::new();
    let mut to_read = 0u64;
    for ((topic, partition), ranges) in &missing {
        let dl = dead_letters.get(&(topic.clone(), *partition));
        let mut left = Vec::new();
        for &(lo, hi) in ranges {
            let mut start = None;
            for o in lo..=hi {
                let covered = dl.is_some_and(|m| m.contains_key(&o));
                match (covered, start) {
                    (false, None) => start = Some(o),
                    (true, Some(s)) => {
                        left.push((s, o - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                left.push((s, hi));
            }
        }
        to_read += left.iter().map(|(lo, hi)| u64::try_from(hi - lo + 1).unwrap_or(0)).sum::<u64>();
        if !left.is_empty() {
            unexplained_ranges.push((topic.clone(), *partition, left));
        }
    }
    let mut unexplained: BTreeMap<(String, i32), Unexplained> = BTreeMap::new();
    if !unexplained_ranges.is_empty() {
        let k = kafka.clone();
        let ranges = unexplained_ranges.clone();
        let read_back = if to_read <= MAX_READBACK {
            tokio::task::spawn_blocking(move || read_event_ids(&k, &ranges)).await.context("the topic reader panicked")??
        } else {
            HashMap::new()
        };
        let ids: Vec<String> = read_back.values().filter_map(|v| v.clone()).collect::<HashSet<_>>().into_iter().collect();
        let in_ledger = ledger_clickhouse::lookup::existing_event_ids(&client, &db, &ids)
            .await
            .map_err(|e| explain(e, &config.url))?;
        for (topic, partition, ranges) in &unexplained_ranges {
            let entry = unexplained.entry((topic.clone(), *partition)).or_default();
            for &(lo, hi) in ranges {
                for o in lo..=hi {
                    match read_back.get(&(topic.clone(), *partition, o)) {
                        Some(Some(id)) if in_ledger.contains(id) => entry.resends.push((o, id.clone())),
                        Some(Some(id)) => entry
                            .gaps
                            .push((o, format!("event {id} is neither in the ledger nor dead-lettered"))),
                        Some(None) => entry.gaps.push((o, "the message does not decode and was not dead-lettered".into())),
                        None if to_read > MAX_READBACK => {
                            entry.gaps.push((o, format!("not read back (more than {MAX_READBACK} missing offsets)")))
                        }
                        None => entry.gaps.push((o, format!("no longer in {topic} (retention?), cannot be explained"))),
                    }
                }
            }
        }
    }
    bar.inc(1);
    bar.finish_and_clear();

    let gap_count: usize = unexplained.values().map(|u| u.gaps.len()).sum();
    let resend_count: usize = unexplained.values().map(|u| u.resends.len()).sum();
    let dead_count: usize = missing
        .iter()
        .map(|(key, ranges)| {
            let dl = dead_letters.get(key);
            ranges.iter().map(|&(lo, hi)| (lo..=hi).filter(|o| dl.is_some_and(|m| m.contains_key(o))).count()).sum::<usize>()
        })
        .sum();
    let width: u64 = spans.iter().map(OffsetSpan::width).sum();
    checks.push(Check {
        name: "no offset gaps".into(),
        passed: gap_count == 0,
        detail: format!(
            "{} partitions, {width} offsets: {} in the ledger, {dead_count} dead-lettered, {resend_count} deduplicated \
             resends, {gap_count} gaps",
            spans.len(),
            spans.iter().map(|s| s.distinct_offsets).sum::<u64>()
        ),
    });

    // Report: the lists first (at most --limit entries each), then the chosen format.
    let shown = args.limit.max(1);
    let duplicate_list: Vec<String> = duplicates
        .iter()
        .take(shown)
        .map(|d| format!("{}/{}/{}: {} rows (event {})", d.topic, d.partition, d.offset, d.copies, d.event_id))
        .collect();
    let gap_list: Vec<String> = unexplained
        .iter()
        .flat_map(|((topic, partition), u)| u.gaps.iter().map(move |(o, what)| format!("{topic}/{partition}/{o}: {what}")))
        .take(shown)
        .collect();
    let mut dead_list: Vec<String> = Vec::new();
    'dead: for (key, ranges) in &missing {
        let Some(dl) = dead_letters.get(key) else { continue };
        for &(lo, hi) in ranges {
            for o in lo..=hi {
                if let Some(d) = dl.get(&o) {
                    if dead_list.len() >= shown {
                        break 'dead;
                    }
                    let id = d.event_id.as_deref().map(|i| format!(" (event {i})")).unwrap_or_default();
                    dead_list.push(format!("{}/{}/{o}: {}{id}", key.0, key.1, d.reason));
                }
            }
        }
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    let code = if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_CHECK_FAILED) };

    if args.format == Format::Json {
        let doc = serde_json::json!({
            "database": db,
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
            "passed": failed == 0,
            "checks": checks.iter().map(|c| serde_json::json!({ "check": c.name, "passed": c.passed, "detail": c.detail })).collect::<Vec<_>>(),
            "duplicate_offsets": { "count": duplicates.len(), "listed": duplicate_list },
            "gaps": { "count": gap_count, "listed": gap_list },
            "dead_lettered": { "count": dead_count, "listed": dead_list },
            "deduplicated_resends": resend_count,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(code);
    }

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["check", "result", "detail"]);
    for c in &checks {
        let result = if c.passed { Cell::new("PASS").fg(Color::Green) } else { Cell::new("FAIL").fg(Color::Red) };
        table.add_row(vec![Cell::new(&c.name), result, Cell::new(&c.detail)]);
    }
    println!("Reconciliation of database {db} ({range}; rows by event time, UTC)");
    println!("{table}");
    if !duplicates.is_empty() {
        println!("\nDuplicate offsets (rows sharing a Kafka topic/partition/offset):");
        for line in &duplicate_list {
            println!("  {line}");
        }
        if duplicates.len() > duplicate_list.len() {
            println!("  ... more (raise --limit)");
        }
        println!(
            "  fix: ALTER TABLE {db}.usage_ledger DELETE removes every copy of an offset: delete them, re-insert one \
             copy, then rebuild the rollup buckets they touch"
        );
    }
    if gap_count > 0 {
        println!("\nOffset gaps (offsets with no ledger row that were not dead-lettered):");
        for line in &gap_list {
            println!("  {line}");
        }
        if gap_count > gap_list.len() {
            println!("  ... and {} more (raise --limit)", gap_count - gap_list.len());
        }
        println!(
            "  fix: reprocess the partition from the first gap (a new consumer group with the ledger's fence below it) \
             or replay the events"
        );
    }
    if dead_count > 0 {
        println!("\nDead-lettered offsets inside the spans (not gaps):");
        for line in &dead_list {
            println!("  {line}");
        }
        if dead_count > dead_list.len() {
            println!("  ... and {} more (raise --limit, or `ledger dlq inspect`)", dead_count - dead_list.len());
        }
    }
    if resend_count > 0 {
        println!("\n{resend_count} offsets hold resends of events already in the ledger (deduplicated by event_id; not gaps).");
    }
    if failed == 0 {
        println!("\nAll {} checks passed.", checks.len());
    } else {
        println!("\n{failed} of {} checks FAILED.", checks.len());
    }
    Ok(code)
}

fn progress(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Inclusive offset ranges `(lo, hi)` of one topic and partition.
type PartitionRanges = (String, i32, Vec<(i64, i64)>);

/// Dead letters per source (topic, partition): source offset -> reason.
type DeadLetters = HashMap<(String, i32), HashMap<i64, DeadLettered>>;

/// Reads the whole dead-letter topic (low to high watermark at start) and keeps the dead letters
/// whose source falls inside one of `spans` (topic, partition, lo, hi). A missing topic is no
/// dead letters at all.
fn read_dead_letters(kafka: &KafkaConfig, topic: &str, spans: &[(String, i32, i64, i64)]) -> anyhow::Result<DeadLetters> {
    let mut out: DeadLetters = HashMap::new();
    let Some(marks) = watermarks_if_exists(kafka, topic)? else { return Ok(out) };
    let ranges: Vec<(i32, i64, i64)> = marks.into_iter().filter(|(_, lo, hi)| hi > lo).map(|(p, lo, hi)| (p, lo, hi - 1)).collect();
    read_ranges(kafka, topic, &ranges, |msg| {
        let r = DeadLetterRecord::from_message(msg);
        if let (Some(st), Some(sp), Some(so)) = (&r.source_topic, r.source_partition, r.source_offset) {
            if spans.iter().any(|(t, p, lo, hi)| t == st && *p == sp && (*lo..=*hi).contains(&so)) {
                out.entry((st.clone(), sp)).or_default().insert(so, DeadLettered { reason: r.reason, event_id: r.event_id });
            }
        }
    })?;
    Ok(out)
}

/// The event ids at the given offsets of usage topics (`None`: the bytes do not decode).
///
/// Each partition is read once, sequentially, from its first to its last wanted offset: one
/// fetch per small range would cost a broker round trip each (thousands of resends took minutes).
fn read_event_ids(
    kafka: &KafkaConfig,
    ranges: &[PartitionRanges],
) -> anyhow::Result<HashMap<(String, i32, i64), Option<String>>> {
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;
    let mut out = HashMap::new();
    for (topic, partition, offsets) in ranges {
        let Some(marks) = watermarks_if_exists(kafka, topic)? else { continue };
        let Some(&(_, low, high)) = marks.iter().find(|(p, _, _)| p == partition) else { continue };
        let (Some(first), Some(last)) = (offsets.iter().map(|r| r.0).min(), offsets.iter().map(|r| r.1).max()) else {
            continue;
        };
        let (first, last) = (first.max(low), last.min(high - 1));
        if first > last {
            continue;
        }
        // The ranges are ascending and disjoint: the first one not ending before `o` decides.
        let wanted = |o: i64| offsets.get(offsets.partition_point(|&(_, hi)| hi < o)).is_some_and(|&(lo, _)| lo <= o);
        read_ranges(kafka, topic, &[(*partition, first, last)], |msg| {
            if wanted(msg.offset()) {
                let id = msg.payload().and_then(|p| codec.decode(p).ok()).map(|e| e.event_id);
                out.insert((topic.clone(), *partition, msg.offset()), id);
            }
        })?;
    }
    Ok(out)
}

/// Partitions of `topic` with low and high watermarks, or `None` when the topic does not exist.
/// Reads the whole cluster's metadata so that asking never auto-creates the topic.
fn watermarks_if_exists(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Option<Vec<(i32, i64, i64)>>> {
    let consumer: BaseConsumer = kafka.client_config().create().context("creating a Kafka client")?;
    let md = consumer.fetch_metadata(None, META_TIMEOUT).with_context(|| {
        format!("fetching Kafka metadata from {} (is Kafka running? try `ledger stack up`)", kafka.brokers)
    })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    let mut marks = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p.id(), META_TIMEOUT)
            .with_context(|| format!("reading the watermarks of {topic}/{}", p.id()))?;
        marks.push((p.id(), lo, hi));
    }
    Ok(Some(marks))
}

/// Reads the inclusive offset ranges `(partition, lo, hi)` of `topic`, one range after the other,
/// handing each message to `visit`. Never joins a group or commits offsets.
fn read_ranges(
    kafka: &KafkaConfig,
    topic: &str,
    ranges: &[(i32, i64, i64)],
    mut visit: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    let cfg = kafka.consumer_config(&[
        ("group.id", "ledger-reconcile-reader"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", "earliest"),
    ]);
    let consumer: BaseConsumer = cfg.create().context("creating a Kafka consumer")?;
    for &(partition, lo, hi) in ranges {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(lo)).context("building the assignment")?;
        consumer.assign(&tpl).with_context(|| format!("assigning {topic}/{partition}"))?;
        let mut last_progress = Instant::now();
        loop {
            anyhow::ensure!(
                last_progress.elapsed() < STALL_TIMEOUT,
                "no progress reading {topic}/{partition} at offsets {lo}..={hi} for {STALL_TIMEOUT:?}; is the broker \
                 healthy? `ledger stack status`"
            );
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(anyhow::Error::new(e).context(format!("reading {topic}/{partition}"))),
                Some(Ok(msg)) => {
                    last_progress = Instant::now();
                    if msg.offset() > hi {
                        break;
                    }
                    if msg.offset() >= lo {
                        visit(&msg);
                    }
                    if msg.offset() >= hi {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}
