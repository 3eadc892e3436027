//! `ledger bench-consume`, the consume-only baseline of benches/pipeline.sh, and
//! `ledger bench-delete-topics`, which removes a benchmark run's topics afterwards.

use std::process::ExitCode;

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
    let c = ledger_ops::bench::consume_baseline(&config.kafka, &args.topic, args.expect).await?;
    let per_sec = u128::from(c.messages) * 1_000_000 / c.elapsed.as_micros().max(1);
    println!("consumed {} messages ({} payload bytes) in {:.2?}: {per_sec} messages/s", c.messages, c.bytes, c.elapsed);
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
    let config = args.config.load()?;
    let names = ledger_ops::bench::delete_run_topics(&config.kafka, &args.prefix).await?;
    println!("deleted {} topic(s) starting with {}", names.len(), args.prefix.trim());
    Ok(ExitCode::SUCCESS)
}
