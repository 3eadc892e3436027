//! Reconciliation: the ledger against its rollups and its Kafka offsets.
//!
//! 1. Per rollup (minute, hour, day): every counter (requests, tokens, each cost term,
//!    savings, provided and routed sums and counts) equals the ledger's over the same buckets,
//!    exactly.
//! 2. No Kafka offset has more than one ledger row (a double insert).
//! 3. Per source partition, every offset between the lowest and highest offset of the range's
//!    rows has a ledger row, or was dead-lettered (read from the dead-letter topic's source
//!    headers), or is a resend the processor deduplicated (its `event_id`, read back from the
//!    usage topic, already has a ledger row at another offset). Anything else is a gap.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rdkafka::Message;

use ledger_clickhouse::reconcile::{self as rc, DuplicateOffset, OffsetSpan};
use ledger_clickhouse::{ClickHouseConfig, Rollup};
use ledger_core::UsageEvent;
use ledger_kafka::dead_letter::DeadLetterRecord;
use ledger_kafka::reader::{topic_watermarks, BoundedRead, OffsetRange, PartitionMarks};
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_registry::{IdResolver, SchemaSettings};

use crate::OpsError;

/// Missing offsets read back from the usage topic at most (beyond: reported unverified).
pub const MAX_READBACK: u64 = 100_000;

/// The steps [`reconcile`] reports to its progress callback.
pub const STEPS: u64 = 5;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// The figures behind the verdict.
    pub detail: String,
}

/// A source offset's dead letter: its reason and event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLettered {
    /// Why it was rejected.
    pub reason: String,
    /// Its event id, when known.
    pub event_id: Option<String>,
}

/// What reconciling a range found.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// The database checked.
    pub database: String,
    /// `[from, to)`, event time.
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Offsets with more than one row (at most the limit asked for, plus one).
    pub duplicates: Vec<DuplicateOffset>,
    /// `(topic, partition, offset, why)` of the offsets nothing explains.
    pub gaps: Vec<(String, i32, i64, String)>,
    /// `(topic, partition, offset, dead letter)` of the dead-lettered offsets inside the spans.
    pub dead_lettered: Vec<(String, i32, i64, DeadLettered)>,
    /// Offsets holding resends of events the ledger has at another offset.
    pub deduplicated_resends: usize,
}

impl ReconcileReport {
    /// True when every check holds.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count()
    }

    /// The duplicate, gap and dead-letter lists, at most `limit` lines each.
    pub fn listing(&self, limit: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
        let r = self;
        let duplicates = r
            .duplicates
            .iter()
            .take(limit)
            .map(|d| format!("{}/{}/{}: {} rows (event {})", d.topic, d.partition, d.offset, d.copies, d.event_id))
            .collect();
        let gaps = r.gaps.iter().take(limit).map(|(t, p, o, what)| format!("{t}/{p}/{o}: {what}")).collect();
        let dead = r
            .dead_lettered
            .iter()
            .take(limit)
            .map(|(t, p, o, d)| {
                let id = d.event_id.as_deref().map(|i| format!(" (event {i})")).unwrap_or_default();
                format!("{t}/{p}/{o}: {}{id}", d.reason)
            })
            .collect();
        (duplicates, gaps, dead)
    }

    /// What `ledger reconcile` prints: a pass/fail table of the checks over `range` (its
    /// description), then [`ReconcileReport::findings`].
    pub fn to_text(&self, limit: usize, range: &str) -> String {
        use comfy_table::{Cell, Color};
        let mut table = crate::format::table(&["check", "result", "detail"], Vec::new(), &[]);
        for c in &self.checks {
            let result = if c.passed { Cell::new("PASS").fg(Color::Green) } else { Cell::new("FAIL").fg(Color::Red) };
            table.add_row(vec![Cell::new(&c.name), result, Cell::new(&c.detail)]);
        }
        format!(
            "Reconciliation of database {} ({range}; rows by event time, UTC)\n{table}\n{}",
            self.database,
            self.findings(limit)
        )
    }

    /// What `ledger reconcile` prints below its table of checks: the duplicate, gap and
    /// dead-letter lists (at most `limit` lines each) with what to do, and the verdict.
    pub fn findings(&self, limit: usize) -> String {
        let (r, db) = (self, &self.database);
        let (duplicates, gaps, dead) = r.listing(limit);
        let mut out = String::new();
        let mut list = |title: &str, lines: &[String], count: usize, more: &str, fix: &str| {
            out.push_str(&format!("\n{title}\n"));
            lines.iter().for_each(|line| out.push_str(&format!("  {line}\n")));
            if count > lines.len() {
                out.push_str(&format!("  ... and {} more {more}\n", count - lines.len()));
            }
            if !fix.is_empty() {
                out.push_str(&format!("  fix: {fix}\n"));
            }
        };
        if !r.duplicates.is_empty() {
            let fix = format!(
                "ALTER TABLE {db}.usage_ledger DELETE removes every copy of an offset: delete them, re-insert one copy, \
                 then rebuild the rollup buckets they touch"
            );
            let title = "Duplicate offsets (rows sharing a Kafka topic/partition/offset):";
            list(title, &duplicates, r.duplicates.len(), "(raise --limit)", &fix);
        }
        if !r.gaps.is_empty() {
            let fix = "reprocess the partition from the first gap (a new consumer group with the ledger's fence below it) \
                       or replay the events";
            list(
                "Offset gaps (offsets with no ledger row that were not dead-lettered):",
                &gaps,
                r.gaps.len(),
                "(raise --limit)",
                fix,
            );
        }
        if !r.dead_lettered.is_empty() {
            let more = "(raise --limit, or `ledger dlq inspect`)";
            list("Dead-lettered offsets inside the spans (not gaps):", &dead, r.dead_lettered.len(), more, "");
        }
        if r.deduplicated_resends > 0 {
            out.push_str(&format!(
                "\n{} offsets hold resends of events already in the ledger (deduplicated by event_id; not gaps).\n",
                r.deduplicated_resends
            ));
        }
        match r.failed() {
            0 => out.push_str(&format!("\nAll {} checks passed.\n", r.checks.len())),
            failed => out.push_str(&format!("\n{failed} of {} checks FAILED.\n", r.checks.len())),
        }
        out
    }

    /// One JSON document (checks, and the lists at most `limit` entries each), for scripts.
    pub fn to_json(&self, limit: usize) -> serde_json::Value {
        let r = self;
        let (duplicates, gaps, dead) = r.listing(limit);
        serde_json::json!({
            "database": r.database,
            "from": r.range.0.to_rfc3339(),
            "to": r.range.1.to_rfc3339(),
            "passed": r.passed(),
            "checks": r.checks.iter().map(|c| serde_json::json!({ "check": c.name, "passed": c.passed, "detail": c.detail })).collect::<Vec<_>>(),
            "duplicate_offsets": { "count": r.duplicates.len(), "listed": duplicates },
            "gaps": { "count": r.gaps.len(), "listed": gaps },
            "dead_lettered": { "count": r.dead_lettered.len(), "listed": dead },
            "deduplicated_resends": r.deduplicated_resends,
        })
    }
}

/// Event ids read back per (topic, partition, offset); `None` where the bytes do not decode.
type EventIds = HashMap<(String, i32, i64), Option<String>>;

/// Messages read back per (topic, partition, offset).
type Payloads = HashMap<(String, i32, i64), Vec<u8>>;

/// Dead letters per source (topic, partition): source offset -> dead letter.
type DeadLetters = HashMap<(String, i32), HashMap<i64, DeadLettered>>;

/// Reconciles the rows with `event_time` in `[from, to)`. `limit` bounds the duplicates read;
/// `step` is called with a message as each of the [`STEPS`] steps begins.
pub async fn reconcile(
    clickhouse: &ClickHouseConfig,
    kafka: &KafkaConfig,
    topics: &TopicNames,
    schema: &SchemaSettings,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    limit: usize,
    step: &(dyn Fn(&str) + Sync),
) -> Result<ReconcileReport, OpsError> {
    let client = clickhouse.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let db = clickhouse.database.as_str();
    let ch = |e| OpsError::clickhouse(e, &clickhouse.url);
    let mut report = ReconcileReport { database: db.to_owned(), range: (from, to), ..ReconcileReport::default() };

    step("summing the ledger and its rollups");
    for rollup in Rollup::ALL {
        let cmp = rc::compare_rollup(&client, db, rollup, from, to).await.map_err(ch)?;
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
        report.checks.push(Check { name: format!("{} = ledger", rollup.table()), passed: cmp.matches(), detail });
    }

    step("looking for duplicate offsets");
    let fetch = u64::try_from(limit.max(1)).unwrap_or(20) + 1;
    report.duplicates = rc::duplicate_offsets(&client, db, from, to, fetch).await.map_err(ch)?;
    let spans = rc::offset_spans(&client, db, from, to).await.map_err(ch)?;
    let extra_rows: u64 = spans.iter().map(|s| s.rows - s.distinct_offsets).sum();
    report.checks.push(Check {
        name: "no duplicate offsets".into(),
        passed: report.duplicates.is_empty(),
        detail: if report.duplicates.is_empty() {
            format!("{} rows, each at its own offset", spans.iter().map(|s| s.rows).sum::<u64>())
        } else {
            format!("{extra_rows} extra rows at already-used offsets (listed below)")
        },
    });

    step("finding missing offsets");
    let mut missing: BTreeMap<(String, i32), Vec<(i64, i64)>> = BTreeMap::new();
    for span in spans.iter().filter(|s| !s.is_contiguous()) {
        let present =
            rc::offsets_in_span(&client, db, &span.topic, span.partition, span.min_offset, span.max_offset).await.map_err(ch)?;
        missing.insert((span.topic.clone(), span.partition), rc::missing_ranges(&present, span.min_offset, span.max_offset));
    }

    step(&format!("reading dead letters from {}", topics.dead_letter));
    let span_keys: Vec<(String, i32, i64, i64)> =
        spans.iter().map(|s| (s.topic.clone(), s.partition, s.min_offset, s.max_offset)).collect();
    let (k, t) = (kafka.clone(), topics.dead_letter.clone());
    let dead_letters = tokio::task::spawn_blocking(move || read_dead_letters(&k, &t, &span_keys))
        .await
        .map_err(|e| OpsError::Inconsistent(format!("the dead-letter reader failed: {e}")))??;

    step("reading unexplained offsets back from the usage topic");
    let (unexplained, to_read) = subtract_dead_letters(&missing, &dead_letters);
    let payloads = if !unexplained.is_empty() && to_read <= MAX_READBACK {
        let (k, ranges) = (kafka.clone(), unexplained.clone());
        tokio::task::spawn_blocking(move || read_payloads(&k, &ranges))
            .await
            .map_err(|e| OpsError::Inconsistent(format!("the topic reader failed: {e}")))??
    } else {
        HashMap::new()
    };
    let mut read_back = EventIds::new();
    if !payloads.is_empty() {
        let (codec, mut resolver) = (ledger_schema::Codec::<UsageEvent>::new()?, IdResolver::new(schema)?);
        for (key, payload) in payloads {
            read_back.insert(key, crate::dlq::event_id_of(&mut resolver, &codec, &payload).await?);
        }
    }
    let ids: Vec<String> = read_back.values().filter_map(|v| v.clone()).collect::<HashSet<_>>().into_iter().collect();
    let in_ledger = if ids.is_empty() {
        HashSet::new()
    } else {
        ledger_clickhouse::lookup::existing_event_ids(&client, db, &ids).await.map_err(ch)?
    };
    for (topic, partition, ranges) in &unexplained {
        for &(lo, hi) in ranges {
            for o in lo..=hi {
                let why = match read_back.get(&(topic.clone(), *partition, o)) {
                    Some(Some(id)) if in_ledger.contains(id) => {
                        report.deduplicated_resends += 1;
                        continue;
                    }
                    Some(Some(id)) => format!("event {id} is neither in the ledger nor dead-lettered"),
                    Some(None) => "the message does not decode and was not dead-lettered".into(),
                    None if to_read > MAX_READBACK => format!("not read back (more than {MAX_READBACK} missing offsets)"),
                    None => format!("no longer in {topic} (retention?), cannot be explained"),
                };
                report.gaps.push((topic.clone(), *partition, o, why));
            }
        }
    }
    for (key, ranges) in &missing {
        let Some(dl) = dead_letters.get(key) else { continue };
        for &(lo, hi) in ranges {
            for o in lo..=hi {
                if let Some(d) = dl.get(&o) {
                    report.dead_lettered.push((key.0.clone(), key.1, o, d.clone()));
                }
            }
        }
    }
    let width: u64 = spans.iter().map(OffsetSpan::width).sum();
    report.checks.push(Check {
        name: "no offset gaps".into(),
        passed: report.gaps.is_empty(),
        detail: format!(
            "{} partitions, {width} offsets: {} in the ledger, {} dead-lettered, {} deduplicated resends, {} gaps",
            spans.len(),
            spans.iter().map(|s| s.distinct_offsets).sum::<u64>(),
            report.dead_lettered.len(),
            report.deduplicated_resends,
            report.gaps.len()
        ),
    });
    Ok(report)
}

/// Inclusive offset ranges `(lo, hi)` of one topic and partition.
pub type PartitionRanges = (String, i32, Vec<(i64, i64)>);

/// The missing ranges with the dead-lettered offsets taken out, and how many offsets are left.
pub fn subtract_dead_letters(
    missing: &BTreeMap<(String, i32), Vec<(i64, i64)>>,
    dead_letters: &DeadLetters,
) -> (Vec<PartitionRanges>, u64) {
    let mut out = Vec::new();
    let mut left_total = 0u64;
    for ((topic, partition), ranges) in missing {
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
        left_total += left.iter().map(|(lo, hi)| u64::try_from(hi - lo + 1).unwrap_or(0)).sum::<u64>();
        if !left.is_empty() {
            out.push((topic.clone(), *partition, left));
        }
    }
    (out, left_total)
}

/// Reads the whole dead-letter topic and keeps the dead letters whose source falls inside one
/// of `spans` (topic, partition, lo, hi). A missing topic is no dead letters at all.
fn read_dead_letters(kafka: &KafkaConfig, topic: &str, spans: &[(String, i32, i64, i64)]) -> Result<DeadLetters, OpsError> {
    let mut out: DeadLetters = HashMap::new();
    BoundedRead::new(kafka, topic).group("ledger-reconcile-reader").to_end(|msg| {
        let r = DeadLetterRecord::from_message(msg);
        if let (Some(st), Some(sp), Some(so)) = (&r.source_topic, r.source_partition, r.source_offset) {
            if spans.iter().any(|(t, p, lo, hi)| t == st && *p == sp && (*lo..=*hi).contains(&so)) {
                out.entry((st.clone(), sp)).or_default().insert(so, DeadLettered { reason: r.reason, event_id: r.event_id });
            }
        }
    })?;
    Ok(out)
}

/// The messages at the given offsets of usage topics. Each partition is read once, from its
/// first to its last wanted offset: one fetch per small range would cost a broker round trip
/// each (thousands of resends took minutes).
fn read_payloads(kafka: &KafkaConfig, ranges: &[PartitionRanges]) -> Result<Payloads, OpsError> {
    let mut out = HashMap::new();
    let mut by_topic: BTreeMap<&str, Vec<&PartitionRanges>> = BTreeMap::new();
    for r in ranges {
        by_topic.entry(r.0.as_str()).or_default().push(r);
    }
    for (topic, parts) in by_topic {
        let Some(marks) = topic_watermarks(kafka, topic, std::time::Duration::from_secs(10))? else { continue };
        let mut reads = Vec::new();
        for (_, partition, offsets) in &parts {
            let Some(m) = marks.iter().find(|m| m.partition == *partition).copied() else { continue };
            if let Some(r) = clamp(offsets, m) {
                reads.push(r);
            }
        }
        let wanted = |p: i32, o: i64| {
            parts.iter().find(|(_, part, _)| *part == p).is_some_and(|(_, _, offsets)| {
                // The ranges are ascending and disjoint: the first one not ending before `o` decides.
                offsets.get(offsets.partition_point(|&(_, hi)| hi < o)).is_some_and(|&(lo, _)| lo <= o)
            })
        };
        BoundedRead::new(kafka, topic).group("ledger-reconcile-reader").ranges(&reads, |msg| {
            if wanted(msg.partition(), msg.offset()) {
                out.insert((topic.to_owned(), msg.partition(), msg.offset()), msg.payload().unwrap_or_default().to_vec());
            }
        })?;
    }
    Ok(out)
}

/// The one range covering `offsets` that the partition still holds.
fn clamp(offsets: &[(i64, i64)], m: PartitionMarks) -> Option<OffsetRange> {
    let first = offsets.iter().map(|r| r.0).min()?.max(m.low);
    let last = offsets.iter().map(|r| r.1).max()?.min(m.high - 1);
    (first <= last).then_some(OffsetRange { partition: m.partition, first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_taken_out_of_the_missing_ranges() {
        let missing = BTreeMap::from([(("t".to_owned(), 0), vec![(3, 8)]), (("t".to_owned(), 1), vec![(5, 5)])]);
        let dl = |r: &str| DeadLettered { reason: r.into(), event_id: None };
        let dead: DeadLetters = HashMap::from([
            (("t".to_owned(), 0), HashMap::from([(3, dl("a")), (5, dl("b")), (6, dl("b"))])),
            (("t".to_owned(), 1), HashMap::from([(5, dl("c"))])),
        ]);
        let (left, count) = subtract_dead_letters(&missing, &dead);
        assert_eq!(left, vec![("t".to_owned(), 0, vec![(4, 4), (7, 8)])]);
        assert_eq!(count, 3);
    }

    #[test]
    fn a_read_back_is_clamped_to_what_the_partition_holds() {
        let m = PartitionMarks { partition: 2, low: 10, high: 20 };
        assert_eq!(clamp(&[(5, 7), (12, 30)], m), Some(OffsetRange { partition: 2, first: 10, last: 19 }));
        assert_eq!(clamp(&[(1, 5)], m), None);
        assert_eq!(clamp(&[], m), None);
    }

    #[test]
    fn findings_list_the_problems_with_their_fix_and_the_verdict() {
        let check = |passed| Check { name: "c".into(), passed, detail: String::new() };
        let clean = ReconcileReport { checks: vec![check(true), check(true)], ..ReconcileReport::default() };
        assert_eq!(clean.findings(20), "\nAll 2 checks passed.\n");
        let dup = |offset| DuplicateOffset { topic: "t".into(), partition: 0, offset, copies: 2, event_id: "e".into() };
        let report = ReconcileReport {
            database: "db".into(),
            checks: vec![check(true), check(false)],
            duplicates: vec![dup(7), dup(9)],
            gaps: vec![("t".into(), 1, 5, "event x".into())],
            deduplicated_resends: 3,
            ..ReconcileReport::default()
        };
        let text = report.findings(1);
        for line in [
            "Duplicate offsets (rows sharing a Kafka topic/partition/offset):",
            "  t/0/7: 2 rows (event e)",
            "  ... and 1 more (raise --limit)",
            "  fix: ALTER TABLE db.usage_ledger DELETE removes every copy of an offset: delete them, re-insert one copy, \
             then rebuild the rollup buckets they touch",
            "  t/1/5: event x",
            "3 offsets hold resends of events already in the ledger (deduplicated by event_id; not gaps).",
            "1 of 2 checks FAILED.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("Dead-lettered"), "{text}");
    }
}
