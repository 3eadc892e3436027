//! Errors of the enforcer.

use std::path::PathBuf;

use ledger_core::budget::PolicyError;

/// Why the enforcer (or a budget status read) stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnforcerError {
    /// The budgets file cannot be read.
    #[error("cannot read the budgets file {path} (pass an existing file with --budgets or set enforcer.budgets_file)")]
    BudgetsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The budgets file is invalid (poison: fix the file).
    #[error("{path}: {source}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// Every problem.
        #[source]
        source: PolicyError,
    },
    /// Kafka failed (retryable when the broker is unavailable).
    #[error(transparent)]
    Kafka(#[from] ledger_kafka::KafkaError),
    /// A record could not be encoded or the schemas not loaded (a bug: the record violates its
    /// schema).
    #[error("Avro schema: {0}")]
    Encode(#[from] ledger_schema::SchemaError),
    /// A blocking task failed.
    #[error("background task failed: {0}")]
    Task(String),
}

impl EnforcerError {
    /// True when a setting is wrong: the message names it.
    pub fn is_settings(&self) -> bool {
        match self {
            EnforcerError::Kafka(e) => e.is_settings(),
            EnforcerError::Policy { .. } | EnforcerError::BudgetsFile { .. } => true,
            _ => false,
        }
    }

    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EnforcerError::Kafka(e) => e.is_retryable(),
            EnforcerError::BudgetsFile { .. } | EnforcerError::Task(_) => true,
            EnforcerError::Policy { .. } | EnforcerError::Encode(_) => false,
        }
    }
}
