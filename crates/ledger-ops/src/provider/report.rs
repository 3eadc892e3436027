//! The result of `ledger reconcile provider`, for people (a table) and scripts (JSON).

use chrono::{DateTime, Utc};
use ledger_core::budget::Percent;

use super::{Gap, Provider};

/// The reconciliation of the ledger against one provider's exports.
#[derive(Debug, Clone)]
pub struct ProviderReport {
    /// The provider.
    pub provider: Provider,
    /// The database read.
    pub database: String,
    /// The export files read.
    pub files: Vec<String>,
    /// `[from, to)` the exports cover.
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// Days in the range.
    pub days: i64,
    /// (day, model) pairs compared.
    pub compared: usize,
    /// True when a cost export was read, so prices were compared.
    pub prices_compared: bool,
    /// The tolerance (percentage of the larger side).
    pub tolerance: Percent,
    /// The gaps, by day and model.
    pub gaps: Vec<Gap>,
}

impl ProviderReport {
    /// True when no gap is beyond the tolerance.
    pub fn passed(&self) -> bool {
        self.gaps.iter().all(|g| !g.beyond_tolerance)
    }

    /// The gaps beyond the tolerance.
    pub fn failing(&self) -> usize {
        self.gaps.iter().filter(|g| g.beyond_tolerance).count()
    }

    /// A table of the gaps and a verdict.
    pub fn to_text(&self) -> String {
        let mut rows = Vec::new();
        for g in &self.gaps {
            for (i, d) in g.differences.iter().enumerate() {
                let first = i == 0;
                let cell = |s: String| if first { s } else { String::new() };
                rows.push(vec![
                    cell(g.day.to_string()),
                    cell(g.model.clone()),
                    cell(g.kind.name().to_owned()),
                    cell(if g.beyond_tolerance { "yes".into() } else { "no (within tolerance)".into() }),
                    d.what.clone(),
                    d.ledger.clone(),
                    d.provider.clone(),
                ]);
            }
        }
        let mut out = format!(
            "Ledger (database {}) against {:?} exports {} for {} .. {} ({} days, {} day/model pairs; prices {}compared), \
             tolerance {}%\n",
            self.database,
            self.provider,
            self.files.join(", "),
            self.range.0.format("%Y-%m-%d %H:%M UTC"),
            self.range.1.format("%Y-%m-%d %H:%M UTC"),
            self.days,
            self.compared,
            if self.prices_compared { "" } else { "not " },
            self.tolerance
        );
        if !rows.is_empty() {
            let header = ["day (UTC)", "model", "gap", "beyond tolerance", "figure", "ledger", "provider"];
            out.push_str(&format!("{}\n", crate::format::table(&header, rows, &[])));
        }
        if self.passed() {
            out.push_str(&format!("PASS: no gap beyond the tolerance ({} within it).\n", self.gaps.len()));
        } else {
            out.push_str(&format!("FAIL: {} gap(s) beyond the tolerance.\n", self.failing()));
        }
        out
    }

    /// One JSON document: the verdict and every gap with its differences.
    pub fn to_json(&self) -> serde_json::Value {
        let gaps: Vec<serde_json::Value> = self
            .gaps
            .iter()
            .map(|g| {
                let diffs: Vec<serde_json::Value> = g
                    .differences
                    .iter()
                    .map(|d| serde_json::json!({ "figure": d.what, "ledger": d.ledger, "provider": d.provider }))
                    .collect();
                serde_json::json!({
                    "day": g.day.to_string(), "model": g.model, "kind": g.kind.code(), "description": g.kind.name(),
                    "beyond_tolerance": g.beyond_tolerance, "differences": diffs,
                })
            })
            .collect();
        serde_json::json!({
            "provider": self.provider.ledger_name(),
            "database": self.database,
            "files": self.files,
            "from": self.range.0.to_rfc3339(),
            "to": self.range.1.to_rfc3339(),
            "compared": self.compared,
            "prices_compared": self.prices_compared,
            "tolerance_percent": self.tolerance.to_string(),
            "passed": self.passed(),
            "gaps": gaps,
        })
    }
}
