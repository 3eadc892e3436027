//! Posting an alert to one webhook: the headers, the success rule and the back-off.
//!
//! Every attempt of one alert carries the same `Idempotency-Key` and `webhook-id` (Standard
//! Webhooks; receivers that deduplicate see it once) and a fresh `webhook-timestamp`. A 2xx
//! answer is a delivery; anything else (refused connection, timeout, 3xx, 4xx, 5xx) is retried
//! with exponential back-off, for as long as it takes: a receiver that is down gets the message
//! when it is back, and a misconfigured one holds only its own queue. The URL is a secret and
//! never appears in a log or an error.

use std::time::Duration;

use ledger_core::secret::Secret;

use crate::config::{NotifySettings, WebhookFormat, WebhookSettings};
use crate::message::Alert;

/// One receiver, ready to post.
#[derive(Clone)]
pub struct Webhook {
    /// Its name (what logs show).
    pub name: String,
    url: Secret,
    format: WebhookFormat,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("name", &self.name).field("format", &self.format).finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook from its settings (resolves the URL).
    pub fn new(settings: &WebhookSettings, notify: &NotifySettings) -> Result<Webhook, String> {
        let url = settings.resolve_url()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(notify.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("llm-usage-ledger-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notify webhook {:?}: cannot build the HTTP client: {}", settings.name, e.without_url()))?;
        Ok(Webhook { name: settings.name.clone(), url, format: settings.format, client })
    }

    /// One attempt: `Ok(status)` on a 2xx answer, else why not (without the URL).
    pub async fn post(&self, alert: &Alert) -> Result<u16, String> {
        let response = self
            .client
            .post(self.url.expose())
            .header("content-type", "application/json")
            .header("idempotency-key", &alert.id)
            .header("webhook-id", &alert.id)
            .header("webhook-timestamp", chrono::Utc::now().timestamp().to_string())
            .body(alert.body(self.format))
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

/// The wait before attempt `attempt + 1` (attempt 0 failed: the initial back-off), doubling up to
/// the maximum.
pub fn backoff(settings: &NotifySettings, attempt: u32) -> Duration {
    let ms = settings.initial_backoff_ms.saturating_mul(1u64 << attempt.min(32));
    Duration::from_millis(ms.min(settings.max_backoff_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = NotifySettings { initial_backoff_ms: 500, max_backoff_ms: 3000, ..NotifySettings::default() };
        let waits: Vec<u64> = (0..5).map(|a| backoff(&s, a).as_millis() as u64).collect();
        assert_eq!(waits, vec![500, 1000, 2000, 3000, 3000]);
        assert_eq!(backoff(&s, 100).as_millis(), 3000);
    }
}
