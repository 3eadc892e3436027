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

    /// librdkafka reports some failures (a TLS handshake, a protocol mismatch) only as log
    /// lines: they are recorded for [`diagnose`] rather than printed, since the check reports
    /// them itself, in one line.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push((None, format!("{fac}: {log_message}")));
        }
    }
}

impl ConsumerContext for Recorder {}

/// Connects to the brokers and asks for metadata, for at most `timeout`. A wrong password, an
/// untrusted certificate, a protocol that does not match the listener or an unusable property
/// is a [`KafkaError::Config`] at once; brokers that do not answer in time are a retryable
/// [`KafkaError::Client`].
pub fn check_connection(config: &KafkaConfig, timeout: Duration) -> Result<(), KafkaError> {
    // `debug=broker`: some mismatches (a plaintext client on a TLS listener) show only in the
    // broker state log lines, which the recorder keeps and never prints.
    let mut cfg = config.consumer_config(&[("group.id", "ledger-connection-check")]);
    cfg.set("debug", "broker").set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    let consumer: BaseConsumer<Recorder> = cfg.create_with_context(Recorder::default()).map_err(|e| creation_error(&e))?;
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    loop {
        let step = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
        let result = consumer.fetch_metadata(None, step);
        // Serve the events the attempt raised. A poll serves at most one event and answers None
        // after a log line as after an empty queue, so one poll a round (the debug log lines
        // come first) reached an authentication error only after about 10 s: poll many times.
        // Errors the poll hands back rather than to the context are recorded the same way.
        for _ in 0..500 {
            if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
                consumer.context().error(e.clone(), &e.to_string());
            }
        }
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
                let recorded: Vec<String> =
                    consumer.context().errors.lock().map(|v| v.iter().map(|(_, r)| r.clone()).collect()).unwrap_or_default();
                if let Some(stalled) = diagnose_stall(config, &recorded) {
                    return Err(stalled);
                }
                let last = consumer
                    .context()
                    .errors
                    .lock()
                    .ok()
                    .and_then(|v| v.iter().rev().find(|(code, _)| code.is_some()).map(|(_, r)| r.clone()));
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
pub(crate) fn creation_error(e: &RdError) -> KafkaError {
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
    if has("connecting to a SSL listener?") || has("PLAINTEXT broker listener?") {
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
    if has("SSL connection closed by peer") && has("in state UP") {
        return error(
            "kafka.options.security_protocol and kafka.options.sasl_mechanism",
            format!(
                "the listener at {brokers} closed the connection after the TLS handshake: it expects SASL \
                 (security_protocol SASL_SSL), not {protocol}"
            ),
        );
    }
    None
}

/// A connection that was made but never got past the protocol handshake: a client without TLS
/// talking to a TLS listener waits for an answer that never comes, and librdkafka reports
/// nothing but the broker's states.
fn diagnose_stall(config: &KafkaConfig, recorded: &[String]) -> Option<KafkaError> {
    let protocol = config.option("security.protocol").unwrap_or("PLAINTEXT");
    let handshaking = recorded.iter().any(|r| r.contains("-> APIVERSION_QUERY"));
    // The client's internal broker goes UP at once; only a real broker's UP counts.
    let got_up = recorded.iter().any(|r| r.contains("-> UP") && !r.contains("/internal"));
    (handshaking && !got_up && !protocol.to_ascii_uppercase().contains("SSL")).then(|| KafkaError::Config {
        setting: "kafka.options.security_protocol".into(),
        problem: format!(
            "connected to {} but the listener never answered the protocol handshake with {protocol}: it likely expects TLS \
             (SASL_SSL or SSL)",
            config.brokers
        ),
    })
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
    fn a_handshake_that_never_ends_points_at_tls() {
        let mut plain = secure();
        plain.options.insert("security_protocol".into(), "SASL_PLAINTEXT".into());
        let stalled =
            ["STATE: sasl_plaintext://127.0.0.1:29094/bootstrap: Broker changed state CONNECT -> APIVERSION_QUERY".to_owned()];
        let msg = diagnose_stall(&plain, &stalled).unwrap().to_string();
        assert!(msg.contains("it likely expects TLS") && msg.contains("fix kafka.options.security_protocol"), "{msg}");
        assert!(diagnose_stall(&secure(), &stalled).is_none(), "a TLS client that stalls is something else");
        let internal = [stalled[0].clone(), "STATE: [thrd::0/internal]: :0/internal: Broker changed state INIT -> UP".to_owned()];
        assert!(diagnose_stall(&plain, &internal).is_some(), "the internal broker does not count");
        let up = [stalled[0].clone(), "STATE: x: Broker changed state APIVERSION_QUERY -> UP".to_owned()];
        assert!(diagnose_stall(&plain, &up).is_none());
        let closed = "ssl://127.0.0.1:29094/bootstrap: Disconnected: SSL connection closed by peer (after 2ms in state UP)";
        assert!(problem(None, closed).contains("it expects SASL"));
        let tls_on_plain = "sasl_ssl://h:9092/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: \
                            connecting to a PLAINTEXT broker listener? (after 1ms in state SSL_HANDSHAKE)";
        assert!(problem(None, tls_on_plain).contains("fix kafka.options.security_protocol"));
    }

    #[test]
    fn transient_errors_are_not_settings_errors() {
        assert_eq!(problem(None, "127.0.0.1:9094/bootstrap: Connect to ipv4#127.0.0.1:9094 failed: Connection refused"), "");
    }
}
