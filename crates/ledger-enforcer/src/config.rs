//! `[enforcer]` settings of the `ledger` configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of `ledger enforce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcerSettings {
    /// Consumer group id the enforcer's Kafka clients report (it assigns every spend partition
    /// to itself and commits nothing, so the group is for identification only).
    pub group_id: String,
    /// The budgets file (TOML), reloaded when it changes.
    pub budgets_file: PathBuf,
    /// Partitions of each topic when the enforcer has to create it.
    pub partitions: i32,
    /// How often the budgets file is checked for changes, in milliseconds.
    pub reload_interval_ms: u64,
    /// How often every budget is re-evaluated (period rollovers, burn rates), in milliseconds.
    pub evaluate_interval_ms: u64,
    /// Serve Prometheus `/metrics` and `/healthz` on this address.
    pub metrics_addr: Option<String>,
}

impl Default for EnforcerSettings {
    fn default() -> Self {
        EnforcerSettings {
            group_id: "ledger-enforcer".into(),
            budgets_file: PathBuf::from("config/budgets.toml"),
            partitions: 4,
            reload_interval_ms: 1000,
            evaluate_interval_ms: 1000,
            metrics_addr: None,
        }
    }
}

impl EnforcerSettings {
    /// Cross-field checks; every problem at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.partitions < 1 {
            problems.push(format!("enforcer.partitions must be at least 1 (got {})", self.partitions));
        }
        if !(100..=60_000).contains(&self.reload_interval_ms) {
            problems.push(format!("enforcer.reload_interval_ms must be within 100..=60000 (got {})", self.reload_interval_ms));
        }
        if !(50..=60_000).contains(&self.evaluate_interval_ms) {
            problems.push(format!("enforcer.evaluate_interval_ms must be within 50..=60000 (got {})", self.evaluate_interval_ms));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
