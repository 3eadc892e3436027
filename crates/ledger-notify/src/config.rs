//! `[notify]` settings of the `ledger` configuration: the webhooks and how deliveries retry.

use std::path::PathBuf;

use ledger_core::secret::Secret;
use serde::{Deserialize, Serialize};

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A Slack incoming-webhook message (`text` plus `blocks`); also what Mattermost and most
    /// chat tools accept.
    Slack,
    /// The alert as a plain JSON object (every field, exact amounts as strings).
    Json,
}

/// One receiver of alerts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Short unique name (letters, digits, `-`, `_`): what logs show instead of the URL, and the
    /// key of its delivery progress.
    pub name: String,
    /// Where to POST. A secret: incoming-webhook URLs carry their credential, so the URL is never
    /// logged or printed. Set it here, or with `url_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// A file holding the URL (container secrets); used when `url` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// The body: `slack` or `json`.
    #[serde(default = "default_format")]
    pub format: WebhookFormat,
}

fn default_format() -> WebhookFormat {
    WebhookFormat::Json
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("url", &self.url.as_ref().map(|_| ledger_core::secret::REDACTED))
            .field("url_file", &self.url_file)
            .field("format", &self.format)
            .finish()
    }
}

impl WebhookSettings {
    /// The URL, from `url` or the contents of `url_file`.
    pub fn resolve_url(&self) -> Result<Secret, String> {
        match (&self.url, &self.url_file) {
            (Some(u), _) if !u.is_empty() => Ok(u.clone()),
            (_, Some(path)) => std::fs::read_to_string(path)
                .map(|t| Secret::from_file_contents(&t))
                .map_err(|e| format!("notify webhook {:?}: reading url_file {}: {e}", self.name, path.display())),
            _ => Err(format!("notify webhook {:?} has no url (set url or url_file)", self.name)),
        }
    }
}

/// Settings of `ledger notify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// The receivers.
    pub webhooks: Vec<WebhookSettings>,
    /// The compacted topic where the notifier records, per webhook and budget, the last signal it
    /// handled (its progress; survives `kill -9`).
    pub progress_topic: String,
    /// Client id the notifier's Kafka clients report (it assigns partitions itself).
    pub group_id: String,
    /// The budgets file: names the budgets and says which states alert (`alert = [...]`).
    /// Default: `enforcer.budgets_file`.
    pub budgets_file: Option<PathBuf>,
    /// First wait before retrying a failed delivery, in milliseconds; doubles per attempt.
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Timeout of one HTTP request, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            webhooks: Vec::new(),
            progress_topic: "llm.budget-alerts.progress.v1".into(),
            group_id: "ledger-notify".into(),
            budgets_file: None,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            request_timeout_ms: 10_000,
        }
    }
}

impl NotifySettings {
    /// Cross-field checks; every problem at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.webhooks.is_empty() {
            problems.push("notify.webhooks is empty: add at least one [[notify.webhooks]] with a name and a url".to_owned());
        }
        let mut names = std::collections::BTreeSet::new();
        for w in &self.webhooks {
            if w.name.is_empty() || !w.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                problems.push(format!("notify webhook name {:?} must be letters, digits, '-' or '_'", w.name));
            }
            if !names.insert(w.name.as_str()) {
                problems.push(format!("notify webhook name {:?} is used twice", w.name));
            }
            match w.resolve_url() {
                Ok(url) if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) => {
                    problems.push(format!("notify webhook {:?}: the url must start with http:// or https://", w.name))
                }
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
        }
        if self.progress_topic.trim().is_empty() {
            problems.push("notify.progress_topic must not be empty".into());
        }
        if !(10..=60_000).contains(&self.initial_backoff_ms) {
            problems.push(format!("notify.initial_backoff_ms must be within 10..=60000 (got {})", self.initial_backoff_ms));
        }
        if self.max_backoff_ms < self.initial_backoff_ms || self.max_backoff_ms > 3_600_000 {
            problems
                .push(format!("notify.max_backoff_ms must be within initial_backoff_ms..=3600000 (got {})", self.max_backoff_ms));
        }
        if !(100..=300_000).contains(&self.request_timeout_ms) {
            problems.push(format!("notify.request_timeout_ms must be within 100..=300000 (got {})", self.request_timeout_ms));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, url: &str) -> WebhookSettings {
        WebhookSettings { name: name.into(), url: Some(Secret::new(url)), url_file: None, format: WebhookFormat::Slack }
    }

    #[test]
    fn urls_are_secret_and_settings_are_checked() {
        let secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let w = hook("ops", secret);
        assert!(!format!("{w:?}").contains("XXXXSECRET"), "Debug never shows the URL");
        assert!(!serde_json::to_string(&w).unwrap().contains("XXXXSECRET"), "nor does serializing");
        let ok = NotifySettings { webhooks: vec![w], ..NotifySettings::default() };
        assert!(ok.validate().is_ok());
        let bad = NotifySettings {
            webhooks: vec![hook("a b", "ftp://x"), hook("a b", secret)],
            initial_backoff_ms: 0,
            ..NotifySettings::default()
        };
        let problems = bad.validate().unwrap_err().join("\n");
        for needle in ["letters, digits", "used twice", "http:// or https://", "initial_backoff_ms"] {
            assert!(problems.contains(needle), "{needle}: {problems}");
        }
        assert!(!problems.contains("XXXXSECRET"), "problems never show the URL");
        assert!(NotifySettings::default().validate().unwrap_err()[0].contains("webhooks is empty"));
    }
}
