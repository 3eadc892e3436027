//! `[ingest]` settings of the `ledger` configuration and the tenant API keys file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::IngestError;

/// Settings of `ledger ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// The tenant API keys file (see `config/api-keys.example.toml`).
    pub api_keys_file: PathBuf,
    /// Most events one request may carry.
    pub max_events: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a request waits for Kafka to acknowledge all its events before it fails with
    /// 503 (also the producer's `message.timeout.ms`, so nothing lingers after a 503).
    pub ack_timeout_ms: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            listen: "127.0.0.1:8080".into(),
            api_keys_file: PathBuf::from("config/api-keys.toml"),
            max_events: 1_000,
            max_body_bytes: 1024 * 1024,
            ack_timeout_ms: 10_000,
            shutdown_grace_secs: 30,
        }
    }
}

impl IngestSettings {
    /// Problems that make the settings unusable, each saying what to change.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_events == 0 {
            problems.push("ingest.max_events must be at least 1".to_owned());
        }
        if self.max_body_bytes < 1024 {
            problems.push("ingest.max_body_bytes must be at least 1024".to_owned());
        }
        if self.ack_timeout_ms < 100 {
            problems.push("ingest.ack_timeout_ms must be at least 100".to_owned());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("ingest.listen must be HOST:PORT such as 127.0.0.1:8080 (got {:?})", self.listen));
        }
        problems
    }
}

/// One entry of the API keys file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The secret the client sends as `Authorization: Bearer <key>`.
    pub key: String,
    /// The only tenant this key may write usage for.
    pub tenant_id: String,
    /// Who holds the key (for logs; optional).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeysFile {
    #[serde(default)]
    keys: Vec<ApiKeyEntry>,
}

/// The tenant API keys: key -> tenant.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_key: HashMap<String, ApiKeyEntry>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets.
        f.debug_struct("ApiKeys").field("keys", &self.by_key.len()).finish()
    }
}

impl ApiKeys {
    /// Keys from entries; errors on an empty or duplicated key or an empty tenant.
    pub fn from_entries(entries: Vec<ApiKeyEntry>) -> Result<ApiKeys, IngestError> {
        let mut by_key = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let bad = |what: &str| IngestError::Config(format!("API key #{} ({what})", i + 1));
            if entry.key.trim().len() < 16 {
                return Err(bad("`key` must be at least 16 characters; generate one with `openssl rand -hex 24`"));
            }
            if entry.tenant_id.trim().is_empty() {
                return Err(bad("`tenant_id` is empty"));
            }
            if by_key.contains_key(&entry.key) {
                return Err(bad("the same key appears twice"));
            }
            by_key.insert(entry.key.clone(), entry);
        }
        Ok(ApiKeys { by_key })
    }

    /// Reads a keys file (`[[keys]]` tables with `key`, `tenant_id` and an optional `name`).
    pub fn load(path: &Path) -> Result<ApiKeys, IngestError> {
        use figment::providers::{Format, Toml};
        if !path.exists() {
            return Err(IngestError::Config(format!(
                "API keys file {} does not exist: copy config/api-keys.example.toml there and edit it, \
                 or point ingest.api_keys_file (LEDGER__INGEST__API_KEYS_FILE) at yours",
                path.display()
            )));
        }
        let file: ApiKeysFile = figment::Figment::from(Toml::file(path))
            .extract()
            .map_err(|e| IngestError::Config(format!("API keys file {}: {e}", path.display())))?;
        if file.keys.is_empty() {
            return Err(IngestError::Config(format!(
                "API keys file {} has no [[keys]] entry: nobody could write usage",
                path.display()
            )));
        }
        ApiKeys::from_entries(file.keys)
    }

    /// The entry of a presented key.
    pub fn lookup(&self, key: &str) -> Option<&ApiKeyEntry> {
        self.by_key.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_keys_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/api-keys.example.toml");
        let keys = ApiKeys::load(&path).unwrap();
        assert!(!keys.is_empty());
    }

    #[test]
    fn short_duplicate_and_missing_keys_are_config_errors() {
        let entry = |k: &str, t: &str| ApiKeyEntry { key: k.into(), tenant_id: t.into(), name: None };
        assert!(ApiKeys::from_entries(vec![entry("short", "acme")]).is_err());
        assert!(ApiKeys::from_entries(vec![entry("0123456789abcdef", "")]).is_err());
        let dup = vec![entry("0123456789abcdef", "a"), entry("0123456789abcdef", "b")];
        assert!(ApiKeys::from_entries(dup).is_err());
        let err = ApiKeys::load(Path::new("/nonexistent/keys.toml")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn default_settings_are_valid() {
        assert!(IngestSettings::default().problems().is_empty());
        let bad = IngestSettings { max_events: 0, listen: "nowhere".into(), ..IngestSettings::default() };
        assert_eq!(bad.problems().len(), 2);
    }
}
