//! Errors of the notifier.

use std::path::PathBuf;

use ledger_core::budget::PolicyError;

/// Why `ledger notify` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The settings are unusable; every problem is listed.
    #[error("invalid notify settings:\n  - {}", .0.join("\n  - "))]
    Settings(Vec<String>),
    /// The budgets file cannot be read.
    #[error("cannot read the budgets file {path}: {source} (pass --budgets FILE or set notify.budgets_file)")]
    BudgetsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The budgets file is invalid.
    #[error("{path}: {source}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// Every problem.
        #[source]
        source: PolicyError,
    },
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] ledger_kafka::KafkaError),
    /// The Avro schemas could not be loaded.
    #[error("Avro schema: {0}")]
    Schema(#[from] ledger_schema::SchemaError),
    /// A background task failed.
    #[error("background task failed: {0}")]
    Task(String),
}

impl NotifyError {
    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Kafka(e) => e.is_retryable(),
            NotifyError::Task(_) => true,
            _ => false,
        }
    }
}
