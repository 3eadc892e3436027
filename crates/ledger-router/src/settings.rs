//! `[router]`: the settings of `ledger router serve` (and of any router built from the
//! `ledger` configuration file).

use serde::{Deserialize, Serialize};

use crate::lease::LeaseSettings;
use crate::view::{RouterPolicy, StalePolicy};
use crate::RouterConfig;

/// The `[router]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSettings {
    /// What to do with a signal past its `valid_until`.
    pub stale: StalePolicy,
    /// `retry_after` of a throttled call whose signal carries none, in milliseconds.
    pub default_retry_after_ms: u64,
    /// How long the router may take to read the signals topic before it serves, in milliseconds.
    pub ready_timeout_ms: u64,
    /// Quota leases (docs/budgets.md).
    pub leases: LeaseSettings,
}

impl Default for RouterSettings {
    fn default() -> Self {
        let policy = RouterPolicy::default();
        RouterSettings {
            stale: policy.stale,
            default_retry_after_ms: policy.default_retry_after_ms,
            ready_timeout_ms: 30_000,
            leases: LeaseSettings::default(),
        }
    }
}

impl RouterSettings {
    /// The router's configuration with these settings, the Kafka connection and the topics.
    pub fn router_config(&self, kafka: &ledger_kafka::KafkaConfig, topics: &ledger_kafka::TopicNames) -> RouterConfig {
        RouterConfig {
            kafka: kafka.clone(),
            signals_topic: topics.signals.clone(),
            policy: RouterPolicy { stale: self.stale, default_retry_after_ms: self.default_retry_after_ms },
            leases: LeaseSettings {
                requests_topic: topics.lease_requests.clone(),
                grants_topic: topics.lease_grants.clone(),
                ..self.leases.clone()
            },
            ..RouterConfig::default()
        }
    }
}
