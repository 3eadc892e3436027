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
    /// Quota leases of the budgets with `enforcement = "lease"` (docs/budgets.md).
    pub leases: LeaseSettings,
}

/// `[enforcer.leases]`: how quota leases are granted and settled (docs/budgets.md, "Settings").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// A lease's lifetime, in milliseconds.
    pub ttl_ms: u64,
    /// The longest LLM call, in milliseconds: an expired lease settles this long after its
    /// expiry (plus the margin), and routers return a lease as done at the latest this long
    /// after its last admission.
    pub call_timeout_ms: u64,
    /// Added to a returned lease before it may settle, in milliseconds.
    pub settle_margin_ms: u64,
    /// Most of a budget's limit one grant may take, in percent.
    pub max_grant_percent: u32,
    /// How often the processor's progress is read while leases are unsettled, in milliseconds.
    pub probe_interval_ms: u64,
    /// `retry_after_ms` of a `WAIT` answer.
    pub wait_retry_ms: u64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl_ms: 10_000,
            call_timeout_ms: 30_000,
            settle_margin_ms: 1_000,
            max_grant_percent: 10,
            probe_interval_ms: 100,
            wait_retry_ms: 200,
        }
    }
}

impl LeaseSettings {
    /// The rules of the lease book.
    pub fn rules(&self) -> ledger_core::budget::LeaseRules {
        let ms = |v: u64| chrono::Duration::milliseconds(i64::try_from(v).unwrap_or(i64::MAX));
        ledger_core::budget::LeaseRules {
            ttl: ms(self.ttl_ms),
            call_timeout: ms(self.call_timeout_ms),
            settle_margin: ms(self.settle_margin_ms),
            max_grant_percent: self.max_grant_percent,
            wait_retry: ms(self.wait_retry_ms),
        }
    }

    /// How far back a restarted enforcer reads the lease topics.
    pub fn rebuild_window_ms(&self) -> u64 {
        self.ttl_ms.saturating_add(self.call_timeout_ms).saturating_add(self.settle_margin_ms).saturating_add(300_000)
    }

    fn problems(&self, out: &mut Vec<String>) {
        let mut range = |name: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                out.push(format!("enforcer.leases.{name} must be within {lo}..={hi} (got {v})"));
            }
        };
        range("ttl_ms", self.ttl_ms, 100, 3_600_000);
        range("call_timeout_ms", self.call_timeout_ms, 0, 3_600_000);
        range("settle_margin_ms", self.settle_margin_ms, 0, 600_000);
        range("max_grant_percent", u64::from(self.max_grant_percent), 1, 100);
        range("probe_interval_ms", self.probe_interval_ms, 10, 60_000);
        range("wait_retry_ms", self.wait_retry_ms, 10, 60_000);
    }
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
            leases: LeaseSettings::default(),
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
        self.leases.problems(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
