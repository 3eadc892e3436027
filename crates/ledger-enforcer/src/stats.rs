//! Enforcer counters, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter and gauge of the enforcer.
#[derive(Debug, Default)]
pub struct Stats {
    /// Spend updates read from the spend topic.
    pub spend_updates: AtomicU64,
    /// Spend updates that count toward a budget.
    pub spend_updates_counted: AtomicU64,
    /// Spend records that did not decode (skipped).
    pub spend_decode_errors: AtomicU64,
    /// Signals published (acknowledged by Kafka).
    pub signals_published: AtomicU64,
    /// Signal deliveries that failed (retried).
    pub publish_failures: AtomicU64,
    /// Budgets files applied after a change.
    pub policy_reloads: AtomicU64,
    /// Changed budgets files refused as invalid (the previous policy stays in force).
    pub policy_rejected: AtomicU64,
    /// Budgets in force.
    pub budgets: AtomicU64,
    /// 1 once the spend topic has been read to its end and the enforcer follows it live.
    pub live: AtomicU64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &str, &AtomicU64); 9] = [
            ("ledger_enforcer_spend_updates_total", "counter", "Spend updates read", &self.spend_updates),
            (
                "ledger_enforcer_spend_updates_counted_total",
                "counter",
                "Spend updates counted toward a budget",
                &self.spend_updates_counted,
            ),
            (
                "ledger_enforcer_spend_decode_errors_total",
                "counter",
                "Spend records skipped because they do not decode",
                &self.spend_decode_errors,
            ),
            (
                "ledger_enforcer_signals_published_total",
                "counter",
                "Budget signals acknowledged by Kafka",
                &self.signals_published,
            ),
            (
                "ledger_enforcer_publish_failures_total",
                "counter",
                "Budget signal deliveries that failed and are retried",
                &self.publish_failures,
            ),
            ("ledger_enforcer_policy_reloads_total", "counter", "Changed budgets files applied", &self.policy_reloads),
            (
                "ledger_enforcer_policy_rejected_total",
                "counter",
                "Changed budgets files refused as invalid",
                &self.policy_rejected,
            ),
            ("ledger_enforcer_budgets", "gauge", "Budgets in force", &self.budgets),
            ("ledger_enforcer_live", "gauge", "1 when the spend topic is read to its end and followed live", &self.live),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}
