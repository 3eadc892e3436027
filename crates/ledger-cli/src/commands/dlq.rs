//! `ledger dlq`: inspect the dead-letter topic and replay dead letters into the usage topic.
//!
//! Both subcommands only *read* the dead-letter topic: the processor stays its only writer
//! (it fences its own dead letters by the last record of each dead-letter partition).
//! `replay` writes the original key and bytes back to the usage topic, with a
//! `ledger.replayed_from` header naming the dead letter, and counts once because
//!
//! 1. the selection is de-duplicated by `event_id`;
//! 2. events whose `event_id` already has a row in `usage_ledger` are skipped (a second
//!    replay after the first was processed sends nothing);
//! 3. a replayed event goes to its original source partition (same key, same partition), where
//!    the processor deduplicates by `event_id` within its horizon: two replays that both reach
//!    the topic before the first is processed are still counted once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use ledger_core::event::RejectReason;
use ledger_core::UsageEvent;
use ledger_kafka::KafkaConfig;
use ledger_processor::dead_letter::{DeadLetterRecord, HEADER_REPLAYED_FROM};

use super::migrate::explain;
use crate::config::ConfigArgs;

/// Records above which reading the topic shows a progress bar (on a terminal).
const PROGRESS_THRESHOLD: i64 = 10_000;
/// A read that makes no progress for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Metadata and watermark requests.
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `ledger dlq`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger dlq inspect                                  # counts by reason, then the first 20 dead letters
  ledger dlq inspect --reason unknown_model --limit 100
  ledger dlq inspect --format json | jq -r .event_id  # one JSON object per dead letter
  ledger dlq replay --reason unknown_model --dry-run  # what a replay would send
  ledger dlq replay --reason unknown_model --yes      # after the catalog learned the model

Dead letters are the original bytes of a rejected event with headers naming the reason
(ledger.reason, ledger.detail) and the source (ledger.source.topic/partition/offset).
Both commands only read the dead-letter topic; it is never modified.")]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// Summarise the dead-letter topic by reason and list its records.
    Inspect(InspectArgs),
    /// Re-feed selected dead letters (original key and bytes) to the usage topic, once each.
    Replay(ReplayArgs),
}

/// Output format of `ledger dlq inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A summary table by reason, then a table of the first records.
    Table,
    /// One JSON object per dead letter (JSON lines), every record unless --limit is given.
    Json,
}

/// Arguments of `ledger dlq inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger dlq inspect
  ledger dlq inspect --reason unknown_model --reason too_old --limit 50
  LEDGER__TOPICS__DEAD_LETTER=staging.llm.usage.dlq.v1 ledger dlq inspect --format json

The topic is read from its low to its high watermark at start (all partitions); records
written meanwhile are left for the next run.")]
struct InspectArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only dead letters with this reason (repeatable; unknown_model, decode_error, too_old, ...).
    #[arg(long = "reason", value_name = "REASON", value_delimiter = ',')]
    reasons: Vec<String>,
    /// Records to list (table default: 20; JSON default: all). 0 lists none.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Arguments of `ledger dlq replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger dlq replay --reason unknown_model --dry-run
  ledger dlq replay --reason unknown_model --yes
  ledger dlq replay --event-id 01J9Z...A --event-id 01J9Z...B

Without --reason or --event-id every dead letter is selected. Replayed events go to
topics.usage with their original key and bytes and a ledger.replayed_from header
(dead-letter-topic/partition/offset); the running processor (or `ledger process`) then prices
them. Replaying again is safe: events already in the ledger are skipped, repeats of one
event_id are sent once, and the processor deduplicates by event_id. Dead letters without an
event_id that still do not decode (garbage) are never replayed. Replay what a change fixed
(unknown_model after a catalog update, in_future once the time came): an event whose bytes are
invalid (negative_tokens, inconsistent_tokens, missing_field) is dead-lettered again.")]
struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only dead letters with this reason (repeatable or comma separated).
    #[arg(long = "reason", value_name = "REASON", value_delimiter = ',')]
    reasons: Vec<String>,
    /// Only dead letters of this event_id (repeatable or comma separated).
    #[arg(long = "event-id", value_name = "ID", value_delimiter = ',')]
    event_ids: Vec<String>,
    /// Show what would be replayed, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replay without asking for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub(crate) async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DlqCommand::Inspect(a) => inspect(a).await,
        DlqCommand::Replay(a) => replay(a).await,
    }
}

/// Checks `--reason` values against the known reasons.
fn parse_reasons(reasons: &[String]) -> anyhow::Result<HashSet<String>> {
    let mut out = HashSet::new();
    for r in reasons {
        let r = r.trim();
        if RejectReason::parse(r).is_none() {
            let known: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
            anyhow::bail!("unknown reason {r:?}: use one of {}", known.join(", "));
        }
        out.insert(r.to_owned());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading the topic
// ---------------------------------------------------------------------------------------------

/// Partitions of the topic with their low and high watermarks; `None` when the topic does not
/// exist. Reads the whole cluster's metadata so that asking never auto-creates the topic.
fn topic_watermarks(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Option<Watermarks>> {
    let consumer: BaseConsumer = kafka.client_config().create().context("creating a Kafka client")?;
    let md = consumer.fetch_metadata(None, META_TIMEOUT).with_context(|| {
        format!("fetching Kafka metadata from {} (is Kafka running? try `ledger stack up`)", kafka.brokers)
    })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    if let Some(err) = t.error() {
        anyhow::bail!("topic {topic}: {err:?}");
    }
    let mut marks = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p.id(), META_TIMEOUT)
            .with_context(|| format!("reading the watermarks of {topic}/{}", p.id()))?;
        marks.push((p.id(), lo, hi));
    }
    marks.sort_unstable();
    Ok(Some(marks))
}

/// Reads every partition of `topic` from `lo` up to (excluding) `hi` of `marks` and hands each
/// record to `visit`. Never joins a group or commits offsets.
fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    marks: &[(i32, i64, i64)],
    mut visit: impl FnMut(DeadLetterRecord),
) -> anyhow::Result<u64> {
    let total: i64 = marks.iter().map(|(_, lo, hi)| (hi - lo).max(0)).sum();
    let mut pending: HashMap<i32, i64> = marks.iter().filter(|(_, lo, hi)| hi > lo).map(|(p, _, hi)| (*p, *hi)).collect();
    if pending.is_empty() {
        return Ok(0);
    }
    let cfg = kafka.consumer_config(&[
        ("group.id", "ledger-dlq-reader"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", "earliest"),
    ]);
    let consumer: BaseConsumer = cfg.create().context("creating a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for (p, lo, hi) in marks {
        if hi > lo {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*lo)).context("building the assignment")?;
        }
    }
    consumer.assign(&tpl).with_context(|| format!("assigning the partitions of {topic}"))?;

    let bar = if total > PROGRESS_THRESHOLD {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} reading {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(topic.to_owned());
        b
    } else {
        ProgressBar::hidden()
    };
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    while !pending.is_empty() {
        if last_progress.elapsed() > STALL_TIMEOUT {
            let mut left: Vec<String> = pending.keys().map(|p| format!("{topic}/{p}")).collect();
            left.sort();
            anyhow::bail!(
                "no progress reading {} for {STALL_TIMEOUT:?} (read {read} of {total} records); is the broker healthy? \
                 `ledger stack status`",
                left.join(", ")
            );
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(anyhow::Error::new(e).context(format!("reading {topic}"))),
            Some(Ok(msg)) => {
                use rdkafka::Message;
                last_progress = Instant::now();
                let p = msg.partition();
                let Some(&hi) = pending.get(&p) else { continue };
                if msg.offset() >= hi {
                    pending.remove(&p);
                    continue;
                }
                if msg.offset() + 1 >= hi {
                    pending.remove(&p);
                }
                read += 1;
                bar.inc(1);
                visit(DeadLetterRecord::from_message(&msg));
            }
        }
    }
    bar.finish_and_clear();
    Ok(read)
}

/// `(partition, low, high)` watermarks of every partition of a topic.
type Watermarks = Vec<(i32, i64, i64)>;

/// The dead-letter topic's watermarks, or a message saying why there is nothing to read.
fn open_topic(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Result<Watermarks, String>> {
    let Some(marks) = topic_watermarks(kafka, topic)? else {
        return Ok(Err(format!(
            "dead-letter topic {topic} does not exist: nothing has been dead-lettered yet (the processor creates it). \
             If you expected records, check topics.dead_letter / LEDGER__TOPICS__DEAD_LETTER and kafka.brokers."
        )));
    };
    let records: i64 = marks.iter().map(|(_, lo, hi)| (hi - lo).max(0)).sum();
    if records == 0 {
        return Ok(Err(format!(
            "dead-letter topic {topic} is empty ({} partitions): no event has been rejected (or retention removed them).",
            marks.len()
        )));
    }
    Ok(Ok(marks))
}

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

/// One dead letter as `inspect` lists it (without the payload bytes).
#[derive(Debug, Clone, Serialize)]
struct Listed {
    dlq_topic: String,
    dlq_partition: i32,
    dlq_offset: i64,
    reason: String,
    detail: String,
    event_id: Option<String>,
    source_topic: Option<String>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    rejected_at: Option<String>,
    key: Option<String>,
    payload_bytes: usize,
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

/// Per-reason summary of `inspect`.
#[derive(Debug, Default)]
struct ReasonSummary {
    count: u64,
    first_at: Option<(chrono::DateTime<chrono::Utc>, String)>,
    last_at: Option<(chrono::DateTime<chrono::Utc>, String)>,
    example_detail: String,
}

impl ReasonSummary {
    fn add(&mut self, r: &DeadLetterRecord) {
        self.count += 1;
        if self.example_detail.is_empty() && !r.detail.is_empty() {
            self.example_detail = r.detail.clone();
        }
        if let Some(text) = &r.rejected_at {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
                let t = t.with_timezone(&chrono::Utc);
                if self.first_at.as_ref().is_none_or(|(f, _)| t < *f) {
                    self.first_at = Some((t, text.clone()));
                }
                if self.last_at.as_ref().is_none_or(|(l, _)| t > *l) {
                    self.last_at = Some((t, text.clone()));
                }
            }
        }
    }
}

/// What one read of the topic found, for `inspect`.
#[derive(Debug, Default)]
struct InspectResult {
    read: u64,
    summary: BTreeMap<String, ReasonSummary>,
    /// Per dead-letter partition, the first `limit` matching records (offset order).
    listed: BTreeMap<i32, Vec<Listed>>,
}

async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let reasons = parse_reasons(&args.reasons)?;
    let topic = config.topics.dead_letter.clone();
    let kafka = config.kafka.clone();
    let limit = args.limit.unwrap_or(match args.format {
        Format::Table => 20,
        Format::Json => usize::MAX,
    });
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Result<InspectResult, String>> {
        let marks = match open_topic(&kafka, &topic)? {
            Ok(m) => m,
            Err(message) => return Ok(Err(message)),
        };
        let mut result = InspectResult::default();
        result.read = scan(&kafka, &topic, &marks, |r| {
            if !reasons.is_empty() && !reasons.contains(&r.reason) {
                return;
            }
            result.summary.entry(r.reason.clone()).or_default().add(&r);
            let list = result.listed.entry(r.partition).or_default();
            if list.len() < limit {
                list.push(Listed::new(r));
            }
        })?;
        Ok(Ok(result))
    })
    .await
    .context("the topic reader panicked")??;
    let result = match result {
        Ok(r) => r,
        Err(message) => {
            eprintln!("{message}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let topic = &config.topics.dead_letter;
    let matched: u64 = result.summary.values().map(|s| s.count).sum();
    let mut listed: Vec<Listed> = result.listed.into_values().flatten().collect();
    listed.sort_by_key(|l| (l.dlq_partition, l.dlq_offset));
    listed.truncate(limit);
    let filter = if args.reasons.is_empty() { String::new() } else { format!(" with reason {}", args.reasons.join(" or ")) };

    match args.format {
        Format::Json => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for l in &listed {
                serde_json::to_writer(&mut out, l)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            let matching = if filter.is_empty() { String::new() } else { format!(", {matched}{filter}") };
            eprintln!("{topic}: {} dead letters read{matching}, {} listed", result.read, listed.len());
        }
        Format::Table => {
            if matched == 0 {
                println!("{topic}: {} dead letters, none{filter}.", result.read);
                return Ok(ExitCode::SUCCESS);
            }
            let mut by_count: Vec<(&String, &ReasonSummary)> = result.summary.iter().collect();
            by_count.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(vec!["reason", "count", "first rejected", "last rejected", "example detail"]);
            let at = |t: &Option<(chrono::DateTime<chrono::Utc>, String)>| {
                t.as_ref().map(|(t, _)| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
            };
            for (reason, s) in by_count {
                table.add_row(vec![
                    Cell::new(reason),
                    Cell::new(s.count).set_alignment(CellAlignment::Right),
                    Cell::new(at(&s.first_at)),
                    Cell::new(at(&s.last_at)),
                    Cell::new(truncate(&s.example_detail, 80)),
                ]);
            }
            let matching = if filter.is_empty() { String::new() } else { format!(", {matched}{filter}") };
            println!("{topic}: {} dead letters{matching}", result.read);
            println!("{table}");
            if !listed.is_empty() {
                let mut table = Table::new();
                table.load_preset(UTF8_FULL_CONDENSED);
                table.set_header(vec!["dlq p/offset", "source p/offset", "event_id", "reason", "detail"]);
                for l in &listed {
                    let source = match (l.source_partition, l.source_offset) {
                        (Some(p), Some(o)) => format!("{p}/{o}"),
                        _ => "-".to_owned(),
                    };
                    table.add_row(vec![
                        Cell::new(format!("{}/{}", l.dlq_partition, l.dlq_offset)),
                        Cell::new(source),
                        Cell::new(l.event_id.as_deref().unwrap_or("-")),
                        Cell::new(&l.reason),
                        Cell::new(truncate(&l.detail, 80)),
                    ]);
                }
                println!("{table}");
                if (listed.len() as u64) < matched {
                    println!("first {} of {matched} listed; --limit N lists more, --format json lists all", listed.len());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------------------------------------
// replay
// ---------------------------------------------------------------------------------------------

/// How the selected dead letters of one reason are handled by a replay.
#[derive(Debug, Default, Clone, Copy)]
struct PlanCounts {
    selected: u64,
    no_event_id: u64,
    repeated: u64,
    in_ledger: u64,
    replay: u64,
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let reasons = parse_reasons(&args.reasons)?;
    let wanted_ids: HashSet<String> = args.event_ids.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    let dlq_topic = config.topics.dead_letter.clone();
    let usage_topic = config.topics.usage.clone();
    let kafka = config.kafka.clone();

    // 1. Read the selected dead letters (with their bytes).
    let (t, k) = (dlq_topic.clone(), kafka.clone());
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<Result<(u64, Vec<DeadLetterRecord>), String>> {
        let marks = match open_topic(&k, &t)? {
            Ok(m) => m,
            Err(message) => return Ok(Err(message)),
        };
        let mut selected = Vec::new();
        let read = scan(&k, &t, &marks, |r| {
            if !reasons.is_empty() && !reasons.contains(&r.reason) {
                return;
            }
            // With --event-id, a dead letter without the id header is kept for now: its id may
            // be in the bytes (checked below).
            if let (false, Some(id)) = (wanted_ids.is_empty(), &r.event_id) {
                if !wanted_ids.contains(id) {
                    return;
                }
            }
            selected.push(r);
        })?;
        Ok(Ok((read, selected)))
    })
    .await
    .context("the topic reader panicked")??;
    let (read, mut selected) = match read {
        Ok(r) => r,
        Err(message) => {
            eprintln!("{message}\nnothing to replay.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    selected.sort_by_key(|r| (r.partition, r.offset));

    // 2. Every candidate needs an event_id: from the header, else from the bytes (a dead
    //    letter written by an older build, or bytes a newer schema reader can decode now).
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;
    let wanted: HashSet<String> = args.event_ids.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    let mut plan: BTreeMap<String, PlanCounts> = BTreeMap::new();
    let mut candidates: Vec<(String, DeadLetterRecord)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for r in selected {
        let id = r.event_id.clone().or_else(|| codec.decode(&r.payload).ok().map(|e| e.event_id));
        if !wanted.is_empty() && !id.as_ref().is_some_and(|id| wanted.contains(id)) {
            continue;
        }
        let counts = plan.entry(r.reason.clone()).or_default();
        counts.selected += 1;
        match id {
            None => counts.no_event_id += 1,
            Some(id) if !seen.insert(id.clone()) => counts.repeated += 1,
            Some(id) => candidates.push((id, r)),
        }
    }
    if plan.is_empty() {
        println!("{dlq_topic}: {read} dead letters, none matches the selection; nothing to replay.");
        return Ok(ExitCode::SUCCESS);
    }

    // 3. Skip what the ledger already holds (an earlier replay that was processed, or a resend).
    let ids: Vec<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
    let client = config.clickhouse.client().context("invalid ClickHouse settings")?;
    let in_ledger = ledger_clickhouse::lookup::existing_event_ids(&client, &config.clickhouse.database, &ids)
        .await
        .map_err(|e| explain(e, &config.clickhouse.url))
        .with_context(|| {
            format!(
                "checking which events {}.usage_ledger already holds (does the database exist? `ledger migrate`)",
                config.clickhouse.database
            )
        })?;
    candidates.retain(|(id, r)| {
        let keep = !in_ledger.contains(id);
        let counts = plan.get_mut(&r.reason).expect("counted above");
        if keep {
            counts.replay += 1;
        } else {
            counts.in_ledger += 1;
        }
        keep
    });

    print_plan(&dlq_topic, read, &plan);
    let to_send = candidates.len();
    if to_send == 0 {
        println!("nothing to replay: every selected event is already in the ledger or cannot be replayed.");
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        println!("dry run: would replay {to_send} events to {usage_topic}; nothing sent.");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&format!("replay {to_send} events to {usage_topic}?"))? {
        println!("not replayed.");
        return Ok(ExitCode::from(1));
    }

    // 4. Send the original key and bytes to the source partition, with the lineage header.
    let partitions = ledger_kafka::admin::partition_count(&kafka, &usage_topic, META_TIMEOUT)
        .with_context(|| format!("reading the partitions of {usage_topic} (is Kafka running? `ledger stack status`)"))?;
    let producer = ledger_kafka::producer::idempotent_producer(&kafka)?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(to_send);
    for (_, r) in &candidates {
        let lineage = r.position();
        let headers = OwnedHeaders::new().insert(Header { key: HEADER_REPLAYED_FROM, value: Some(lineage.as_str()) });
        let mut record = FutureRecord::to(&usage_topic).payload(r.payload.as_slice()).headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        // The source partition holds the processor's dedupe window for this event; without a
        // recorded source (or after it was repartitioned away) the key decides.
        match r.source_partition {
            Some(p) if r.source_topic.as_deref() == Some(usage_topic.as_str()) && (0..partitions).contains(&p) => {
                record = record.partition(p);
            }
            _ => {}
        }
        deliveries.push((r.reason.clone(), ledger_kafka::producer::enqueue(&producer, record).await?));
    }
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = 0u64;
    let mut first_error = None;
    for (reason, d) in deliveries {
        match d.await {
            Ok(Ok(_)) => *sent.entry(reason).or_default() += 1,
            Ok(Err((e, _))) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert_with(|| "delivery cancelled".to_owned());
            }
        }
    }
    let total: u64 = sent.values().sum();
    let by_reason: Vec<String> = sent.iter().map(|(r, n)| format!("{n} {r}")).collect();
    println!(
        "replayed {total} events to {usage_topic} in {:.1?} ({}); each carries {HEADER_REPLAYED_FROM}. \
         The processor prices them as it consumes them (`ledger process`); the dead letters stay in {dlq_topic}.",
        started.elapsed(),
        if by_reason.is_empty() { "none".to_owned() } else { by_reason.join(", ") }
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {to_send} replays were not acknowledged by Kafka ({}); run the same replay again: \
             events already in the ledger are skipped and the processor deduplicates the rest",
            first_error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(topic: &str, read: u64, plan: &BTreeMap<String, PlanCounts>) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["reason", "selected", "no event_id (skip)", "repeated id (skip)", "in ledger (skip)", "to replay"]);
    let mut total = PlanCounts::default();
    let num = |n: u64| Cell::new(n).set_alignment(CellAlignment::Right);
    for (reason, c) in plan {
        table.add_row(vec![Cell::new(reason), num(c.selected), num(c.no_event_id), num(c.repeated), num(c.in_ledger), num(c.replay)]);
        total.selected += c.selected;
        total.no_event_id += c.no_event_id;
        total.repeated += c.repeated;
        total.in_ledger += c.in_ledger;
        total.replay += c.replay;
    }
    if plan.len() > 1 {
        table.add_row(vec![
            Cell::new("total"),
            num(total.selected),
            num(total.no_event_id),
            num(total.repeated),
            num(total.in_ledger),
            num(total.replay),
        ]);
    }
    println!("{topic}: {read} dead letters read");
    println!("{table}");
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "refusing to replay without confirmation: stdin is not a terminal. Pass --yes to replay, \
             or --dry-run to only see the plan"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).context("reading the answer")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
