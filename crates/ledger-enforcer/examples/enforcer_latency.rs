//! Measures the enforcer hop on the real Kafka: from producing a spend update that crosses a
//! threshold to a consumer seeing the signal (p50 / p99 / max), and how fast a (re)start
//! replays the compacted spend topic.
//!
//! ```bash
//! scripts/stack.sh up
//! cargo run --release -p ledger-enforcer --example enforcer_latency -- 300 200000
//! ```
//! Arguments: crossings to time (default 300), spend records to replay (default 100000).
//! Uses fresh topics (`bench.enforcer.<random>.*`) on `LEDGER_BENCH_BROKERS` (127.0.0.1:9092).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use ledger_core::money::Money;
use ledger_core::signal::BudgetState;
use ledger_core::spend::{SpendUpdate, BUCKET_HOUR};
use ledger_enforcer::config::EnforcerSettings;
use ledger_enforcer::{Enforcer, EnforcerConfig, Stats};
use ledger_kafka::{KafkaConfig, TopicNames};
use ledger_schema::{BudgetSignalCodec, SpendUpdateCodec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

fn spend(tenant: &str, hour: chrono::DateTime<Utc>, partition: i32, usd: i64, offset: i64) -> SpendUpdate {
    SpendUpdate {
        scope: ledger_core::attribution::Attribution::tenant(tenant).with_model(None).to_owned_key(),
        period_start: hour,
        bucket: BUCKET_HOUR.into(),
        source_topic: "bench".into(),
        source_partition: partition,
        cost_usd: Money::from_usd(usd),
        input_tokens: 1,
        output_tokens: 1,
        total_tokens: 2,
        request_count: 1,
        last_offset: offset,
        max_event_time: hour,
        updated_at: Utc::now(),
    }
}

async fn send(
    producer: &FutureProducer,
    codec: &SpendUpdateCodec,
    topic: &str,
    u: &SpendUpdate,
) -> rdkafka::producer::DeliveryFuture {
    let payload = codec.encode(u).expect("encode");
    let key = u.key();
    ledger_kafka::producer::enqueue(producer, FutureRecord::to(topic).key(&key).payload(&payload)).await.expect("enqueue")
}

fn start(config: &EnforcerConfig) -> (CancellationToken, Arc<Stats>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(Stats::default());
    let token = CancellationToken::new();
    let enforcer = Enforcer::new(config.clone(), stats.clone()).expect("enforcer");
    let t = token.clone();
    let handle = tokio::spawn(async move { enforcer.run(t).await.expect("enforcer run") });
    (token, stats, handle)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let crossings = args.first().copied().unwrap_or(300) as usize;
    let replay = args.get(1).copied().unwrap_or(100_000) as i64;
    let brokers = std::env::var("LEDGER_BENCH_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let kafka = KafkaConfig { brokers, ..KafkaConfig::default() };
    let suffix = format!("{:x}", Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let topics = TopicNames::with_prefix(&format!("bench.enforcer.{suffix}."));
    let budgets = std::env::temp_dir().join(format!("bench-budgets-{suffix}.toml"));
    let mut text = String::from("[defaults]\nlookahead_secs = 0\n");
    for i in 0..crossings {
        text.push_str(&format!(
            "[[budget]]\nname = \"t{i}\"\nscope = {{ tenant_id = \"t{i}\" }}\nperiod = \"day\"\nlimit_usd = \"1\"\n\
             [[budget.threshold]]\nat_percent = \"100\"\naction = \"block\"\n"
        ));
    }
    std::fs::write(&budgets, text).expect("budgets file");
    let settings =
        EnforcerSettings { budgets_file: budgets.clone(), group_id: format!("bench-{suffix}"), ..EnforcerSettings::default() };
    let config =
        EnforcerConfig { kafka: kafka.clone(), topics: topics.clone(), settings, processor_group: "ledger-processor".into() };
    ledger_kafka::admin::ensure_topics(&kafka, &ledger_kafka::admin::ledger_topics(&topics, 4)).await.expect("topics");
    tokio::time::sleep(Duration::from_secs(2)).await; // leaders of the fresh topics

    // A consumer of the signals topic that reports each BLOCK's arrival.
    let group = format!("bench-reader-{suffix}");
    let consumer: StreamConsumer = kafka
        .consumer_config(&[("group.id", &group), ("enable.auto.commit", "false"), ("fetch.wait.max.ms", "5")])
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(&topics.signals, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, BudgetState, Instant)>();
    tokio::spawn(async move {
        let codec = BudgetSignalCodec::new().expect("codec");
        loop {
            let m = consumer.recv().await.expect("signal");
            let s = codec.decode(m.payload().expect("payload")).expect("decode");
            let _ = tx.send((s.scope, s.state, Instant::now()));
        }
    });

    let (token, stats, handle) = start(&config);
    let mut initial = 0;
    while initial < crossings {
        let (_, state, _) = rx.recv().await.expect("signals");
        assert_eq!(state, BudgetState::Ok);
        initial += 1;
    }
    let producer = ledger_kafka::producer::idempotent_producer(&kafka).expect("producer");
    let codec = SpendUpdateCodec::new().expect("codec");
    let hour = Utc::now().duration_trunc(chrono::Duration::hours(1)).expect("hour");
    let mut latencies_us = Vec::with_capacity(crossings);
    for i in 0..crossings {
        let u = spend(&format!("t{i}"), hour, 0, 2, 1);
        let started = Instant::now();
        let delivery = send(&producer, &codec, &topics.spend, &u).await;
        let key = format!("day:tenant_id=t{i}");
        loop {
            let (scope, state, at) = rx.recv().await.expect("signals");
            if scope == key && state == BudgetState::Block {
                latencies_us.push(at.duration_since(started).as_micros() as u64);
                break;
            }
        }
        delivery.await.expect("delivery").expect("ack");
    }
    latencies_us.sort_unstable();
    let ms = |us: u64| format!("{}.{} ms", us / 1000, (us % 1000) / 100);
    let q = |p: usize| latencies_us[(latencies_us.len() * p / 100).min(latencies_us.len() - 1)];
    println!(
        "spend update -> signal seen (enforcer hop, one crossing at a time, {crossings} crossings): p50 {}, p99 {}, max {}",
        ms(q(50)),
        ms(q(99)),
        ms(*latencies_us.last().unwrap_or(&0))
    );
    token.cancel();
    handle.await.expect("enforcer task");

    // Replay: many spend records (distinct keys of the budgets' scopes), then a restart.
    let mut pending = Vec::new();
    for j in 0..replay {
        let u = spend(&format!("t{}", j as usize % crossings), hour, (j / crossings as i64) as i32 % 1_000_000, 0, j);
        pending.push(send(&producer, &codec, &topics.spend, &u).await);
        if pending.len() >= 10_000 {
            for d in pending.drain(..) {
                d.await.expect("delivery").expect("ack");
            }
        }
    }
    for d in pending.drain(..) {
        d.await.expect("delivery").expect("ack");
    }
    let started = Instant::now();
    let (token, stats2, handle) = start(&config);
    while stats2.live.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let records = stats2.spend_updates.load(Ordering::Relaxed);
    let elapsed_ms = elapsed.as_millis().max(1) as u64;
    println!(
        "restart: read the signals topic and replayed {records} spend records in {elapsed_ms} ms ({} records/s), then live",
        records * 1000 / elapsed_ms
    );
    let _ = stats;
    let mut seen = HashMap::new();
    while let Ok((scope, state, _)) = rx.try_recv() {
        seen.insert(scope, state);
    }
    println!(
        "signals published after the restart: {} (expected 0: nothing changed)",
        stats2.signals_published.load(Ordering::Relaxed)
    );
    token.cancel();
    handle.await.expect("enforcer task");
    let _ = std::fs::remove_file(budgets);
}
