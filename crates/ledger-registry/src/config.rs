//! The `[schema]` settings: how producers frame usage events, the Confluent schema ids known
//! without a registry, and the registry.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use ledger_core::secret::redact_url;
use ledger_core::secret::Secret;
use ledger_schema::{Framing, IdWriter, RecordSchema};
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// What a `schema.ids` entry names for the schema this program writes.
pub const CURRENT: &str = "current";

/// The `[schema]` section of the configuration file.
///
/// Readers (the processor, `ledger reconcile`, `ledger dlq replay`) accept both framings
/// whatever `framing` says; a Confluent message's schema id is looked up in `ids`, then in the
/// registry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaSettings {
    /// How producers (the SDK, `ledger ingest`, `ledger produce`) frame each usage event:
    /// `single_object` (the default) or `confluent`.
    pub framing: Framing,
    /// Confluent schema ids known without a registry: id (as text, a TOML key) to `"current"`
    /// (the usage event schema this program writes) or the path of a writer schema (`.avsc`).
    /// Producers in `confluent` framing write the smallest id of the current schema from here,
    /// without asking a registry.
    pub ids: BTreeMap<String, String>,
    /// The schema registry (Confluent REST API); none: only `ids`.
    pub registry: Option<RegistryConfig>,
}

/// Where the schema registry is and how to reach it (the `[schema.registry]` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081` (Confluent) or
    /// `http://127.0.0.1:8081/apis/ccompat/v7` (Apicurio). Credentials go in `user` and
    /// `password`, never in the URL.
    pub url: String,
    /// User for HTTP basic authentication (Confluent Cloud: the API key).
    pub user: Option<String>,
    /// Password for basic authentication (Confluent Cloud: the API secret).
    pub password: Option<Secret>,
    /// A file holding the password (container secrets); read when the client is built.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA certificates an `https://` registry's certificate must chain to;
    /// without it, the system's trusted roots. Verification is always on.
    pub ca_file: Option<PathBuf>,
    /// Producers register the current schema under `<topic>-value` when it is not there yet
    /// (the default, as Confluent's serializers do); `false`: they only look it up and refuse
    /// to start when it is missing.
    pub auto_register: bool,
    /// Timeout of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Retries of a request that failed for a reason that may pass (no connection, timeout,
    /// HTTP 5xx, 429), with exponential back-off from 100 ms.
    pub retries: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: String::new(),
            user: None,
            password: None,
            password_file: None,
            ca_file: None,
            auto_register: true,
            timeout_ms: 5_000,
            retries: 3,
        }
    }
}

/// The subject of a topic's values under Confluent's default `TopicNameStrategy`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

impl SchemaSettings {
    /// Every problem of the settings (files are read later, when the ids are resolved).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in &self.ids {
            if key.parse::<u32>().is_err() {
                problems.push(format!("schema.ids: key {key:?} is not a schema id (a whole number 0..=4294967295)"));
            }
            if value.trim().is_empty() {
                problems.push(format!("schema.ids.{key}: empty (\"{CURRENT}\" or the path of an .avsc file)"));
            }
        }
        if let Some(registry) = &self.registry {
            problems.extend(registry.problems());
        }
        problems
    }

    /// Checks the settings; the error lists every problem.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::Config(problems.join("; ")))
        }
    }

    /// The configured ids, resolved against `schema` (the reader): `"current"`, or the writer
    /// schema in the named file. A file that cannot be read, or whose schema `schema` cannot
    /// read, is an error naming the setting.
    pub fn configured_ids(&self, schema: &RecordSchema) -> Result<Vec<(u32, IdWriter)>, RegistryError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.ids.len());
        for (key, value) in &self.ids {
            let id: u32 = key.parse().map_err(|_| RegistryError::Config(format!("schema.ids: {key:?} is not a schema id")))?;
            if value == CURRENT {
                out.push((id, IdWriter::Current));
                continue;
            }
            let text = std::fs::read_to_string(value)
                .map_err(|e| RegistryError::Config(format!("schema.ids.{key}: cannot read {value}: {e}")))?;
            match schema.id_writer(&text) {
                IdWriter::Rejected(why) => return Err(RegistryError::Config(format!("schema.ids.{key}: {value}: {why}"))),
                writer => out.push((id, writer)),
            }
        }
        Ok(out)
    }
}

impl RegistryConfig {
    /// Settings for the registry at `url`, the rest default.
    pub fn new(url: impl Into<String>) -> Self {
        RegistryConfig { url: url.into(), ..RegistryConfig::default() }
    }

    /// Every problem of the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(format!(
                "schema.registry.url {:?} is not an http:// or https:// URL of the registry's API",
                redact_url(url)
            ));
        }
        let authority = url.split_once("://").map_or("", |(_, r)| r).split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            problems.push(format!(
                "schema.registry.url {} carries credentials: put them in schema.registry.user and \
                 schema.registry.password (or password_file) instead",
                redact_url(url)
            ));
        }
        if self.ca_file.is_some() && !url.starts_with("https://") {
            problems.push("schema.registry.ca_file is set but schema.registry.url is not https://".to_owned());
        }
        if self.password.is_some() && self.password_file.is_some() {
            problems.push("schema.registry: set password or password_file, not both".to_owned());
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.user.is_none() {
            problems.push("schema.registry: a password is set but no user".to_owned());
        }
        if self.timeout_ms == 0 {
            problems.push("schema.registry.timeout_ms must be positive".to_owned());
        }
        if self.retries > 20 {
            problems.push(format!("schema.registry.retries must be at most 20 (got {})", self.retries));
        }
        problems
    }

    /// The password: `password`, or the contents of `password_file`.
    pub(crate) fn resolved_password(&self) -> Result<Option<Secret>, RegistryError> {
        match &self.password_file {
            Some(path) => std::fs::read_to_string(path).map(|t| Some(Secret::from_file_contents(&t))).map_err(|e| {
                RegistryError::Config(format!("schema.registry.password_file: cannot read {}: {e}", path.display()))
            }),
            None => Ok(self.password.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named_and_no_secret_shown() {
        let settings = SchemaSettings {
            ids: BTreeMap::from([("x".into(), "current".into()), ("7".into(), " ".into())]),
            registry: Some(RegistryConfig {
                url: "https://ledger:hunter2@registry.example.com".into(),
                password: Some(Secret::new("pw")),
                timeout_ms: 0,
                ..RegistryConfig::default()
            }),
            ..SchemaSettings::default()
        };
        let problems = settings.problems();
        let text = problems.join("\n");
        assert_eq!(problems.len(), 5, "{text}");
        assert!(text.contains("key \"x\" is not a schema id"), "{text}");
        assert!(text.contains("schema.ids.7: empty"), "{text}");
        assert!(text.contains("carries credentials") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("a password is set but no user"), "{text}");
        assert!(text.contains("timeout_ms must be positive"), "{text}");
        let plain = RegistryConfig { ca_file: Some("/ca.pem".into()), ..RegistryConfig::new("http://h:8081") };
        assert_eq!(plain.problems(), vec!["schema.registry.ca_file is set but schema.registry.url is not https://"]);
        assert!(RegistryConfig::new("ftp://h").problems()[0].contains("not an http:// or https:// URL"));
    }

    #[test]
    fn configured_ids_name_the_current_schema_or_a_readable_file() {
        let schema = ledger_schema::schema_of::<ledger_core::UsageEvent>().unwrap();
        let dir = std::env::temp_dir().join(format!("ledger-registry-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v1 = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/avro/history/usage_event/v1.avsc");
        let other = dir.join("other.avsc");
        std::fs::write(&other, r#"{"type":"record","name":"UsageEvent","fields":[{"name":"x","type":"int"}]}"#).unwrap();
        let ok = SchemaSettings {
            ids: BTreeMap::from([("3".into(), "current".into()), ("1".into(), v1.into())]),
            ..SchemaSettings::default()
        };
        let ids = ok.configured_ids(schema).unwrap();
        assert!(matches!(ids[0], (1, IdWriter::Current | IdWriter::Older(_))), "{ids:?}");
        assert!(matches!(ids[1], (3, IdWriter::Current)), "{ids:?}");
        let bad =
            SchemaSettings { ids: BTreeMap::from([("9".into(), other.display().to_string())]), ..SchemaSettings::default() };
        let err = bad.configured_ids(schema).unwrap_err().to_string();
        assert!(err.contains("schema.ids.9") && err.contains("cannot be read as the current UsageEvent schema"), "{err}");
        let missing =
            SchemaSettings { ids: BTreeMap::from([("2".into(), "/nonexistent.avsc".into())]), ..SchemaSettings::default() };
        assert!(missing.configured_ids(schema).unwrap_err().to_string().contains("schema.ids.2: cannot read /nonexistent.avsc"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
