//! `[ingest]` settings of the `ledger` configuration (the keys file itself is [`crate::keys`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Settings of `ledger ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// The tenant API keys file (see `config/api-keys.example.toml`).
    pub api_keys_file: PathBuf,
    /// Most events one request may carry.
    pub max_events: usize,
    /// Largest request body, in bytes (`/v1/usage`, `/v1/events`).
    pub max_body_bytes: usize,
    /// Largest OTLP export (`/v1/traces` and gRPC), in bytes, both as received and once
    /// decompressed; gRPC's and the OpenTelemetry Collector's default (4 MiB).
    pub otlp_max_bytes: usize,
    /// How long a request waits for Kafka to acknowledge all its events before it fails with
    /// 503 (also the producer's `message.timeout.ms`, so nothing lingers after a 503).
    pub ack_timeout_ms: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// How often the keys file is checked for changes (a changed valid file is put in force
    /// without a restart; a broken one is logged and the keys in force stay).
    pub reload_interval_ms: u64,
    /// Events per second each API key may send, unless its entry says otherwise (`rate_limit`
    /// in the keys file; 0 there means no limit). Unset: no limit.
    pub rate_limit: Option<u32>,
    /// Events a key may send at once (the token bucket's size), unless its entry says
    /// otherwise. Unset: the larger of its rate and `max_events`.
    pub burst: Option<u32>,
    /// PEM certificate chain: with `tls_key_file`, the server speaks HTTPS only.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            listen: "127.0.0.1:8080".into(),
            api_keys_file: PathBuf::from("config/api-keys.toml"),
            max_events: 1_000,
            max_body_bytes: 1024 * 1024,
            otlp_max_bytes: 4 * 1024 * 1024,
            ack_timeout_ms: 10_000,
            shutdown_grace_secs: 30,
            reload_interval_ms: 1_000,
            rate_limit: None,
            burst: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl IngestSettings {
    /// Problems that make the settings unusable, each saying what to change.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_events == 0 {
            problems.push("ingest.max_events must be at least 1".to_owned());
        }
        if self.max_body_bytes < 1024 {
            problems.push("ingest.max_body_bytes must be at least 1024".to_owned());
        }
        if self.otlp_max_bytes < 1024 {
            problems.push("ingest.otlp_max_bytes must be at least 1024".to_owned());
        }
        if self.ack_timeout_ms < 100 {
            problems.push("ingest.ack_timeout_ms must be at least 100".to_owned());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("ingest.listen must be HOST:PORT such as 127.0.0.1:8080 (got {:?})", self.listen));
        }
        if !(100..=60_000).contains(&self.reload_interval_ms) {
            problems.push(format!("ingest.reload_interval_ms must be within 100..=60000 (got {})", self.reload_interval_ms));
        }
        if self.burst == Some(0) {
            problems.push("ingest.burst must be at least 1 (leave it unset for the default)".to_owned());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            problems.push("ingest.tls_cert_file and ingest.tls_key_file go together: set both for HTTPS, or neither".to_owned());
        }
        problems
    }

    /// The certificate and key files when HTTPS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert_file.as_deref()?, self.tls_key_file.as_deref()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        assert!(IngestSettings::default().problems().is_empty());
        let bad = IngestSettings { max_events: 0, listen: "nowhere".into(), ..IngestSettings::default() };
        assert_eq!(bad.problems().len(), 2);
        let half_tls = IngestSettings { tls_cert_file: Some("cert.pem".into()), burst: Some(0), ..IngestSettings::default() };
        assert_eq!(half_tls.problems().len(), 2, "{:?}", half_tls.problems());
        assert_eq!(half_tls.tls_files(), None);
    }
}
