//! `ledger produce`: send usage events to Kafka (synthetic load or JSON lines).

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

use ledger_kafka::producer::AckCounter;

use ledger_core::UsageEvent;
use ledger_loadgen::{Generator, GeneratorOptions, InvalidKind, Synthetic};

use crate::config::ConfigArgs;

/// Arguments of `ledger produce`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger produce --synthetic 10000                      # 10,000 realistic events, several tenants and models
  ledger produce --synthetic 200000 --duplicates 5 --invalid 1 --seed 7
  ledger produce --json events.jsonl                    # your own events, one JSON object per line
  cat events.jsonl | ledger produce --json -
  ledger produce --rate 50000 --duration 5m             # paced load: 50,000 events/s for 5 minutes
  ledger produce --rate 2000 --duration 30s --duplicates 2 --invalid 0.5 --tenants 12

Events are Avro (single-object encoding, schemas/avro/usage_event.avsc), keyed by tenant_id.
The producer batches for up to 25 ms (linger.ms; set kafka.options to change it): a load
generator trades that latency for fewer, larger requests.")]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Send N synthetic events (with --rate: at most N).
    #[arg(long, value_name = "N", conflicts_with = "json", required_unless_present_any = ["json", "rate"])]
    synthetic: Option<u64>,
    /// Pace synthetic events at R events per second (realistic load for benchmarks).
    #[arg(long, value_name = "R", conflicts_with = "json", requires = "duration")]
    rate: Option<u64>,
    /// How long to produce at --rate: `90s`, `5m`, `1h`, `500ms` or plain seconds.
    #[arg(long, value_name = "D", requires = "rate", value_parser = parse_duration)]
    duration: Option<std::time::Duration>,
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

/// `90s`, `5m`, `1h`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 90s, 5m, 1h or 500ms"))?;
    let d = match unit {
        "" | "s" => std::time::Duration::from_secs(n),
        "ms" => std::time::Duration::from_millis(n),
        "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "h" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err("the duration must be positive".to_owned());
    }
    Ok(d)
}

/// Bytes of the garbage message (not an Avro datum) among the invalid synthetic ones.
const GARBAGE: &[u8] = b"\xC3\x01not an avro datum";

/// Encodes the Kafka value of a generated message into `buf` (cleared first) and returns its
/// key: the tenant id, as for every producer of the usage topic (the processor's partitioning
/// and dedupe rely on it).
fn encode_message<'m>(
    codec: &ledger_schema::Codec<UsageEvent>,
    message: &'m Synthetic,
    buf: &mut Vec<u8>,
) -> anyhow::Result<&'m [u8]> {
    buf.clear();
    match message.event() {
        Some(e) => {
            codec.encode_into(e, buf)?;
            Ok(e.attribution.tenant_id.as_bytes())
        }
        None => {
            buf.extend_from_slice(GARBAGE);
            Ok(b"garbage")
        }
    }
}

type LoadProducer = ThreadedProducer<AckCounter>;

/// Hands one message to librdkafka, waiting while its queue is full.
async fn send(producer: &LoadProducer, topic: &str, key: &[u8], payload: &[u8]) -> anyhow::Result<()> {
    ledger_kafka::producer::enqueue_counted(producer, BaseRecord::to(topic).key(key).payload(payload))
        .await
        .context("could not hand a message to the Kafka producer")
}

/// An error once Kafka finally refused a message.
fn check_refused(acks: &AckCounter) -> anyhow::Result<()> {
    if acks.failed() > 0 {
        anyhow::bail!(
            "Kafka did not acknowledge a message after {}: {} (is the broker up? `ledger stack status`)",
            acks.acknowledged(),
            acks.first_error().unwrap_or_default()
        );
    }
    Ok(())
}

/// Waits until Kafka acknowledged `sent` messages, moving `bar` along.
async fn wait_acknowledged(producer: &LoadProducer, sent: u64, bar: &ProgressBar) -> anyhow::Result<u64> {
    let acks = producer.context();
    loop {
        check_refused(acks)?;
        let acknowledged = acks.acknowledged();
        bar.set_position(acknowledged);
        if acknowledged >= sent {
            return Ok(acknowledged);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let topic = args.topic.clone().unwrap_or_else(|| config.topics.usage.clone());
    let partitions = config.processor.partitions;
    ledger_kafka::admin::ensure_topics(&config.kafka, &ledger_kafka::admin::ledger_topics(&config.topics, partitions))
        .await
        .context("creating topics (is Kafka running? try `ledger stack up`)")?;
    let producer = ledger_kafka::producer::counting_producer(&config.kafka, &[("linger.ms", "25")])?;
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;
    if let (Some(rate), Some(duration)) = (args.rate, args.duration) {
        return run_paced(&args, &producer, codec, &topic, rate, duration).await;
    }

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
        (None, None) => anyhow::bail!("say what to send: --synthetic N, --rate R --duration D or --json FILE"),
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
    let mut payload = Vec::with_capacity(512);
    for message in messages {
        let message = message?;
        let key = encode_message(&codec, &message, &mut payload)?;
        send(&producer, &topic, key, &payload).await?;
        match message {
            Synthetic::Valid(_) => valid += 1,
            Synthetic::Duplicate(_) => duplicates += 1,
            Synthetic::Invalid(..) => invalid += 1,
        }
        if (valid + duplicates + invalid) % 10_000 == 0 {
            check_refused(producer.context())?;
            bar.set_position(producer.context().acknowledged());
        }
    }
    wait_acknowledged(&producer, valid + duplicates + invalid, &bar).await?;
    bar.finish_and_clear();
    let total = valid + duplicates + invalid;
    let elapsed = started.elapsed();
    let per_sec = u128::from(total) * 1_000_000 / elapsed.as_micros().max(1);
    eprintln!(
        "produced {total} messages to {topic} in {elapsed:.1?} ({per_sec}/s): {valid} new, {duplicates} resent duplicates, {invalid} invalid"
    );
    Ok(ExitCode::SUCCESS)
}

/// `--rate R --duration D`: paced synthetic load. Each tick sends what is due by the clock
/// (`rate * elapsed`), so a slow moment is caught up instead of lowering the average; the
/// producer's delivery reports are counted beside it, so pacing never waits for them.
async fn run_paced(
    args: &ProduceArgs,
    producer: &LoadProducer,
    codec: ledger_schema::Codec<UsageEvent>,
    topic: &str,
    rate: u64,
    duration: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    if rate == 0 {
        anyhow::bail!("--rate must be at least 1 event per second");
    }
    let planned = u64::try_from(u128::from(rate) * duration.as_millis() / 1000).unwrap_or(u64::MAX);
    let total = args.synthetic.map_or(planned, |n| n.min(planned)).max(1);
    let mut generator = Generator::new(GeneratorOptions {
        seed: args.seed,
        tenants: args.tenants,
        duplicate_ppm: ppm(&args.duplicates, "duplicates")?,
        invalid_ppm: ppm(&args.invalid, "invalid")?,
        ..GeneratorOptions::default()
    });
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, target {msg}/s, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(rate.to_string());
        b
    };

    let mut payload = Vec::with_capacity(512);
    // Each message is written over the previous one: a new valid event reuses its strings.
    let mut message = Synthetic::Invalid(InvalidKind::Garbage, None);
    let started = Instant::now();
    let (mut sent, mut valid, mut duplicates, mut invalid) = (0u64, 0u64, 0u64, 0u64);
    let mut max_behind = 0u64;
    while sent < total {
        // Behind schedule at the end, it keeps sending until every planned event is out: the
        // achieved rate printed below tells the truth.
        let elapsed = started.elapsed();
        let due = u64::try_from(u128::from(rate) * elapsed.as_micros() / 1_000_000).unwrap_or(u64::MAX).min(total);
        if due <= sent {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        }
        max_behind = max_behind.max(due - sent);
        // At most 10 ms of load per step, so the progress bar and the clock stay current.
        let step = (due - sent).min((rate / 100).max(1));
        for _ in 0..step {
            generator.next_message_into(&mut message);
            match message {
                Synthetic::Valid(_) => valid += 1,
                Synthetic::Duplicate(_) => duplicates += 1,
                Synthetic::Invalid(..) => invalid += 1,
            }
            let key = encode_message(&codec, &message, &mut payload)?;
            send(producer, topic, key, &payload).await?;
        }
        sent += step;
        check_refused(producer.context())?;
        bar.set_position(sent);
    }
    let sending = started.elapsed();
    let acknowledged = wait_acknowledged(producer, sent, &ProgressBar::hidden()).await?;
    bar.finish_and_clear();
    let all_acked = started.elapsed();
    let achieved = u128::from(sent) * 1_000_000 / sending.as_micros().max(1);
    eprintln!(
        "produced {sent} messages to {topic} in {sending:.1?}: achieved {achieved} events/s (target {rate}/s); \
         all {acknowledged} acknowledged by Kafka after {all_acked:.1?}; {valid} new, {duplicates} resent duplicates, \
         {invalid} invalid; most behind schedule: {max_behind} events"
    );
    if sending > duration + std::time::Duration::from_secs(1) {
        eprintln!("note: the run took {sending:.1?} instead of {duration:?}: this machine could not sustain {rate} events/s");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "0", "5x", "m", "-1s", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_are_read_exactly() {
        assert_eq!(ppm("5", "duplicates").unwrap(), 50_000);
        assert_eq!(ppm("0.25", "invalid").unwrap(), 2_500);
        assert!(ppm("101", "invalid").is_err());
    }
}
