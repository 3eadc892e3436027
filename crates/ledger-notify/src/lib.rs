//! `ledger notify`: budget alerts for people. It reads the budget signals topic that
//! `ledger enforce` publishes and posts one message per budget state transition (notify,
//! throttle, reroute, block, and back to OK) to the configured webhooks, as a Slack-compatible
//! message or a generic JSON object.
//!
//! - [`config`]: the `[notify]` settings (webhooks, progress topic, back-off).
//! - [`message`]: the [`Alert`] and its bodies: budget, scope, spend, limit, state, forecast
//!   exhaustion and what the router now does.
//! - [`deliver`]: one POST with its idempotency headers, and the back-off.
//! - [`progress`]: the durable record of what each webhook has been sent.
//! - [`runner`]: the [`Notifier`] loop: transitions, per-webhook queues, restarts.
//!
//! Exactly once, as far as HTTP allows: a message is recorded on the compacted progress topic
//! only after its receiver answered 2xx, so `kill -9` never loses one; a crash in the instant
//! between the answer and the record sends it once more with the same `Idempotency-Key` /
//! `webhook-id`, which receivers that deduplicate (Standard Webhooks) drop. docs/finance.md has
//! the whole argument.

pub mod config;
pub mod deliver;
pub mod error;
pub mod message;
pub mod progress;
pub mod runner;

pub use config::{NotifySettings, WebhookFormat, WebhookSettings};
pub use error::NotifyError;
pub use message::Alert;
pub use runner::{load_policy, Notifier, NotifierConfig, Stats};
