//! The client-side router: applies budget signals before each LLM call.
//!
//! The budget enforcer publishes one [`BudgetSignal`](ledger_core::signal::BudgetSignal) per
//! change of a budget scope's state on the compacted topic `llm.budget-signals.v1`. A [`Router`]
//! embedded in each service reads that topic from the beginning, keeps the latest signal of
//! every scope, and answers [`Router::decide`] with [`Decision::Allow`], [`Decision::Reroute`],
//! [`Decision::Throttle`] or [`Decision::Block`] in well under a microsecond.
//!
//! - [`view`]: the pure part: [`SignalTable`] (applying signals, highest sequence per scope
//!   wins), [`Snapshot::decide_at`] and the precedence rules (Block > Throttle > Reroute >
//!   Allow), the stale policy.
//! - [`Router`]: the thin Kafka part (a background thread with a manually assigned consumer).
//!
//! After a reroute, report the call's usage with [`Decision::stamp_usage_event`]: the event
//! then carries `routed_from_model` and the ledger shows the savings.
//!
//! Budgets with `enforcement = "lease"` are hard caps ([`lease`], docs/budgets.md): a router
//! started with the price catalog ([`Router::start_with_catalog`]) reserves each call's
//! estimate from an allowance the enforcer granted it ([`Router::decide_call`]) and corrects it
//! to the actual cost when the call is reported ([`Router::complete`]).

mod gate;
pub mod lease;
mod router;
mod settings;
pub mod view;

pub use lease::{CallDecision, CallSize, EmptyPolicy, LeaseSettings, LeaseStats, Reservation};
pub use router::{Router, RouterConfig, RouterStats, SignalObserver};
pub use settings::RouterSettings;
pub use view::{Applied, CallContext, Decision, RouterPolicy, SignalTable, Snapshot, StalePolicy, Unusable};

/// Errors of the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Kafka could not be reached or refused a request; retrying later may help.
    #[error("kafka: {context}: {source} (is Kafka running at the configured brokers?)")]
    Kafka {
        /// What the router was doing.
        context: String,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The Kafka settings are wrong (refused credentials, untrusted certificate, protocol
    /// mismatch); the message names the setting to fix.
    #[error(transparent)]
    Settings(ledger_kafka::KafkaError),
    /// The signals topic does not exist.
    #[error("the budget signals topic {topic:?} does not exist: start `ledger enforce` (it creates it) or check the topic name")]
    TopicMissing {
        /// The topic name.
        topic: String,
    },
    /// The router has not read the signals topic to its end in time.
    #[error("the router has not read {topic:?} to its end within {waited:?}: check that Kafka is reachable, or wait longer")]
    NotReady {
        /// The topic name.
        topic: String,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// The BudgetSignal schema failed to load (a bug).
    #[error("budget signal schema: {0}")]
    Schema(String),
    /// Unusable router settings (e.g. `[router.leases]`); the message names the setting.
    #[error("router configuration: {0}")]
    Config(String),
    /// The background thread could not be started.
    #[error("cannot start the router thread: {0}")]
    Thread(String),
}

impl RouterError {
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        RouterError::Kafka { context: context.into(), source }
    }

    /// True when retrying later may succeed (Kafka down, topic not created yet, slow start).
    pub fn is_retryable(&self) -> bool {
        matches!(self, RouterError::Kafka { .. } | RouterError::TopicMissing { .. } | RouterError::NotReady { .. })
    }
}
