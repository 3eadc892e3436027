//! `[ingest]` settings of the `ledger` configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of `ledger ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// The tenant API keys file.
    pub api_keys_file: PathBuf,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings { listen: "127.0.0.1:8080".into(), api_keys_file: PathBuf::from("config/api-keys.toml") }
    }
}
