//! Ingest counters, rendered in the Prometheus text format at `GET /metrics` (the same style
//! as the processor's `ledger_processor::stats`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ledger_core::histogram::{Buckets, Histogram, SumUnit};

/// Statuses always shown, even at zero, so dashboards and alerts find their series.
const SHOWN_STATUSES: [u16; 9] = [200, 202, 400, 401, 403, 413, 415, 429, 503];

/// gRPC status codes by number, as Prometheus labels (the names of the gRPC spec).
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// gRPC codes always shown, even at zero (the answers the export can give).
const SHOWN_GRPC_CODES: [usize; 5] = [0, 3, 8, 14, 16];

/// The outcomes of OTLP spans, as labels, in the order of `Metrics::otlp_spans`.
const SPAN_OUTCOMES: [&str; 3] = ["usage", "skipped", "rejected"];

/// Upper bounds (microseconds) of the acknowledgement-time buckets, and their `le` labels (seconds).
const ACK_SECONDS: Buckets<14> = [
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
];

/// Every counter of the ingest server.
#[derive(Debug)]
pub struct Metrics {
    /// Answers to `POST /v1/usage`, `/v1/traces` and `/v1/events`, by HTTP status (100..=599).
    requests: Box<[AtomicU64]>,
    /// Answers to OTLP/gRPC exports, by gRPC code.
    grpc_requests: [AtomicU64; GRPC_CODES.len()],
    /// OTLP spans by outcome ([`SPAN_OUTCOMES`]).
    otlp_spans: [AtomicU64; SPAN_OUTCOMES.len()],
    events_accepted: AtomicU64,
    events_rate_limited: AtomicU64,
    ack: Histogram<{ ACK_SECONDS.len() }>,
    keys_active: AtomicU64,
    key_reloads: AtomicU64,
    key_reload_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: (100..600).map(|_| AtomicU64::new(0)).collect(),
            grpc_requests: Default::default(),
            otlp_spans: Default::default(),
            events_accepted: AtomicU64::new(0),
            events_rate_limited: AtomicU64::new(0),
            ack: Histogram::default(),
            keys_active: AtomicU64::new(0),
            key_reloads: AtomicU64::new(0),
            key_reload_failures: AtomicU64::new(0),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// Counts one answer.
    pub fn request(&self, status: u16) {
        if let Some(c) = status.checked_sub(100).and_then(|i| self.requests.get(usize::from(i))) {
            add(c, 1);
        }
    }

    /// Answers counted with `status`.
    pub fn requests(&self, status: u16) -> u64 {
        status.checked_sub(100).and_then(|i| self.requests.get(usize::from(i))).map(get).unwrap_or(0)
    }

    /// Counts one answer to an OTLP/gRPC export.
    pub fn grpc_request(&self, code: tonic::Code) {
        if let Some(c) = usize::try_from(code as i32).ok().and_then(|i| self.grpc_requests.get(i)) {
            add(c, 1);
        }
    }

    /// Answers to OTLP/gRPC exports with `code`.
    pub fn grpc_requests(&self, code: tonic::Code) -> u64 {
        usize::try_from(code as i32).ok().and_then(|i| self.grpc_requests.get(i)).map(get).unwrap_or(0)
    }

    /// Counts the spans of an authenticated, decoded OTLP export: `usage` spans that became
    /// events, `skipped` spans without token attributes, `rejected` usage spans that could not
    /// be used.
    pub fn otlp_spans(&self, usage: usize, skipped: usize, rejected: usize) {
        for (counter, n) in self.otlp_spans.iter().zip([usage, skipped, rejected]) {
            add(counter, n as u64);
        }
    }

    /// Counts a request whose `events` Kafka acknowledged, `took` after it was received.
    pub fn acknowledged(&self, events: usize, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // The histogram first: a scrape that sees the events sees their latency.
        self.ack.observe(&ACK_SECONDS, micros);
        add(&self.events_accepted, events as u64);
    }

    /// Counts the events of a request refused by its key's rate limit.
    pub fn rate_limited(&self, events: usize) {
        add(&self.events_rate_limited, events as u64);
    }

    /// Events acknowledged so far.
    pub fn events_accepted(&self) -> u64 {
        get(&self.events_accepted)
    }

    /// The number of keys in force (not revoked).
    pub fn set_keys_active(&self, n: usize) {
        self.keys_active.store(n as u64, Ordering::Relaxed);
    }

    /// Counts a reload of the keys file: applied, or refused (the keys in force stay).
    pub fn key_reload(&self, applied: bool) {
        add(if applied { &self.key_reloads } else { &self.key_reload_failures }, 1);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let name = "ledger_ingest_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Answers to POST /v1/usage, /v1/traces and /v1/events, by HTTP status.\n# TYPE {name} counter"
        );
        for (i, c) in self.requests.iter().enumerate() {
            let status = i as u16 + 100;
            let n = get(c);
            if n > 0 || SHOWN_STATUSES.contains(&status) {
                let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
            }
        }
        let name = "ledger_ingest_grpc_requests_total";
        let _ = writeln!(out, "# HELP {name} Answers to OTLP/gRPC trace exports, by gRPC status code.\n# TYPE {name} counter");
        for (i, c) in self.grpc_requests.iter().enumerate() {
            let n = get(c);
            if n > 0 || SHOWN_GRPC_CODES.contains(&i) {
                let _ = writeln!(out, "{name}{{code=\"{}\"}} {n}", GRPC_CODES[i]);
            }
        }
        let name = "ledger_ingest_otlp_spans_total";
        let _ = writeln!(
            out,
            "# HELP {name} Spans of authenticated, decoded OTLP exports: usage (became a usage event), skipped (no \
             token attributes), rejected (a usage span that could not be used).\n# TYPE {name} counter"
        );
        for (outcome, c) in SPAN_OUTCOMES.iter().zip(&self.otlp_spans) {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {}", get(c));
        }
        let mut single = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        single(
            "ledger_ingest_events_accepted_total",
            "counter",
            "Events Kafka acknowledged (answered 202 or 200).",
            get(&self.events_accepted),
        );
        single(
            "ledger_ingest_events_rate_limited_total",
            "counter",
            "Events of requests refused by their key's rate limit (429 or 413 over the burst).",
            get(&self.events_rate_limited),
        );
        single("ledger_ingest_api_keys_active", "gauge", "API keys in force (not revoked).", get(&self.keys_active));
        single("ledger_ingest_key_reloads_total", "counter", "Changed keys files applied.", get(&self.key_reloads));
        single(
            "ledger_ingest_key_reload_failures_total",
            "counter",
            "Changed keys files refused as invalid (the keys in force stayed).",
            get(&self.key_reload_failures),
        );
        self.ack.render(
            &mut out,
            &ACK_SECONDS,
            "ledger_ingest_kafka_ack_seconds",
            "Time from receiving a request to Kafka's acknowledgement of all its events.",
            SumUnit::Micros,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_events_and_the_ack_histogram_are_rendered() {
        let m = Metrics::default();
        m.request(202);
        m.request(202);
        m.request(429);
        m.request(418);
        m.request(42); // not an HTTP status: ignored
        m.acknowledged(10, Duration::from_millis(3));
        m.acknowledged(5, Duration::from_secs(40));
        m.rate_limited(7);
        m.set_keys_active(3);
        m.key_reload(true);
        m.key_reload(false);
        m.grpc_request(tonic::Code::Ok);
        m.grpc_request(tonic::Code::NotFound);
        m.otlp_spans(3, 5, 1);
        let text = m.render_prometheus();
        for line in [
            "ledger_ingest_requests_total{status=\"202\"} 2",
            "ledger_ingest_requests_total{status=\"429\"} 1",
            "ledger_ingest_requests_total{status=\"418\"} 1",
            "ledger_ingest_requests_total{status=\"503\"} 0",
            "ledger_ingest_events_accepted_total 15",
            "ledger_ingest_events_rate_limited_total 7",
            "ledger_ingest_api_keys_active 3",
            "ledger_ingest_key_reloads_total 1",
            "ledger_ingest_key_reload_failures_total 1",
            "ledger_ingest_kafka_ack_seconds_bucket{le=\"0.0025\"} 0",
            "ledger_ingest_kafka_ack_seconds_bucket{le=\"0.005\"} 1",
            "ledger_ingest_kafka_ack_seconds_bucket{le=\"30\"} 1",
            "ledger_ingest_kafka_ack_seconds_bucket{le=\"+Inf\"} 2",
            "ledger_ingest_kafka_ack_seconds_sum 40.003000",
            "ledger_ingest_kafka_ack_seconds_count 2",
            "ledger_ingest_grpc_requests_total{code=\"OK\"} 1",
            "ledger_ingest_grpc_requests_total{code=\"NOT_FOUND\"} 1",
            "ledger_ingest_grpc_requests_total{code=\"UNAVAILABLE\"} 0",
            "ledger_ingest_otlp_spans_total{outcome=\"usage\"} 3",
            "ledger_ingest_otlp_spans_total{outcome=\"skipped\"} 5",
            "ledger_ingest_otlp_spans_total{outcome=\"rejected\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("status=\"404\""), "unseen statuses are left out");
        assert!(!text.contains("code=\"ABORTED\""), "unseen gRPC codes are left out");
        assert_eq!(m.grpc_requests(tonic::Code::Ok), 1);
        assert_eq!((m.requests(202), m.events_accepted()), (2, 15));
    }
}
