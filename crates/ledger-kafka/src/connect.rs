//! Failing fast on wrong settings: librdkafka retries a refused password or an untrusted
//! certificate forever, logging, while the caller's requests time out. [`check_connection`]
//! asks the brokers for metadata and turns the first such error into one line that names the
//! setting to fix.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::is_secret;
use crate::{KafkaConfig, KafkaError};

/// Remembers the errors librdkafka reports while connecting.
#[derive(Default)]
struct Recorder {
    errors: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl ClientContext for Recorder {
    fn error(&self, error: RdError, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

impl ConsumerContext for Recorder {}

/// Connects to the brokers and asks for metadata, for at most `timeout`. A wrong password, an
/// untrusted certificate, a protocol that does not match the listener or an unusable property
/// is a [`KafkaError::Config`] at once; brokers that do not answer in time are a retryable
/// [`KafkaError::Client`].
pub fn check_connection(config: &KafkaConfig, timeout: Duration) -> Result<(), KafkaError> {
    let cfg = config.consumer_config(&[("group.id", "ledger-connection-check")]);
    let consumer: BaseConsumer<Recorder> = cfg.create_with_context(Recorder::default()).map_err(|e| creation_error(&e))?;
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    loop {
        let step = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
        let result = consumer.fetch_metadata(None, step);
        // Serve the error events the attempt raised.
        let _ = consumer.poll(Duration::ZERO);
        if let Ok(errors) = consumer.context().errors.lock() {
            for (code, reason) in &errors[seen..] {
                if let Some(e) = diagnose(config, *code, reason) {
                    return Err(e);
                }
            }
            seen = errors.len();
        }
        match result {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                let last = consumer.context().errors.lock().ok().and_then(|v| v.last().map(|(_, r)| r.clone()));
                let context = format!(
                    "no answer from the brokers at {} ({}) within {timeout:?}{}; is Kafka running and kafka.brokers right?",
                    config.brokers,
                    config.describe_security(),
                    last.map(|r| format!(" (last error: {r})")).unwrap_or_default()
                );
                return Err(KafkaError::client(context, e));
            }
            Err(_) => {}
        }
    }
}

/// A client that librdkafka refuses to create: a property or its value is wrong.
fn creation_error(e: &RdError) -> KafkaError {
    match e {
        RdError::ClientConfig(_, description, key, value) => {
            let shown = if is_secret(key) { "<redacted>".to_owned() } else { format!("{value:?}") };
            KafkaError::Config {
                setting: format!(
                    "kafka.options.{} (LEDGER__KAFKA__OPTIONS__{})",
                    key.replace('.', "_"),
                    key.replace('.', "_").to_uppercase()
                ),
                problem: format!("librdkafka refuses {key} = {shown}: {description}"),
            }
        }
        other => {
            KafkaError::Config { setting: "kafka.options".into(), problem: format!("cannot create a Kafka client: {other}") }
        }
    }
}

/// The setting an error of librdkafka points at, if it is one of the wrong-settings kind.
pub(crate) fn diagnose(config: &KafkaConfig, code: Option<RDKafkaErrorCode>, reason: &str) -> Option<KafkaError> {
    let brokers = &config.brokers;
    let protocol = config.option("security.protocol").unwrap_or("PLAINTEXT");
    let has = |needle: &str| reason.contains(needle);
    let error = |setting: &str, problem: String| Some(KafkaError::Config { setting: setting.to_owned(), problem });
    if code == Some(RDKafkaErrorCode::Authentication) || has("SASL authentication error") || has("Authentication failed") {
        let user = config.option("sasl.username").unwrap_or("(none)");
        return error(
            "kafka.sasl_password (or kafka.sasl_password_file, LEDGER__KAFKA__SASL_PASSWORD) and kafka.options.sasl_username",
            format!("the brokers at {brokers} refused the credentials of user {user:?} ({})", short(reason)),
        );
    }
    if has("Unsupported SASL mechanism") || has("SASL mechanism") && has("not supported") {
        return error(
            "kafka.options.sasl_mechanism",
            format!("the brokers at {brokers} do not accept this SASL mechanism ({})", short(reason)),
        );
    }
    if has("certificate verify failed") || has("unable to get local issuer certificate") || has("self-signed certificate") {
        return error(
            "kafka.options.ssl_ca_location (LEDGER__KAFKA__OPTIONS__SSL_CA_LOCATION)",
            format!("the TLS certificate of the brokers at {brokers} is not trusted ({})", short(reason)),
        );
    }
    if has("connecting to a SSL listener?") || has("connecting to a PLAINTEXT listener") {
        return error(
            "kafka.options.security_protocol",
            format!(
                "the listener at {brokers} closed the connection during the handshake: it expects another protocol than {protocol} \
                 ({})",
                short(reason)
            ),
        );
    }
    if has("SSL handshake failed") && (has("wrong version number") || has("packet length too long") || has("record layer")) {
        return error(
            "kafka.options.security_protocol",
            format!("the listener at {brokers} does not speak TLS, but security_protocol is {protocol} ({})", short(reason)),
        );
    }
    None
}

/// The first line of a librdkafka error, without the broker prefix it repeats.
fn short(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or(reason);
    line.split_once("]: ").map_or(line, |(_, rest)| rest).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secure() -> KafkaConfig {
        let options = [("security_protocol", "SASL_SSL"), ("sasl_username", "ledger")];
        KafkaConfig {
            brokers: "127.0.0.1:9094".into(),
            options: options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..KafkaConfig::default()
        }
    }

    fn problem(code: Option<RDKafkaErrorCode>, reason: &str) -> String {
        diagnose(&secure(), code, reason).map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_refused_password_names_the_password_setting() {
        let reason = "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed during \
                      authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 12ms in state AUTH_REQ)";
        let msg = problem(Some(RDKafkaErrorCode::Authentication), reason);
        assert!(msg.contains("refused the credentials of user \"ledger\""), "{msg}");
        assert!(msg.contains("fix kafka.sasl_password"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn an_untrusted_certificate_names_the_ca_setting() {
        let reason = "ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify \
                      failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured";
        assert!(problem(Some(RDKafkaErrorCode::SSL), reason).contains("fix kafka.options.ssl_ca_location"));
    }

    #[test]
    fn a_protocol_mismatch_names_security_protocol() {
        let plain_on_tls = "127.0.0.1:9094/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect \
                            security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10";
        assert!(problem(None, plain_on_tls).contains("fix kafka.options.security_protocol"));
        let tls_on_plain =
            "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number";
        assert!(problem(None, tls_on_plain).contains("does not speak TLS"));
    }

    #[test]
    fn transient_errors_are_not_settings_errors() {
        assert_eq!(problem(None, "127.0.0.1:9094/bootstrap: Connect to ipv4#127.0.0.1:9094 failed: Connection refused"), "");
    }
}
