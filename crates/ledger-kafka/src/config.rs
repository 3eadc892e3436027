//! The connection settings every Kafka client of the ledger is built from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ledger_core::secret::{Secret, REDACTED};
use serde::{Deserialize, Serialize};

use crate::KafkaError;

/// Connection settings shared by every Kafka client.
///
/// Any librdkafka property can be set in `options`, written with `_` for `.` everywhere: in the
/// config file (`[kafka.options] security_protocol = "SASL_SSL"`) and in the environment
/// (`LEDGER__KAFKA__OPTIONS__SECURITY_PROTOCOL=SASL_SSL`). No librdkafka property has a `_` in
/// its name, so the spelling is unambiguous; the dotted spelling is accepted in the file too.
/// The SASL password has its own setting, so that it can come from a file (container secrets)
/// and is never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// librdkafka properties (`security_protocol`, `sasl_mechanism`, `sasl_username`,
    /// `ssl_ca_location`, ...), applied after the ledger's defaults, so they win.
    pub options: BTreeMap<String, String>,
    /// `sasl.password`.
    pub sasl_password: Option<Secret>,
    /// A file holding `sasl.password` (read by [`KafkaConfig::resolve_secrets`]).
    pub sasl_password_file: Option<PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            options: BTreeMap::new(),
            sasl_password: None,
            sasl_password_file: None,
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    /// Redacts the password and every option that holds a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<String, &str> =
            self.options.iter().map(|(k, v)| (property_name(k), if is_secret(k) { REDACTED } else { v.as_str() })).collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("options", &options)
            .field("sasl_password", &self.sasl_password)
            .field("sasl_password_file", &self.sasl_password_file)
            .finish()
    }
}

/// The librdkafka name of an option key: `_` becomes `.`.
pub fn property_name(key: &str) -> String {
    key.trim().replace('_', ".")
}

/// True when an option's value is a secret (a password, a key, a token): never printed.
pub fn is_secret(key: &str) -> bool {
    let name = property_name(key);
    ["password", "secret", "jaas", "key.pem", "token", "credential"].iter().any(|s| name.contains(s))
}

impl KafkaConfig {
    /// Reads `sasl_password_file` into `sasl_password` (when set); call once the settings are
    /// loaded. An unreadable file is an error naming the setting.
    pub fn resolve_secrets(&mut self) -> Result<(), KafkaError> {
        if let Some(path) = &self.sasl_password_file {
            let text = std::fs::read_to_string(path).map_err(|e| KafkaError::Config {
                setting: "kafka.sasl_password_file".into(),
                problem: format!("cannot read {}: {e}", path.display()),
            })?;
            self.sasl_password = Some(Secret::from_file_contents(&text));
        }
        Ok(())
    }

    /// The value of a librdkafka property as configured (either spelling), if set.
    pub fn option(&self, property: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| property_name(k) == property).map(|(_, v)| v.as_str())
    }

    /// A librdkafka client configuration with the brokers and the options, for producers and
    /// admin clients; consumers take [`KafkaConfig::consumer_config`].
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut cfg = rdkafka::ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        cfg.set("socket.keepalive.enable", "true");
        self.apply_options(&mut cfg);
        cfg
    }

    /// A librdkafka consumer configuration: the brokers, the defaults every consumer of the
    /// ledger wants, then `properties`, then the options (applied last, so they win).
    pub fn consumer_config(&self, properties: &[(&str, &str)]) -> rdkafka::ClientConfig {
        let mut cfg = self.client_config();
        // Once a partition's prefetch queue is over its thresholds (queued.min.messages,
        // queued.max.messages.kbytes), librdkafka postpones that partition's next fetch by this
        // much; the default, 1000 ms, starves a consumer that drains its queue faster than that,
        // as after a pause (the processor waiting for an insert) or reading a topic from the
        // start: measured at 140,000 events/s offered, 111,000/s with a growing lag at 1000 ms,
        // 137,600/s keeping pace at 20 ms.
        cfg.set("fetch.queue.backoff.ms", "20");
        for (k, v) in properties {
            cfg.set(*k, *v);
        }
        self.apply_options(&mut cfg);
        cfg
    }

    /// Sets the options (and the SASL password) on `cfg`: for a caller that sets defaults of its
    /// own after [`KafkaConfig::client_config`] and wants the configured options to win again.
    pub fn apply_options(&self, cfg: &mut rdkafka::ClientConfig) {
        for (k, v) in &self.options {
            cfg.set(property_name(k), v);
        }
        if let Some(password) = &self.sasl_password {
            cfg.set("sasl.password", password.expose());
        }
    }

    /// What the settings say about security, for messages: the protocol and the user.
    pub fn describe_security(&self) -> String {
        let protocol = self.option("security.protocol").unwrap_or("PLAINTEXT");
        match self.option("sasl.username") {
            Some(user) => format!("{protocol}, user {user:?}"),
            None => protocol.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_options(options: &[(&str, &str)]) -> KafkaConfig {
        let options = options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        KafkaConfig { brokers: "kafka:9092".into(), options, ..KafkaConfig::default() }
    }

    #[test]
    fn consumer_config_sets_the_defaults_then_the_properties_then_the_options() {
        let config = with_options(&[("fetch.wait.max.ms", "7")]);
        let cfg = config.consumer_config(&[("group.id", "g"), ("fetch.wait.max.ms", "100")]);
        assert_eq!(cfg.get("bootstrap.servers"), Some("kafka:9092"));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("20"), "no one-second stall after a full queue");
        assert_eq!(cfg.get("group.id"), Some("g"));
        assert_eq!(cfg.get("fetch.wait.max.ms"), Some("7"), "the configured options win");
        let overridden = with_options(&[("fetch_queue_backoff_ms", "50")]);
        assert_eq!(overridden.consumer_config(&[]).get("fetch.queue.backoff.ms"), Some("50"));
    }

    #[test]
    fn options_are_written_with_underscores_and_passwords_never_print() {
        let mut config =
            with_options(&[("security_protocol", "SASL_SSL"), ("sasl_username", "ledger"), ("ssl_key_password", "k3y")]);
        config.sasl_password = Some(Secret::new("hunter2"));
        let cfg = config.client_config();
        assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(cfg.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.option("sasl.username"), Some("ledger"));
        assert_eq!(config.describe_security(), "SASL_SSL, user \"ledger\"");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("k3y"), "{shown}");
        assert!(shown.contains("security.protocol"), "{shown}");
    }

    #[test]
    fn the_password_file_is_read_and_a_missing_one_names_the_setting() {
        let path = std::env::temp_dir().join(format!("ledger-kafka-pw-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut config = KafkaConfig { sasl_password_file: Some(path.clone()), ..KafkaConfig::default() };
        config.resolve_secrets().unwrap();
        assert_eq!(config.sasl_password.as_ref().map(Secret::expose), Some("s3cret"));
        std::fs::remove_file(&path).unwrap();
        let err = config.resolve_secrets().unwrap_err().to_string();
        assert!(err.contains("fix kafka.sasl_password_file") && !err.contains("s3cret"), "{err}");
    }
}
