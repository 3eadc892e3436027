//! `ledger produce`: send usage events to Kafka (synthetic load or JSON lines).

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{FutureProducer, FutureRecord};

use ledger_core::UsageEvent;
use ledger_loadgen::{Generator, GeneratorOptions, Synthetic};

use crate::config::ConfigArgs;

/// Arguments of `ledger produce`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger produce --synthetic 10000                      # 10,000 realistic events, several tenants and models
  ledger produce --synthetic 200000 --duplicates 5 --invalid 1 --seed 7
  ledger produce --json events.jsonl                    # your own events, one JSON object per line
  cat events.jsonl | ledger produce --json -

Events are Avro (single-object encoding, schemas/avro/usage_event.avsc), keyed by tenant_id.")]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Send N synthetic events.
    #[arg(long, value_name = "N", conflicts_with = "json", required_unless_present = "json")]
    synthetic: Option<u64>,
    /// Send the events of a JSON-lines file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// Seed of the synthetic generator (same seed, same events).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of synthetic tenants.
    #[arg(long, default_value_t = 8)]
    tenants: usize,
    /// Percentage of resent duplicates among synthetic messages (e.g. 5 or 0.5).
    #[arg(long, default_value = "0", value_name = "PCT")]
    duplicates: String,
    /// Percentage of invalid synthetic messages (dead-lettered by the processor).
    #[arg(long, default_value = "0", value_name = "PCT")]
    invalid: String,
    /// Target topic (default: topics.usage from the config).
    #[arg(long)]
    topic: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A percentage such as `5` or `0.25`, read exactly, as parts per million.
fn ppm(pct: &str, what: &str) -> anyhow::Result<u32> {
    let invalid = || anyhow::anyhow!("--{what} must be a percentage between 0 and 100 such as 5 or 0.5 (got {pct:?})");
    let d = ledger_core::decimal::Decimal::parse(pct).map_err(|_| invalid())?;
    let scaled = d.to_scale_half_even(4).map_err(|_| invalid())?.value;
    if !(0..=1_000_000).contains(&scaled) {
        return Err(invalid());
    }
    Ok(scaled as u32)
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let topic = args.topic.clone().unwrap_or_else(|| config.topics.usage.clone());
    let partitions = config.processor.partitions;
    ledger_kafka::admin::ensure_topics(&config.kafka, &ledger_kafka::admin::ledger_topics(&config.topics, partitions))
        .await
        .context("creating topics (is Kafka running? try `ledger stack up`)")?;
    let producer = ledger_kafka::producer::idempotent_producer(&config.kafka)?;
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;

    let messages: Box<dyn Iterator<Item = anyhow::Result<Synthetic>>> = match (&args.synthetic, &args.json) {
        (Some(n), _) => {
            let mut generator = Generator::new(GeneratorOptions {
                seed: args.seed,
                tenants: args.tenants,
                duplicate_ppm: ppm(&args.duplicates, "duplicates")?,
                invalid_ppm: ppm(&args.invalid, "invalid")?,
                ..GeneratorOptions::default()
            });
            Box::new((0..*n).map(move |_| Ok(generator.next_message())))
        }
        (None, Some(path)) => {
            let reader: Box<dyn BufRead> = if path == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?,
                ))
            };
            Box::new(reader.lines().enumerate().filter_map(|(i, line)| match line {
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => Some(
                    serde_json::from_str::<UsageEvent>(&l)
                        .map(Synthetic::Valid)
                        .with_context(|| format!("line {}: not a usage event", i + 1)),
                ),
                Err(e) => Some(Err(e).context("reading input")),
            }))
        }
        (None, None) => anyhow::bail!("say what to send: --synthetic N or --json FILE"),
    };

    let bar = if args.quiet || args.synthetic.is_none() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(args.synthetic.unwrap_or(0));
        b.set_style(
            ProgressStyle::with_template("{spinner} producing [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    };
    let started = Instant::now();
    let (mut valid, mut duplicates, mut invalid) = (0u64, 0u64, 0u64);
    let mut chunk: Vec<(String, Vec<u8>)> = Vec::with_capacity(10_000);
    for message in messages {
        let message = message?;
        let (key, payload) = match &message {
            Synthetic::Valid(e) | Synthetic::Duplicate(e) | Synthetic::Invalid(_, Some(e)) => {
                (e.tenant_id.clone(), codec.encode(e)?)
            }
            Synthetic::Invalid(_, None) => ("garbage".to_owned(), b"\xC3\x01not an avro datum".to_vec()),
        };
        match message {
            Synthetic::Valid(_) => valid += 1,
            Synthetic::Duplicate(_) => duplicates += 1,
            Synthetic::Invalid(..) => invalid += 1,
        }
        chunk.push((key, payload));
        if chunk.len() == 10_000 {
            send_chunk(&producer, &topic, &mut chunk).await?;
            bar.inc(10_000);
        }
    }
    let rest = chunk.len() as u64;
    send_chunk(&producer, &topic, &mut chunk).await?;
    bar.inc(rest);
    bar.finish_and_clear();
    let total = valid + duplicates + invalid;
    let elapsed = started.elapsed();
    let per_sec = u128::from(total) * 1_000_000 / elapsed.as_micros().max(1);
    eprintln!(
        "produced {total} messages to {topic} in {elapsed:.1?} ({per_sec}/s): {valid} new, {duplicates} resent duplicates, {invalid} invalid"
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends a chunk and waits until Kafka acknowledged every message of it.
async fn send_chunk(producer: &FutureProducer, topic: &str, chunk: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut deliveries = Vec::with_capacity(chunk.len());
    for (key, payload) in chunk.iter() {
        let record = FutureRecord::to(topic).key(key.as_bytes()).payload(payload.as_slice());
        deliveries.push(ledger_kafka::producer::enqueue(producer, record).await?);
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!(
                "Kafka did not acknowledge a message: {e} (is the broker up? `ledger stack status`)"
            ),
            Err(_) => anyhow::bail!("the producer shut down before Kafka acknowledged every message"),
        }
    }
    chunk.clear();
    Ok(())
}
