//! Operations on a running ledger, as libraries that return typed reports: the `ledger` CLI
//! parses arguments and renders these; tests call them directly.
//!
//! - [`reconcile`]: the ledger against its rollups and its Kafka offsets.
//! - [`dlq`]: the dead-letter topic by reason, and replays that count once.
//! - [`chargeback`]: a month's spend charged to teams, projects or cost centers.
//! - [`focus`]: a month's AI spend as FOCUS rows; [`close`]: the month-end close and its corrections.
//! - [`provider`]: the ledger against a provider's own usage and cost exports.
//! - [`spend`]: spend grouped by attribution dimensions, and the daily chart.
//! - [`price`], [`prices`], [`price_lookup`], [`price_diff`]: pricing JSON lines, what a catalog
//!   holds, what a model name resolves to, and what changed between two catalogs (and what the
//!   ledger's traffic would cost under the newer one).
//! - [`range`], [`format`](mod@format): time ranges of the command line, and exact money as text.
//! - [`terminal`]: progress bars, tables and prompts of the CLI's rendering.

pub mod bench;
pub mod chargeback;
pub mod chart;
pub mod close;
pub mod config;
pub mod correction;
pub mod dlq;
pub mod focus;
pub mod format;
pub mod metrics_endpoint;
pub mod price;
pub mod price_diff;
pub mod price_lookup;
pub mod prices;
pub mod produce;
pub mod provider;
pub mod range;
pub mod reconcile;
pub mod service;
pub mod spend;
pub mod stack;
pub mod terminal;

mod error;

pub use error::OpsError;
