//! The error type of the operations.

/// What can stop an operation. Each says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// ClickHouse could not be reached: the service is down or the URL is wrong.
    #[error(
        "cannot reach ClickHouse at {url}: {source}\nIs it running? Start the local stack with `ledger stack up`, \
         or pass --clickhouse-url / set LEDGER__CLICKHOUSE__URL."
    )]
    Unreachable {
        /// The configured URL.
        url: String,
        /// The connection error.
        #[source]
        source: ledger_clickhouse::Error,
    },
    /// A ClickHouse query failed.
    #[error(transparent)]
    ClickHouse(ledger_clickhouse::Error),
    /// Kafka failed, or refused the settings. (Not a separate source: the message says it all.)
    #[error("{}", kafka_message(.0))]
    Kafka(ledger_kafka::KafkaError),
    /// The Avro schemas could not be loaded.
    #[error(transparent)]
    Schema(#[from] ledger_schema::SchemaError),
    /// The schema settings are wrong, or the schema registry failed or refused a request.
    #[error(transparent)]
    Registry(#[from] ledger_registry::RegistryError),
    /// The input (arguments, a mapping file) is wrong; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The data changed while it was read, or does not add up; running again may help.
    #[error("{0}")]
    Inconsistent(String),
}

/// A Kafka error with the hint that fits it: a wrong setting names itself; anything else may be
/// a broker that is not running.
fn kafka_message(e: &ledger_kafka::KafkaError) -> String {
    match e {
        ledger_kafka::KafkaError::Config { .. } => e.to_string(),
        _ => format!("{e} (is Kafka running? `ledger stack status`)"),
    }
}

impl OpsError {
    /// A ClickHouse error, with advice when the server cannot be reached at `url`.
    pub fn clickhouse(e: ledger_clickhouse::Error, url: &str) -> OpsError {
        if e.is_connection() {
            OpsError::Unreachable { url: url.to_owned(), source: e }
        } else {
            OpsError::ClickHouse(e)
        }
    }

    /// True when trying again later may succeed (a service down, a read that raced a write).
    pub fn is_retryable(&self) -> bool {
        match self {
            OpsError::Unreachable { .. } | OpsError::Inconsistent(_) => true,
            OpsError::ClickHouse(e) => e.is_retryable(),
            OpsError::Kafka(e) => e.is_retryable(),
            OpsError::Registry(e) => e.is_retryable(),
            OpsError::Schema(_) | OpsError::Invalid(_) => false,
        }
    }
}

impl From<ledger_kafka::KafkaError> for OpsError {
    fn from(e: ledger_kafka::KafkaError) -> Self {
        OpsError::Kafka(e)
    }
}

impl From<ledger_core::money::MoneyOverflow> for OpsError {
    fn from(_: ledger_core::money::MoneyOverflow) -> Self {
        OpsError::Inconsistent("an amount left the range of exact money (about 1.7 x 10^26 USD)".into())
    }
}

impl From<std::fmt::Error> for OpsError {
    fn from(_: std::fmt::Error) -> Self {
        OpsError::Inconsistent("formatting a report failed".into())
    }
}
