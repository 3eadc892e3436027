//! The Confluent Schema Registry side of the ledger's usage topic.
//!
//! Usage events travel in Avro single-object framing (`C3 01` + fingerprint) or in the
//! Confluent wire format (`00` + a 4-byte registry schema id), which Kafka Connect, ksqlDB,
//! Flink and ClickHouse's `AvroConfluent` format expect. This crate holds:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the `[schema]` settings: producers' framing, ids known without a registry, the registry |
//! | [`client`] | the registry client (Confluent REST API: fetch by id, register, look up), cached, with retries |
//! | [`resolve`] | readers' [`IdResolver`] (id to writer schema) and producers' [`wire_format`] |
//!
//! Subjects follow Confluent's default `TopicNameStrategy`: `<topic>-value`.

pub mod client;
pub mod config;
pub mod resolve;
#[cfg(test)]
mod tests;
mod tls;

pub use client::{RegisteredSchema, RegistryClient};
pub use config::{value_subject, RegistryConfig, SchemaSettings};
pub use resolve::{wire_format, wire_format_blocking, IdResolver};

/// What can go wrong with the schema settings or the registry. Messages name the setting to
/// fix where there is one, and never show a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The settings are wrong (every problem listed).
    #[error("{0}")]
    Config(String),
    /// The registry could not be reached, or kept failing, after every attempt.
    #[error("schema registry {url}: {what} failed after {attempts} attempt(s): {detail}")]
    Unavailable {
        /// The registry (without credentials).
        url: String,
        /// What was being done.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The registry refused the credentials.
    #[error(
        "schema registry {url}: {what} was refused with HTTP {status} ({detail}): check schema.registry.user and \
         schema.registry.password (or password_file)"
    )]
    Unauthorized {
        /// The registry (without credentials).
        url: String,
        /// What was being done.
        what: String,
        /// 401 or 403.
        status: u16,
        /// The registry's message.
        detail: String,
    },
    /// The registry answered the request with an error (e.g. 409: the schema breaks the
    /// subject's compatibility rule; 422: not a valid schema).
    #[error("schema registry {url}: {what} was refused with HTTP {status}: {detail}")]
    Refused {
        /// The registry (without credentials).
        url: String,
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message.
        detail: String,
    },
    /// The registry's answer is not what the API defines.
    #[error("schema registry {url}: {what}: unexpected answer: {detail}")]
    BadAnswer {
        /// The registry (without credentials).
        url: String,
        /// What was being done.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// `auto_register = false` and the current schema is not registered under the subject.
    #[error(
        "schema registry {url}: the current usage event schema is not registered under subject {subject}, and \
         schema.registry.auto_register is false: register schemas/avro/usage_event.avsc there first"
    )]
    NotRegistered {
        /// The registry (without credentials).
        url: String,
        /// The subject looked in.
        subject: String,
    },
}

impl RegistryError {
    /// True when trying again later may succeed (the registry is down or overloaded).
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }

    /// True when a setting is wrong: the message names it.
    pub fn is_settings(&self) -> bool {
        matches!(self, RegistryError::Config(_) | RegistryError::Unauthorized { .. } | RegistryError::NotRegistered { .. })
    }
}
