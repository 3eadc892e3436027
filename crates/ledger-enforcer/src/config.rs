//! `[enforcer]` settings of the `ledger` configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of `ledger enforce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcerSettings {
    /// Consumer group of the enforcer (lag monitoring only).
    pub group_id: String,
    /// The budgets file (TOML), reloaded when it changes.
    pub budgets_file: PathBuf,
}

impl Default for EnforcerSettings {
    fn default() -> Self {
        EnforcerSettings { group_id: "ledger-enforcer".into(), budgets_file: PathBuf::from("config/budgets.toml") }
    }
}
