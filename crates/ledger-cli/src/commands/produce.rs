//! `ledger produce`: send usage events to Kafka (synthetic load or JSON lines); the sending is
//! [`ledger_ops::produce`].

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use ledger_loadgen::Synthetic;
use ledger_ops::produce;
use ledger_ops::OpsError;

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

Events are Avro (schemas/avro/usage_event.avsc), keyed by tenant_id, framed as schema.framing says:
single-object encoding (the default) or the Confluent wire format (schema id from schema.ids or
the registry, where `produce` registers the schema under <topic>-value).
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
    #[arg(long, value_name = "D", requires = "rate", value_parser = produce::parse_duration)]
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

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let topic = args.topic.clone().unwrap_or_else(|| config.topics.usage.clone());
    let partitions = config.processor.partitions;
    ledger_kafka::admin::ensure_topics(&config.kafka, &ledger_kafka::admin::ledger_topics(&config.topics, partitions))
        .await
        .map_err(|e| {
            let settings = e.is_settings();
            super::hinted(e, settings, "creating topics (is Kafka running? try `ledger stack up`)")
        })?;
    let (producer, wire) = (produce::load_producer(&config.kafka)?, produce::wire_format(&config.schema, &topic).await?);
    if let (Some(rate), Some(duration)) = (args.rate, args.duration) {
        let planned = u64::try_from(u128::from(rate) * duration.as_millis() / 1000).unwrap_or(u64::MAX);
        let total = args.synthetic.map_or(planned, |n| n.min(planned)).max(1);
        let generator = produce::generator(args.seed, args.tenants, &args.duplicates, &args.invalid)?;
        let bar =
            bar(args.quiet, total, "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, target {msg}/s, eta {eta})");
        bar.set_message(rate.to_string());
        let sent = produce::send_paced(&producer, &topic, wire, generator, rate, total, &|n| bar.set_position(n)).await?;
        bar.finish_and_clear();
        eprintln!("{}", sent.paced_summary(&topic, rate, duration));
        return Ok(ExitCode::SUCCESS);
    }
    let messages: Box<dyn Iterator<Item = Result<Synthetic, OpsError>>> = match (&args.synthetic, &args.json) {
        (Some(n), _) => {
            let mut generator = produce::generator(args.seed, args.tenants, &args.duplicates, &args.invalid)?;
            Box::new((0..*n).map(move |_| Ok(generator.next_message())))
        }
        (None, Some(path)) => Box::new(produce::json_lines(path)?),
        (None, None) => anyhow::bail!("say what to send: --synthetic N, --rate R --duration D or --json FILE"),
    };
    let quiet = args.quiet || args.synthetic.is_none();
    let bar = bar(quiet, args.synthetic.unwrap_or(0), "{spinner} producing [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})");
    let sent = produce::send_all(&producer, &topic, wire, messages, &|n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let per_sec = u128::from(sent.total()) * 1_000_000 / sent.all_acknowledged.as_micros().max(1);
    eprintln!("produced {} messages to {topic} in {:.1?} ({per_sec}/s): {}", sent.total(), sent.all_acknowledged, sent.kinds());
    Ok(ExitCode::SUCCESS)
}

fn bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
    b
}
