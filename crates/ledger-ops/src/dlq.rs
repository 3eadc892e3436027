//! The dead-letter topic: inspect it by reason, and replay dead letters into the usage topic.
//!
//! Both only *read* the dead-letter topic: the processor stays its only writer (it fences its
//! own dead letters by the last record of each dead-letter partition). A replay writes the
//! original key and bytes back to the usage topic, with a `ledger.replayed_from` header naming
//! the dead letter, and counts once because
//!
//! 1. the selection is de-duplicated by `event_id`;
//! 2. events whose `event_id` already has a row in `usage_ledger` are skipped (a second replay
//!    after the first was processed sends nothing);
//! 3. a replayed event goes to its original source partition (same key, same partition), where
//!    the processor deduplicates by `event_id` within its horizon: two replays that both reach
//!    the topic before the first is processed are still counted once.
//!
//! Reading the topic is blocking: call [`inspect`] and [`read_selection`] from a blocking thread.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Serialize;

use ledger_clickhouse::ClickHouseConfig;
use ledger_core::event::RejectReason;
use ledger_core::UsageEvent;
use ledger_kafka::dead_letter::{DeadLetterRecord, HEADER_REPLAYED_FROM};
use ledger_kafka::reader::{topic_watermarks, BoundedRead, PartitionMarks};
use ledger_kafka::KafkaConfig;
use ledger_registry::{IdResolver, SchemaSettings};

use crate::format::truncate;
use crate::OpsError;

/// Metadata and watermark requests.
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// Progress of a read: `(records read, records to read)`.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// What a read of the dead-letter topic found: records, or why there are none.
#[derive(Debug, Clone)]
pub enum Found<T> {
    /// The topic has records; what was made of them.
    Read(T),
    /// Nothing to read, and why (the topic does not exist, or is empty).
    Nothing(String),
}

/// Checks `--reason` values against the known reasons.
pub fn parse_reasons(reasons: &[String]) -> Result<HashSet<String>, OpsError> {
    let mut out = HashSet::new();
    for r in reasons {
        let r = r.trim();
        if RejectReason::parse(r).is_none() {
            let known: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
            return Err(OpsError::Invalid(format!("unknown reason {r:?}: use one of {}", known.join(", "))));
        }
        out.insert(r.to_owned());
    }
    Ok(out)
}

/// The topic's watermarks, or why there is nothing to read.
fn open_topic(kafka: &KafkaConfig, topic: &str) -> Result<Found<Vec<PartitionMarks>>, OpsError> {
    let Some(marks) = topic_watermarks(kafka, topic, META_TIMEOUT)? else {
        return Ok(Found::Nothing(format!(
            "dead-letter topic {topic} does not exist: nothing has been dead-lettered yet (the processor creates it). \
             If you expected records, check topics.dead_letter / LEDGER__TOPICS__DEAD_LETTER and kafka.brokers."
        )));
    };
    if marks.iter().map(PartitionMarks::records).sum::<i64>() == 0 {
        return Ok(Found::Nothing(format!(
            "dead-letter topic {topic} is empty ({} partitions): no event has been rejected (or retention removed them).",
            marks.len()
        )));
    }
    Ok(Found::Read(marks))
}

/// Reads every record of the topic (low to high watermark at the start), handing each to `visit`.
fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    marks: &[PartitionMarks],
    progress: Progress<'_>,
    mut visit: impl FnMut(DeadLetterRecord),
) -> Result<u64, OpsError> {
    let total = marks.iter().map(PartitionMarks::records).sum::<i64>().max(0) as u64;
    let ranges: Vec<_> = marks.iter().filter_map(PartitionMarks::range).collect();
    let on_read = move |n: u64| progress(n, total);
    let read = BoundedRead::new(kafka, topic)
        .group("ledger-dlq-reader")
        .on_progress(&on_read)
        .ranges(&ranges, |m| visit(DeadLetterRecord::from_message(m)))?;
    Ok(read)
}

/// One dead letter as `inspect` lists it (without the payload bytes).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Dead-letter partition.
    pub dlq_partition: i32,
    /// Offset in the dead-letter partition.
    pub dlq_offset: i64,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// The event's id, when known.
    pub event_id: Option<String>,
    /// Source topic.
    pub source_topic: Option<String>,
    /// Source partition.
    pub source_partition: Option<i32>,
    /// Source offset.
    pub source_offset: Option<i64>,
    /// When it was rejected (RFC 3339).
    pub rejected_at: Option<String>,
    /// The original key, as text.
    pub key: Option<String>,
    /// Size of the original bytes.
    pub payload_bytes: usize,
}

impl Listed {
    fn new(r: DeadLetterRecord) -> Listed {
        Listed {
            key: r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload_bytes: r.payload.len(),
            dlq_topic: r.topic,
            dlq_partition: r.partition,
            dlq_offset: r.offset,
            reason: r.reason,
            detail: r.detail,
            event_id: r.event_id,
            source_topic: r.source_topic,
            source_partition: r.source_partition,
            source_offset: r.source_offset,
            rejected_at: r.rejected_at,
        }
    }
}

/// The dead letters of one reason.
#[derive(Debug, Clone, Default)]
pub struct ReasonSummary {
    /// How many.
    pub count: u64,
    /// The first and last rejection times.
    pub first_at: Option<DateTime<Utc>>,
    /// See `first_at`.
    pub last_at: Option<DateTime<Utc>>,
    /// The detail of the first one that has one.
    pub example_detail: String,
}

impl ReasonSummary {
    fn add(&mut self, r: &DeadLetterRecord) {
        self.count += 1;
        if self.example_detail.is_empty() && !r.detail.is_empty() {
            self.example_detail = r.detail.clone();
        }
        if let Some(t) = r.rejected_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
            let t = t.with_timezone(&Utc);
            self.first_at = Some(self.first_at.map_or(t, |f| f.min(t)));
            self.last_at = Some(self.last_at.map_or(t, |l| l.max(t)));
        }
    }
}

/// What `inspect` found.
#[derive(Debug, Clone, Default)]
pub struct InspectReport {
    /// Records read.
    pub read: u64,
    /// Per reason (of those selected).
    pub summary: BTreeMap<String, ReasonSummary>,
    /// The first `limit` selected records, by dead-letter partition and offset.
    pub listed: Vec<Listed>,
}

impl InspectReport {
    /// Selected records (all of the selected reasons).
    pub fn matched(&self) -> u64 {
        self.summary.values().map(|s| s.count).sum()
    }

    /// `(reason, count, first rejected, last rejected, example detail)`, most frequent first.
    pub fn summary_rows(&self) -> Vec<Vec<String>> {
        let mut by_count: Vec<_> = self.summary.iter().collect();
        by_count.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        let at = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into());
        by_count
            .into_iter()
            .map(|(reason, s)| {
                vec![reason.clone(), s.count.to_string(), at(s.first_at), at(s.last_at), truncate(&s.example_detail, 80)]
            })
            .collect()
    }

    /// The summary table by reason, the listed records, and how to see more.
    pub fn to_text(&self) -> String {
        let header = ["reason", "count", "first rejected", "last rejected", "example detail"];
        let mut out = format!("{}\n", crate::format::table(&header, self.summary_rows(), &[1]));
        if !self.listed.is_empty() {
            let header = ["dlq p/offset", "source p/offset", "event_id", "reason", "detail"];
            out.push_str(&format!("{}\n", crate::format::table(&header, self.listed_rows(), &[])));
        }
        let matched = self.matched();
        if (self.listed.len() as u64) < matched {
            out.push_str(&format!(
                "first {} of {matched} listed; --limit N lists more, --format json lists all\n",
                self.listed.len()
            ));
        }
        out
    }

    /// `(dlq partition/offset, source partition/offset, event id, reason, detail)` per listed record.
    pub fn listed_rows(&self) -> Vec<Vec<String>> {
        self.listed
            .iter()
            .map(|l| {
                let source = match (l.source_partition, l.source_offset) {
                    (Some(p), Some(o)) => format!("{p}/{o}"),
                    _ => "-".to_owned(),
                };
                let id = l.event_id.clone().unwrap_or_else(|| "-".into());
                vec![format!("{}/{}", l.dlq_partition, l.dlq_offset), source, id, l.reason.clone(), truncate(&l.detail, 80)]
            })
            .collect()
    }
}

/// Summarises the dead-letter topic by reason and lists the first `limit` records of the
/// selected reasons (all reasons when `reasons` is empty). Blocking.
pub fn inspect(
    kafka: &KafkaConfig,
    topic: &str,
    reasons: &HashSet<String>,
    limit: usize,
    progress: Progress<'_>,
) -> Result<Found<InspectReport>, OpsError> {
    let marks = match open_topic(kafka, topic)? {
        Found::Read(m) => m,
        Found::Nothing(why) => return Ok(Found::Nothing(why)),
    };
    let mut report = InspectReport::default();
    let mut per_partition: BTreeMap<i32, Vec<Listed>> = BTreeMap::new();
    report.read = scan(kafka, topic, &marks, progress, |r| {
        if !reasons.is_empty() && !reasons.contains(&r.reason) {
            return;
        }
        report.summary.entry(r.reason.clone()).or_default().add(&r);
        let list = per_partition.entry(r.partition).or_default();
        if list.len() < limit {
            list.push(Listed::new(r));
        }
    })?;
    report.listed = per_partition.into_values().flatten().collect();
    report.listed.sort_by_key(|l| (l.dlq_partition, l.dlq_offset));
    report.listed.truncate(limit);
    Ok(Found::Read(report))
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these reasons (all when empty).
    pub reasons: HashSet<String>,
    /// Only these event ids (all when empty).
    pub event_ids: HashSet<String>,
}

/// The selected dead letters, with their bytes, by dead-letter partition and offset.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Records read.
    pub read: u64,
    /// The records the selection takes (by event id only where the id header is present; see
    /// [`plan_replay`]).
    pub records: Vec<DeadLetterRecord>,
}

/// Reads the dead letters a replay selects. Blocking.
pub fn read_selection(
    kafka: &KafkaConfig,
    topic: &str,
    selection: &Selection,
    progress: Progress<'_>,
) -> Result<Found<Selected>, OpsError> {
    let marks = match open_topic(kafka, topic)? {
        Found::Read(m) => m,
        Found::Nothing(why) => return Ok(Found::Nothing(why)),
    };
    let mut records = Vec::new();
    let read = scan(kafka, topic, &marks, progress, |r| {
        if !selection.reasons.is_empty() && !selection.reasons.contains(&r.reason) {
            return;
        }
        // With event ids, a dead letter without the id header is kept for now: its id may be
        // in the bytes (checked by the plan).
        if let (false, Some(id)) = (selection.event_ids.is_empty(), &r.event_id) {
            if !selection.event_ids.contains(id) {
                return;
            }
        }
        records.push(r);
    })?;
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(Found::Read(Selected { read, records }))
}

/// How the selected dead letters of one reason are handled by a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlanCounts {
    /// Selected.
    pub selected: u64,
    /// Skipped: no event id in the headers or the bytes.
    pub no_event_id: u64,
    /// Skipped: an event id already selected.
    pub repeated: u64,
    /// Skipped: the ledger holds the event already.
    pub in_ledger: u64,
    /// To be sent.
    pub replay: u64,
}

impl PlanCounts {
    fn add(&mut self, other: &PlanCounts) {
        self.selected += other.selected;
        self.no_event_id += other.no_event_id;
        self.repeated += other.repeated;
        self.in_ledger += other.in_ledger;
        self.replay += other.replay;
    }
}

/// What a replay would send, and why the rest is skipped.
#[derive(Debug, Clone, Default)]
pub struct ReplayPlan {
    /// Records read from the dead-letter topic.
    pub read: u64,
    /// Per reason.
    pub counts: BTreeMap<String, PlanCounts>,
    /// The dead letters to send, once each, with their event ids.
    pub to_send: Vec<(String, DeadLetterRecord)>,
}

impl ReplayPlan {
    /// The plan as a table, per reason, under the records read of `topic`.
    pub fn to_text(&self, topic: &str) -> String {
        let header = ["reason", "selected", "no event_id (skip)", "repeated id (skip)", "in ledger (skip)", "to replay"];
        format!("{topic}: {} dead letters read\n{}\n", self.read, crate::format::table(&header, self.rows(), &[1, 2, 3, 4, 5]))
    }

    /// `(reason, selected, no event id, repeated, in ledger, to replay)` per reason, and a total
    /// row when there are several reasons.
    pub fn rows(&self) -> Vec<Vec<String>> {
        let row = |name: &str, c: &PlanCounts| {
            let n = [c.selected, c.no_event_id, c.repeated, c.in_ledger, c.replay];
            std::iter::once(name.to_owned()).chain(n.iter().map(u64::to_string)).collect::<Vec<String>>()
        };
        let mut rows: Vec<Vec<String>> = self.counts.iter().map(|(reason, c)| row(reason, c)).collect();
        if self.counts.len() > 1 {
            rows.push(row("total", &self.total()));
        }
        rows
    }

    /// The counts of every reason added up.
    pub fn total(&self) -> PlanCounts {
        let mut t = PlanCounts::default();
        for c in self.counts.values() {
            t.add(c);
        }
        t
    }
}

/// The event id in a usage message of either framing (a Confluent message's schema id is
/// looked up in `schema.ids` and the registry first), or `None` when it does not decode.
pub(crate) async fn event_id_of(
    resolver: &mut IdResolver,
    codec: &ledger_schema::Codec<UsageEvent>,
    payload: &[u8],
) -> Result<Option<String>, OpsError> {
    resolver.prepare(payload).await?;
    Ok(codec.decode_framed(resolver.ids(), payload).ok().map(|e| e.event_id))
}

/// Decides what of `selected` a replay sends: every candidate needs an event id (from the
/// header, else from the bytes, in either framing), is sent once, and not at all when the
/// ledger holds it.
pub async fn plan_replay(
    clickhouse: &ClickHouseConfig,
    schema: &SchemaSettings,
    selected: Selected,
    event_ids: &HashSet<String>,
) -> Result<ReplayPlan, OpsError> {
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;
    let mut resolver = IdResolver::new(schema)?;
    let mut plan = ReplayPlan { read: selected.read, ..ReplayPlan::default() };
    let mut seen: HashSet<String> = HashSet::new();
    let mut candidates = Vec::new();
    for r in selected.records {
        let id = match r.event_id.clone() {
            Some(id) => Some(id),
            None => event_id_of(&mut resolver, &codec, &r.payload).await?,
        };
        if !event_ids.is_empty() && !id.as_ref().is_some_and(|id| event_ids.contains(id)) {
            continue;
        }
        let counts = plan.counts.entry(r.reason.clone()).or_default();
        counts.selected += 1;
        match id {
            None => counts.no_event_id += 1,
            Some(id) if !seen.insert(id.clone()) => counts.repeated += 1,
            Some(id) => candidates.push((id, r)),
        }
    }
    if candidates.is_empty() {
        return Ok(plan);
    }
    let ids: Vec<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
    let client = clickhouse.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let in_ledger = ledger_clickhouse::lookup::existing_event_ids(&client, &clickhouse.database, &ids)
        .await
        .map_err(|e| OpsError::clickhouse(e, &clickhouse.url))?;
    for (id, r) in candidates {
        let counts = plan.counts.get_mut(&r.reason).expect("counted above");
        if in_ledger.contains(&id) {
            counts.in_ledger += 1;
        } else {
            counts.replay += 1;
            plan.to_send.push((id, r));
        }
    }
    Ok(plan)
}

/// What a replay sent.
#[derive(Debug, Clone, Default)]
pub struct ReplayResult {
    /// Acknowledged by Kafka, per reason.
    pub sent: BTreeMap<String, u64>,
    /// Not acknowledged.
    pub failed: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// How long sending took.
    pub elapsed: Duration,
}

impl ReplayResult {
    /// One paragraph for people: what was sent to `usage_topic` from `dlq_topic`.
    pub fn to_text(&self, usage_topic: &str, dlq_topic: &str) -> String {
        let total: u64 = self.sent.values().sum();
        let by_reason: Vec<String> = self.sent.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!(
            "replayed {total} events to {usage_topic} in {:.1?} ({}); each carries {HEADER_REPLAYED_FROM}. \
             The processor prices them as it consumes them (`ledger process`); the dead letters stay in {dlq_topic}.",
            self.elapsed,
            if by_reason.is_empty() { "none".to_owned() } else { by_reason.join(", ") }
        )
    }
}

/// Sends the plan's dead letters to `usage_topic`: the original key and bytes, to the source
/// partition when it is known and still exists, with the lineage header.
pub async fn send_replay(kafka: &KafkaConfig, usage_topic: &str, plan: &ReplayPlan) -> Result<ReplayResult, OpsError> {
    let partitions = ledger_kafka::admin::partition_count(kafka, usage_topic, META_TIMEOUT)?;
    let producer = ledger_kafka::producer::idempotent_producer(kafka)?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(plan.to_send.len());
    for (_, r) in &plan.to_send {
        let lineage = r.position();
        let headers = OwnedHeaders::new().insert(Header { key: HEADER_REPLAYED_FROM, value: Some(lineage.as_str()) });
        let mut record = FutureRecord::to(usage_topic).payload(r.payload.as_slice()).headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        // The source partition holds the processor's dedupe window for this event; without a
        // recorded source (or after it was repartitioned away) the key decides.
        match r.source_partition {
            Some(p) if r.source_topic.as_deref() == Some(usage_topic) && (0..partitions).contains(&p) => {
                record = record.partition(p);
            }
            _ => {}
        }
        deliveries.push((r.reason.clone(), ledger_kafka::producer::enqueue(&producer, record).await?));
    }
    let mut result = ReplayResult::default();
    for (reason, d) in deliveries {
        match d.await {
            Ok(Ok(_)) => *result.sent.entry(reason).or_default() += 1,
            Ok(Err((e, _))) => {
                result.failed += 1;
                result.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                result.failed += 1;
                result.first_error.get_or_insert_with(|| "delivery cancelled".to_owned());
            }
        }
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_checked() {
        assert!(parse_reasons(&["unknown_model".into(), " too_old ".into()]).unwrap().contains("too_old"));
        let err = parse_reasons(&["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown reason \"nope\": use one of"), "{err}");
    }

    #[test]
    fn a_summary_keeps_the_first_and_last_rejection() {
        let mut s = ReasonSummary::default();
        let record = |at: &str, detail: &str| DeadLetterRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: Vec::new(),
            reason: "too_old".into(),
            detail: detail.into(),
            source_topic: None,
            source_partition: None,
            source_offset: None,
            event_id: None,
            rejected_at: Some(at.into()),
        };
        s.add(&record("2026-11-02T00:00:00Z", ""));
        s.add(&record("2026-11-01T00:00:00Z", "first detail"));
        s.add(&record("2026-11-03T00:00:00Z", "later detail"));
        assert_eq!(s.count, 3);
        assert_eq!(s.first_at.unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(s.last_at.unwrap().to_rfc3339(), "2026-11-03T00:00:00+00:00");
        assert_eq!(s.example_detail, "first detail");
    }
}
