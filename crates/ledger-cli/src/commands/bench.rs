//! `ledger bench-consume`, the consume-only baseline of benches/pipeline.sh, and
//! `ledger bench-delete-topics`, which removes a benchmark run's topics afterwards.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use crate::config::ConfigArgs;

/// Arguments of `ledger bench-consume`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads a topic from the beginning with a fresh consumer group and the processor's consumer
settings, touching every payload, and prints the rate. Used by benches/pipeline.sh as the
'consume alone' baseline.

Example:
  ledger bench-consume --topic llm.usage.v1 --expect 1000000")]
pub(crate) struct BenchConsumeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Stop after this many messages.
    #[arg(long)]
    expect: u64,
}

pub(crate) async fn run(args: BenchConsumeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let group = format!("bench-consume-{}", std::process::id());
    let (consumer, _context): (StreamConsumer<_>, _) =
        ledger_kafka::consumer::manual_offset_consumer(&config.kafka, &group, None, Default::default())?;
    consumer.subscribe(&[args.topic.as_str()])?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < args.expect {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(m)) => {
                bytes += m.payload().map(|p| p.len() as u64).unwrap_or(0);
                n += 1;
            }
            Ok(Err(e)) => anyhow::bail!("consuming {}: {e}", args.topic),
            Err(_) => anyhow::bail!("no message for 30 s after {n} of {} from {}", args.expect, args.topic),
        }
    }
    let elapsed = started.elapsed();
    let per_sec = u128::from(n) * 1_000_000 / elapsed.as_micros().max(1);
    println!("consumed {n} messages ({bytes} payload bytes) in {elapsed:.2?}: {per_sec} messages/s");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `ledger bench-delete-topics`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Deletes every topic whose name starts with the prefix: the benchmark scripts remove their
run's topics with it, so repeated runs do not fill the broker's disk. Refuses a prefix that
would match the default ledger topics (llm.*).

Example:
  ledger bench-delete-topics --prefix bench1795901717.")]
pub(crate) struct BenchDeleteTopicsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Delete the topics whose name starts with this.
    #[arg(long)]
    prefix: String,
}

pub(crate) async fn delete_topics(args: BenchDeleteTopicsArgs) -> anyhow::Result<ExitCode> {
    let prefix = args.prefix.trim();
    let defaults = ledger_kafka::TopicNames::default();
    let guarded = [&defaults.usage, &defaults.dead_letter, &defaults.spend, &defaults.signals];
    if prefix.len() < 3 || guarded.iter().any(|t| t.starts_with(prefix)) {
        anyhow::bail!(
            "refusing prefix {prefix:?}: it is shorter than 3 characters or matches the ledger's own topics; \
             pass a benchmark run's prefix, such as bench1795901717."
        );
    }
    let config = args.config.load()?;
    let names = ledger_kafka::admin::delete_topics_with_prefix(&config.kafka, prefix, Duration::from_secs(10)).await?;
    println!("deleted {} topic(s) starting with {prefix}", names.len());
    Ok(ExitCode::SUCCESS)
}
