//! `ledger dlq`: inspect the dead-letter topic and replay dead letters into the usage topic
//! (the work is [`ledger_ops::dlq`]; this renders it).

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use ledger_ops::dlq::{self, Found, Selection};

use super::progress_bar;
use crate::config::ConfigArgs;

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

async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let reasons = dlq::parse_reasons(&args.reasons)?;
    let topic = config.topics.dead_letter.clone();
    let limit = args.limit.unwrap_or(match args.format {
        Format::Table => 20,
        Format::Json => usize::MAX,
    });
    let (kafka, t) = (config.kafka.clone(), topic.clone());
    let found = tokio::task::spawn_blocking(move || {
        let bar = progress_bar(&format!("reading {t}"));
        let found = dlq::inspect(&kafka, &t, &reasons, limit, &|n, total| bar.show(n, total));
        bar.finish();
        found
    })
    .await
    .context("the topic reader panicked")??;
    let report = match found {
        Found::Read(r) => r,
        Found::Nothing(why) => {
            eprintln!("{why}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let filter = if args.reasons.is_empty() { String::new() } else { format!(" with reason {}", args.reasons.join(" or ")) };
    let matched = report.matched();
    let matching = if filter.is_empty() { String::new() } else { format!(", {matched}{filter}") };
    match args.format {
        Format::Json => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for l in &report.listed {
                serde_json::to_writer(&mut out, l)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            eprintln!("{topic}: {} dead letters read{matching}, {} listed", report.read, report.listed.len());
        }
        Format::Table if matched == 0 => println!("{topic}: {} dead letters, none{filter}.", report.read),
        Format::Table => print!("{topic}: {} dead letters{matching}\n{}", report.read, report.to_text()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let selection = Selection {
        reasons: dlq::parse_reasons(&args.reasons)?,
        event_ids: args.event_ids.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<HashSet<_>>(),
    };
    let (dlq_topic, usage_topic) = (config.topics.dead_letter.clone(), config.topics.usage.clone());
    let (kafka, t, sel) = (config.kafka.clone(), dlq_topic.clone(), selection.clone());
    let found = tokio::task::spawn_blocking(move || {
        let bar = progress_bar(&format!("reading {t}"));
        let found = dlq::read_selection(&kafka, &t, &sel, &|n, total| bar.show(n, total));
        bar.finish();
        found
    })
    .await
    .context("the topic reader panicked")??;
    let selected = match found {
        Found::Read(s) => s,
        Found::Nothing(why) => {
            eprintln!("{why}\nnothing to replay.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let read = selected.read;
    let plan = dlq::plan_replay(&config.clickhouse, &config.schema, selected, &selection.event_ids).await.with_context(|| {
        format!(
            "checking which events {}.usage_ledger already holds (does the database exist? `ledger migrate`)",
            config.clickhouse.database
        )
    })?;
    if plan.counts.is_empty() {
        println!("{dlq_topic}: {read} dead letters, none matches the selection; nothing to replay.");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", plan.to_text(&dlq_topic));
    let to_send = plan.to_send.len();
    if to_send == 0 {
        println!("nothing to replay: every selected event is already in the ledger or cannot be replayed.");
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        println!("dry run: would replay {to_send} events to {usage_topic}; nothing sent.");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !ledger_ops::terminal::confirm(&format!("replay {to_send} events to {usage_topic}?"))? {
        println!("not replayed.");
        return Ok(ExitCode::from(1));
    }
    let result = dlq::send_replay(&config.kafka, &usage_topic, &plan)
        .await
        .with_context(|| format!("replaying to {usage_topic} (is Kafka running? `ledger stack status`)"))?;
    println!("{}", result.to_text(&usage_topic, &dlq_topic));
    if result.failed > 0 {
        anyhow::bail!(
            "{} of {to_send} replays were not acknowledged by Kafka ({}); run the same replay again: \
             events already in the ledger are skipped and the processor deduplicates the rest",
            result.failed,
            result.first_error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
