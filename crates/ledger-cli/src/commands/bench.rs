//! `ledger bench-consume`: the consume-only baseline of benches/pipeline.sh.

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
