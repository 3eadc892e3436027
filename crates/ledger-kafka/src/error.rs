//! The error type of the Kafka adapters.

/// Errors of the Kafka adapters.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka reported an error. Its text is part of this error's message (not a separate
    /// source), so a report of the chain says it once.
    #[error("kafka: {context}: {error}")]
    Client {
        /// What we were doing.
        context: String,
        /// The client error.
        error: rdkafka::error::KafkaError,
    },
    /// The settings are wrong: the broker refused the credentials, its certificate is not
    /// trusted, the protocol does not match the listener, or a setting cannot be used. Fatal:
    /// fix the named setting.
    #[error("kafka: {problem}: fix {setting}")]
    Config {
        /// The setting(s) to fix, as the config file and the environment name them.
        setting: String,
        /// What is wrong, in one line.
        problem: String,
    },
    /// A topic exists with a layout the ledger cannot use.
    #[error("topic {topic}: {problem}")]
    Topic {
        /// Topic name.
        topic: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl KafkaError {
    /// A client error with what was being done; a refused property becomes [`KafkaError::Config`].
    pub fn client(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        // A property librdkafka refuses is a settings error, whatever the client was doing.
        if let rdkafka::error::KafkaError::ClientConfig(..) = source {
            return crate::connect::creation_error(&source);
        }
        KafkaError::Client { context: context.into(), error: source }
    }

    /// True when a setting is wrong (credentials, certificate, protocol, a property): the
    /// message names it, and hints about a service not running would mislead.
    pub fn is_settings(&self) -> bool {
        matches!(self, KafkaError::Config { .. })
    }

    /// True when retrying later may succeed (broker unavailable, timeouts).
    pub fn is_retryable(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as C;
        match self {
            KafkaError::Client { error, .. } => match error.rdkafka_error_code() {
                Some(
                    C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::RequestTimedOut
                    | C::OperationTimedOut
                    | C::NetworkException
                    | C::NotEnoughReplicas
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
                    | C::QueueFull,
                ) => true,
                Some(_) => false,
                None => true,
            },
            KafkaError::Topic { .. } | KafkaError::Config { .. } => false,
        }
    }
}
