//! Sending usage events to Kafka for `ledger produce`: synthetic load (as fast as Kafka takes
//! it, or paced at a rate), or the user's own JSON lines. Keyed by tenant, as every producer of
//! the usage topic is (the processor's partitioning and dedupe rely on it).

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

use ledger_core::UsageEvent;
use ledger_kafka::producer::AckCounter;
use ledger_loadgen::{Generator, GeneratorOptions, InvalidKind, Synthetic};
use ledger_registry::SchemaSettings;
use ledger_schema::WireFormat;

use crate::OpsError;

/// The producer of the load: delivery reports are counted, never awaited one by one.
pub type LoadProducer = ThreadedProducer<AckCounter>;

/// A producer of load for `kafka` (batches for up to 25 ms: fewer, larger requests).
pub fn load_producer(kafka: &ledger_kafka::KafkaConfig) -> Result<LoadProducer, OpsError> {
    Ok(ledger_kafka::producer::counting_producer(kafka, &[("linger.ms", "25")])?)
}

/// How the events for `topic` are framed (`schema.framing`); for the Confluent framing, the
/// current schema's id from `schema.ids` or the registry.
pub async fn wire_format(schema: &SchemaSettings, topic: &str) -> Result<WireFormat, OpsError> {
    Ok(ledger_registry::wire_format(schema, topic).await?)
}

/// What a run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// New valid events.
    pub valid: u64,
    /// Resent duplicates.
    pub duplicates: u64,
    /// Invalid messages (the processor dead-letters them).
    pub invalid: u64,
    /// Acknowledged by Kafka at the end.
    pub acknowledged: u64,
    /// Time to hand every message to the producer.
    pub sending: Duration,
    /// Time until Kafka acknowledged every message.
    pub all_acknowledged: Duration,
    /// Paced runs: the most events the run was behind its schedule.
    pub max_behind: u64,
}

impl Sent {
    /// Every message sent.
    pub fn total(&self) -> u64 {
        self.valid + self.duplicates + self.invalid
    }

    /// `N new, N resent duplicates, N invalid`.
    pub fn kinds(&self) -> String {
        format!("{} new, {} resent duplicates, {} invalid", self.valid, self.duplicates, self.invalid)
    }

    /// What a paced run (`rate` events/s planned for `duration`) achieved, for people.
    pub fn paced_summary(&self, topic: &str, rate: u64, duration: Duration) -> String {
        let achieved = u128::from(self.total()) * 1_000_000 / self.sending.as_micros().max(1);
        let mut text = format!(
            "produced {} messages to {topic} in {:.1?}: achieved {achieved} events/s (target {rate}/s); all {} acknowledged \
             by Kafka after {:.1?}; {}; most behind schedule: {} events",
            self.total(),
            self.sending,
            self.acknowledged,
            self.all_acknowledged,
            self.kinds(),
            self.max_behind
        );
        if self.sending > duration + Duration::from_secs(1) {
            text.push_str(&format!(
                "\nnote: the run took {:.1?} instead of {duration:?}: this machine could not sustain {rate} events/s",
                self.sending
            ));
        }
        text
    }

    fn count(&mut self, message: &Synthetic) {
        match message {
            Synthetic::Valid(_) => self.valid += 1,
            Synthetic::Duplicate(_) => self.duplicates += 1,
            Synthetic::Invalid(..) => self.invalid += 1,
        }
    }
}

/// A percentage such as `5` or `0.25`, read exactly, as parts per million.
pub fn ppm(pct: &str, what: &str) -> Result<u32, OpsError> {
    let invalid = || OpsError::Invalid(format!("--{what} must be a percentage between 0 and 100 such as 5 or 0.5 (got {pct:?})"));
    let d = ledger_core::decimal::Decimal::parse(pct).map_err(|_| invalid())?;
    let scaled = d.to_scale_half_even(4).map_err(|_| invalid())?.value;
    if !(0..=1_000_000).contains(&scaled) {
        return Err(invalid());
    }
    Ok(scaled as u32)
}

/// `90s`, `5m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
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
    wire: WireFormat,
    message: &'m Synthetic,
    buf: &mut Vec<u8>,
) -> Result<&'m [u8], OpsError> {
    buf.clear();
    match message.event() {
        Some(e) => {
            codec.encode_framed_into(e, wire, buf)?;
            Ok(e.attribution.tenant_id.as_bytes())
        }
        None => {
            buf.extend_from_slice(GARBAGE);
            Ok(b"garbage")
        }
    }
}

/// Hands one message to librdkafka, waiting while its queue is full.
async fn send(producer: &LoadProducer, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), OpsError> {
    Ok(ledger_kafka::producer::enqueue_counted(producer, BaseRecord::to(topic).key(key).payload(payload)).await?)
}

/// An error once Kafka finally refused a message.
fn check_refused(acks: &AckCounter) -> Result<(), OpsError> {
    if acks.failed() > 0 {
        return Err(OpsError::Invalid(format!(
            "Kafka did not acknowledge a message after {}: {} (is the broker up? `ledger stack status`)",
            acks.acknowledged(),
            acks.first_error().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Waits until Kafka acknowledged `sent` messages, reporting the count to `progress`.
async fn wait_acknowledged(producer: &LoadProducer, sent: u64, progress: &(dyn Fn(u64) + Sync)) -> Result<u64, OpsError> {
    let acks = producer.context();
    loop {
        check_refused(acks)?;
        let acknowledged = acks.acknowledged();
        progress(acknowledged);
        if acknowledged >= sent {
            return Ok(acknowledged);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// The synthetic generator of `options`, with the percentages given as text.
pub fn generator(seed: u64, tenants: usize, duplicates_pct: &str, invalid_pct: &str) -> Result<Generator, OpsError> {
    Ok(Generator::new(GeneratorOptions {
        seed,
        tenants,
        duplicate_ppm: ppm(duplicates_pct, "duplicates")?,
        invalid_ppm: ppm(invalid_pct, "invalid")?,
        ..GeneratorOptions::default()
    }))
}

/// The events of a JSON-lines file (`-` for stdin), one usage event per line; blank lines
/// are skipped, a line that is not an event is an error naming it.
pub fn json_lines(path: &str) -> Result<impl Iterator<Item = Result<Synthetic, OpsError>>, OpsError> {
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path).map_err(|e| OpsError::Invalid(format!("cannot open {path}: {e}")))?;
        Box::new(std::io::BufReader::new(file))
    };
    Ok(reader.lines().enumerate().filter_map(|(i, line)| match line {
        Ok(l) if l.trim().is_empty() => None,
        Ok(l) => Some(
            serde_json::from_str::<UsageEvent>(&l)
                .map(Synthetic::Valid)
                .map_err(|e| OpsError::Invalid(format!("line {}: not a usage event: {e}", i + 1))),
        ),
        Err(e) => Some(Err(OpsError::Invalid(format!("reading input: {e}")))),
    }))
}

/// Sends `messages` as fast as Kafka takes them, framed as `wire` says, and waits for every
/// acknowledgement; `progress` hears the number acknowledged so far.
pub async fn send_all(
    producer: &LoadProducer,
    topic: &str,
    wire: WireFormat,
    messages: impl Iterator<Item = Result<Synthetic, OpsError>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sent, OpsError> {
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;
    let started = Instant::now();
    let mut sent = Sent::default();
    let mut payload = Vec::with_capacity(512);
    for message in messages {
        let message = message?;
        let key = encode_message(&codec, wire, &message, &mut payload)?;
        send(producer, topic, key, &payload).await?;
        sent.count(&message);
        if sent.total() % 10_000 == 0 {
            check_refused(producer.context())?;
            progress(producer.context().acknowledged());
        }
    }
    sent.sending = started.elapsed();
    sent.acknowledged = wait_acknowledged(producer, sent.total(), progress).await?;
    sent.all_acknowledged = started.elapsed();
    Ok(sent)
}

/// Paced synthetic load: `total` events at `rate` per second. Each step sends what is due by
/// the clock (`rate * elapsed`), so a slow moment is caught up instead of lowering the
/// average; the delivery reports are counted beside it, so pacing never waits for them.
/// `progress` hears the number sent so far. Events are framed as `wire` says.
pub async fn send_paced(
    producer: &LoadProducer,
    topic: &str,
    wire: WireFormat,
    mut generator: Generator,
    rate: u64,
    total: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sent, OpsError> {
    if rate == 0 {
        return Err(OpsError::Invalid("--rate must be at least 1 event per second".into()));
    }
    let codec = ledger_schema::Codec::<UsageEvent>::new()?;
    let mut payload = Vec::with_capacity(512);
    // Each message is written over the previous one: a new valid event reuses its strings.
    let mut message = Synthetic::Invalid(InvalidKind::Garbage, None);
    let started = Instant::now();
    let mut sent = Sent::default();
    let mut count = 0u64;
    while count < total {
        // Behind schedule at the end, it keeps sending until every planned event is out: the
        // achieved rate tells the truth.
        let elapsed = started.elapsed();
        let due = u64::try_from(u128::from(rate) * elapsed.as_micros() / 1_000_000).unwrap_or(u64::MAX).min(total);
        if due <= count {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        sent.max_behind = sent.max_behind.max(due - count);
        // At most 10 ms of load per step, so the progress bar and the clock stay current.
        let step = (due - count).min((rate / 100).max(1));
        for _ in 0..step {
            generator.next_message_into(&mut message);
            sent.count(&message);
            let key = encode_message(&codec, wire, &message, &mut payload)?;
            send(producer, topic, key, &payload).await?;
        }
        count += step;
        check_refused(producer.context())?;
        progress(count);
    }
    sent.sending = started.elapsed();
    sent.acknowledged = wait_acknowledged(producer, count, &|_| {}).await?;
    sent.all_acknowledged = started.elapsed();
    Ok(sent)
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
