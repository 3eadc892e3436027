//! Enforcer counters, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ledger_core::budget::Outstanding;

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
    /// Lease requests read.
    pub lease_requests: AtomicU64,
    /// Lease requests that did not decode (skipped).
    pub lease_decode_errors: AtomicU64,
    /// Answers GRANTED.
    pub leases_granted: AtomicU64,
    /// Answers WAIT.
    pub lease_waits: AtomicU64,
    /// Answers NOT_LEASED.
    pub lease_not_leased: AtomicU64,
    /// Answers EXHAUSTED.
    pub lease_exhausted: AtomicU64,
    /// Answers that could not be sent.
    pub lease_publish_failures: AtomicU64,
    /// Leases that expired without being returned as done.
    pub leases_expired: AtomicU64,
    /// Closed leases settled against the ledger.
    pub leases_settled: AtomicU64,
    /// Outstanding leases per lease budget (its current period).
    lease_gauges: Mutex<BTreeMap<String, Outstanding>>,
}

impl Stats {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the per-budget lease gauges.
    pub fn set_lease_gauges(&self, gauges: BTreeMap<String, Outstanding>) {
        *self.lease_gauges.lock().unwrap_or_else(|p| p.into_inner()) = gauges;
    }

    /// The per-budget lease gauges.
    pub fn lease_gauges(&self) -> BTreeMap<String, Outstanding> {
        self.lease_gauges.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        let mut out = self.render_counters();
        let name = "ledger_enforcer_lease_answers_total";
        let _ = writeln!(out, "# HELP {name} Answers to lease requests, by status\n# TYPE {name} counter");
        for (status, v) in [
            ("GRANTED", &self.leases_granted),
            ("WAIT", &self.lease_waits),
            ("NOT_LEASED", &self.lease_not_leased),
            ("EXHAUSTED", &self.lease_exhausted),
        ] {
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {}", v.load(Ordering::Relaxed));
        }
        let gauges = self.lease_gauges();
        let name = "ledger_enforcer_lease_outstanding_usd";
        let _ = writeln!(out, "# HELP {name} Held by active and used by unsettled leases, per lease budget\n# TYPE {name} gauge");
        for (budget, o) in &gauges {
            let _ = writeln!(out, "{name}{{budget=\"{}\"}} {}", label(budget), o.total());
        }
        let name = "ledger_enforcer_leases_active";
        let _ = writeln!(out, "# HELP {name} Active leases per lease budget\n# TYPE {name} gauge");
        for (budget, o) in &gauges {
            let _ = writeln!(out, "{name}{{budget=\"{}\"}} {}", label(budget), o.active);
        }
        out
    }

    fn render_counters(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &str, &AtomicU64); 15] = [
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
            ("ledger_enforcer_lease_requests_total", "counter", "Lease requests read", &self.lease_requests),
            ("ledger_enforcer_leases_granted_total", "counter", "Leases granted", &self.leases_granted),
            (
                "ledger_enforcer_lease_decode_errors_total",
                "counter",
                "Lease requests skipped because they do not decode",
                &self.lease_decode_errors,
            ),
            (
                "ledger_enforcer_lease_publish_failures_total",
                "counter",
                "Lease answers that could not be sent",
                &self.lease_publish_failures,
            ),
            ("ledger_enforcer_leases_expired_total", "counter", "Leases that expired before a done return", &self.leases_expired),
            ("ledger_enforcer_leases_settled_total", "counter", "Closed leases settled against the ledger", &self.leases_settled),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

/// A Prometheus label value, with backslashes, double quotes and line feeds escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
