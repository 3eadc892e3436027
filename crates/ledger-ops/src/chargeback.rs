//! A month's spend charged to teams, projects or cost centers, with unattributed spend allocated
//! by the rule of [`ledger_core::chargeback`] (in proportion to attributed spend, largest
//! remainder at the pico-dollar), totals exact to the ledger.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use figment::providers::{Format as _, Toml};
use figment::Figment;

use ledger_clickhouse::chargeback::AttributionSpend;
use ledger_clickhouse::ClickHouseConfig;
use ledger_core::chargeback::{round_preserving_sum, AttributedSpend, Chargeback, CostCenterMapping};
use ledger_core::Money;

use crate::format::csv_field;
use crate::OpsError;

/// The allocation rule, as printed with every report.
pub const RULE: &str = "unattributed spend is allocated in proportion to attributed spend; \
    the pico-dollars left after rounding down go one each to the largest remainders (ties: key order), \
    so the parts add up exactly";

/// What a chargeback line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeBy {
    /// One line per team (events without a team are unattributed).
    Team,
    /// One line per project (events without a project are unattributed).
    Project,
    /// One line per cost center of the mapping (no team or an unmapped team: unattributed).
    CostCenter,
}

impl ChargeBy {
    /// The column name of a line's key.
    pub fn name(self) -> &'static str {
        match self {
            ChargeBy::Team => "team",
            ChargeBy::Project => "project",
            ChargeBy::CostCenter => "cost_center",
        }
    }
}

/// Why some spend is unattributed: `(requests, cost)` per reason.
pub type Unattributed = BTreeMap<String, (u64, Money)>;

/// What to charge back.
#[derive(Debug, Clone)]
pub struct ChargebackRequest<'a> {
    /// The month, `YYYY-MM` (event time, UTC).
    pub month: &'a str,
    /// What a line is.
    pub by: ChargeBy,
    /// Teams to cost centers (required by [`ChargeBy::CostCenter`]).
    pub mapping: CostCenterMapping,
    /// Only this tenant's spend.
    pub tenant: Option<&'a str>,
}

/// A month's chargeback, adding up exactly to the ledger's total for the month.
#[derive(Debug, Clone)]
pub struct ChargebackReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// `[from, to)` of the month.
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// The database read.
    pub database: String,
    /// The tenant, when only one was charged.
    pub tenant: Option<String>,
    /// What a line is.
    pub by: ChargeBy,
    /// The lines, the unattributed spend and its allocation.
    pub chargeback: Chargeback,
    /// Why the unattributed spend is unattributed.
    pub reasons: Unattributed,
}

/// Reads a cost-center mapping file (TOML, unknown keys are errors).
pub fn load_mapping(path: &Path) -> Result<CostCenterMapping, OpsError> {
    if !path.exists() {
        return Err(OpsError::Invalid(format!(
            "mapping file {} does not exist (see config/cost-centers.example.toml for the format)",
            path.display()
        )));
    }
    let mapping: CostCenterMapping = Figment::from(Toml::file(path)).extract().map_err(|e| {
        OpsError::Invalid(format!(
            "reading the cost-center mapping {} (format: see config/cost-centers.example.toml): {e}",
            path.display()
        ))
    })?;
    let problems = mapping.problems();
    if !problems.is_empty() {
        return Err(OpsError::Invalid(format!("mapping file {}:\n  - {}", path.display(), problems.join("\n  - "))));
    }
    Ok(mapping)
}

/// Splits the ledger's spend into attributed lines and unattributed spend (with reasons).
pub fn attribute(
    rows: &[AttributionSpend],
    by: ChargeBy,
    mapping: &CostCenterMapping,
) -> Result<(Vec<AttributedSpend>, Unattributed), OpsError> {
    let mut attributed = Vec::new();
    let mut unattributed: Unattributed = BTreeMap::new();
    for r in rows {
        let key = match by {
            ChargeBy::Team => (!r.team.is_empty()).then(|| r.team.clone()).ok_or_else(|| "no team".to_owned()),
            ChargeBy::Project => (!r.project.is_empty()).then(|| r.project.clone()).ok_or_else(|| "no project".to_owned()),
            ChargeBy::CostCenter => match mapping.cost_center(&r.tenant_id, &r.team) {
                Some(cc) => Ok(cc.to_owned()),
                None if r.team.is_empty() => Err("no team".to_owned()),
                None => Err(format!("team {:?} not in the mapping", r.team)),
            },
        };
        match key {
            Ok(key) => attributed.push(AttributedSpend { key, requests: r.requests, cost: r.cost }),
            Err(reason) => {
                let e = unattributed.entry(reason).or_insert((0, Money::ZERO));
                e.0 += r.requests;
                e.1 = e.1.checked_add(r.cost).map_err(|_| OpsError::Inconsistent("unattributed spend overflowed".into()))?;
            }
        }
    }
    Ok((attributed, unattributed))
}

/// The chargeback of a month, read from `usage_ledger` itself; fails when the ledger changed
/// between the two reads it takes (the lines and the total), so a report always adds up.
pub async fn chargeback(config: &ClickHouseConfig, request: &ChargebackRequest<'_>) -> Result<ChargebackReport, OpsError> {
    let (from, to) = crate::range::month_range(request.month)?;
    let client = config.client().map_err(|e| OpsError::Invalid(format!("invalid ClickHouse settings: {e}")))?;
    let db = &config.database;
    let ch = |e| OpsError::clickhouse(e, &config.url);
    let rows = ledger_clickhouse::chargeback::attribution_spend(&client, db, from, to, request.tenant).await.map_err(ch)?;
    let ledger = ledger_clickhouse::chargeback::ledger_total(&client, db, from, to, request.tenant).await.map_err(ch)?;
    let (attributed, reasons) = attribute(&rows, request.by, &request.mapping)?;
    let unattributed_requests: u64 = reasons.values().map(|(r, _)| r).sum();
    let unattributed = Money::checked_sum(reasons.values().map(|(_, c)| *c))?;
    let chargeback =
        Chargeback::build(attributed, unattributed_requests, unattributed).map_err(|e| OpsError::Inconsistent(e.to_string()))?;
    // The report must add up to the ledger: a second read that disagrees means rows arrived
    // (or vanished) between the two queries.
    if chargeback.total != ledger.cost || chargeback.total_requests != ledger.requests {
        return Err(OpsError::Inconsistent(format!(
            "the ledger changed while the report was read (lines total {} USD over {} requests, ledger {} USD over {}): \
             run the report again, ideally once the month is closed",
            chargeback.total, chargeback.total_requests, ledger.cost, ledger.requests
        )));
    }
    if chargeback.charged_total().map_err(|e| OpsError::Inconsistent(e.to_string()))? != ledger.cost {
        return Err(OpsError::Inconsistent("internal error: charged amounts do not add up".into()));
    }
    Ok(ChargebackReport {
        month: request.month.trim().to_owned(),
        range: (from, to),
        database: db.clone(),
        tenant: request.tenant.map(str::to_owned),
        by: request.by,
        chargeback,
        reasons,
    })
}

/// One line of a chargeback as people read it: amounts rounded for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayRow {
    /// The line's key, `(unattributed — reasons)` or `TOTAL`.
    pub label: String,
    /// Requests.
    pub requests: u64,
    /// Spend attributed to the line.
    pub direct: Money,
    /// Its share of the unattributed spend.
    pub share: Money,
    /// What it is charged.
    pub charged: Money,
}

impl ChargebackReport {
    /// The lines, the unattributed line (when there is such spend) and the total, rounded to
    /// `decimals` by largest remainder, so each printed column adds up to its printed total; the
    /// printed share is charged - direct of the printed values, so each row adds up too.
    pub fn display_rows(&self, decimals: u32) -> Result<Vec<DisplayRow>, OpsError> {
        let c = &self.chargeback;
        let mut direct: Vec<Money> = c.lines.iter().map(|l| l.direct).collect();
        let mut charged: Vec<Money> = c.lines.iter().map(|l| l.charged).collect();
        direct.push(c.unattributed);
        charged.push(c.unallocated);
        let round = |v: &[Money]| round_preserving_sum(v, decimals).map_err(|e| OpsError::Inconsistent(e.to_string()));
        let (direct, charged) = (round(&direct)?, round(&charged)?);
        let row = |i: usize, label: String, requests: u64| DisplayRow {
            label,
            requests,
            direct: direct[i],
            share: Money::from_picos(charged[i].picos() - direct[i].picos()),
            charged: charged[i],
        };
        let mut rows: Vec<DisplayRow> = c.lines.iter().enumerate().map(|(i, l)| row(i, l.key.clone(), l.requests)).collect();
        if c.unattributed_requests > 0 || c.unattributed != Money::ZERO {
            let why: Vec<String> = self.reasons.iter().map(|(reason, (n, _))| format!("{reason}: {n}")).collect();
            rows.push(row(c.lines.len(), format!("(unattributed — {})", why.join("; ")), c.unattributed_requests));
        }
        let total = c.total.round_to(decimals);
        rows.push(DisplayRow {
            label: "TOTAL".into(),
            requests: c.total_requests,
            direct: total,
            share: Money::ZERO,
            charged: total,
        });
        Ok(rows)
    }

    /// The report for people: a table (amounts rounded to `decimals` by largest remainder, so
    /// the columns add up), the exact total and the allocation rule.
    pub fn to_text(&self, decimals: u32) -> Result<String, OpsError> {
        use std::fmt::Write as _;
        let c = &self.chargeback;
        let scope = self.tenant.as_ref().map(|t| format!("tenant {t}, ")).unwrap_or_default();
        if c.total_requests == 0 {
            return Ok(format!(
                "No spend in database {} for {scope}{} (event time, UTC). Check --month, or run `ledger process`.\n",
                self.database, self.month
            ));
        }
        let name = self.by.name().replace('_', " ");
        let header = [name.as_str(), "requests", "direct (USD)", "share of unattributed (USD)", "charged (USD)"];
        let money = |m: Money| crate::format::fmt_money(m, decimals);
        let cells = self
            .display_rows(decimals)?
            .into_iter()
            .map(|w| vec![w.label, w.requests.to_string(), money(w.direct), money(w.share), money(w.charged)])
            .collect();
        let mut out = format!("{}\n", crate::format::table(&header, cells, &[1, 2, 3, 4]));
        writeln!(
            out,
            "Chargeback of {scope}{} by {} in database {}. Total (exact): {} USD over {} requests = the ledger's total for \
             the month.",
            self.month,
            self.by.name(),
            self.database,
            c.total,
            c.total_requests
        )?;
        if c.unattributed != Money::ZERO && c.unallocated == Money::ZERO {
            writeln!(out, "Allocation rule: {RULE}.")?;
        } else if c.unattributed != Money::ZERO {
            writeln!(out, "No spend is attributed, so the unattributed spend could not be allocated; it stays on its own line.")?;
        }
        writeln!(
            out,
            "Amounts are rounded to {decimals} decimals for display by largest remainder, so the columns add up to the total; \
             --format csv|json is exact."
        )?;
        Ok(out)
    }

    /// CSV: `line,key,requests,direct_usd,allocated_usd,charged_usd`; `line` is `attributed`,
    /// `unattributed` or `total`. The charged column of the attributed and unattributed lines
    /// adds up to the total line, exactly; so does the direct column.
    pub fn to_csv(&self) -> String {
        let c = &self.chargeback;
        let mut out = format!("line,{},requests,direct_usd,allocated_usd,charged_usd\n", self.by.name());
        for l in &c.lines {
            out.push_str(&format!(
                "attributed,{},{},{},{},{}\n",
                csv_field(&l.key),
                l.requests,
                l.direct,
                l.allocated,
                l.charged
            ));
        }
        let given_away = Money::from_picos(c.unallocated.picos() - c.unattributed.picos());
        out.push_str(&format!("unattributed,,{},{},{},{}\n", c.unattributed_requests, c.unattributed, given_away, c.unallocated));
        out.push_str(&format!("total,,{},{},{},{}\n", c.total_requests, c.total, Money::ZERO, c.total));
        out
    }

    /// One JSON document with exact amounts as strings.
    pub fn to_json(&self) -> serde_json::Value {
        let (c, by) = (&self.chargeback, self.by);
        let lines: Vec<serde_json::Value> = c
            .lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    by.name(): l.key,
                    "requests": l.requests,
                    "direct_usd": l.direct.to_string(),
                    "allocated_usd": l.allocated.to_string(),
                    "charged_usd": l.charged.to_string(),
                })
            })
            .collect();
        let breakdown: Vec<serde_json::Value> = self
            .reasons
            .iter()
            .map(|(reason, (requests, cost))| serde_json::json!({ "reason": reason, "requests": requests, "cost_usd": cost.to_string() }))
            .collect();
        serde_json::json!({
            "month": self.month,
            "database": self.database,
            "tenant": self.tenant,
            "by": by.name(),
            "rule": RULE,
            "lines": lines,
            "unattributed": {
                "requests": c.unattributed_requests,
                "cost_usd": c.unattributed.to_string(),
                "allocated_usd": Money::from_picos(c.unattributed.picos() - c.unallocated.picos()).to_string(),
                "unallocated_usd": c.unallocated.to_string(),
                "reasons": breakdown,
            },
            "total": { "requests": c.total_requests, "cost_usd": c.total.to_string() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, team: &str, project: &str, cost: i128) -> AttributionSpend {
        AttributionSpend {
            tenant_id: tenant.into(),
            team: team.into(),
            project: project.into(),
            requests: 1,
            cost: Money::from_picos(cost),
        }
    }

    #[test]
    fn unattributed_spend_is_named_by_reason() {
        let rows = [row("acme", "search", "s-1", 10), row("acme", "", "", 5), row("globex", "growth", "", 7)];
        let mapping = CostCenterMapping { teams: [("search".to_owned(), "CC-1".to_owned())].into() };
        let (lines, why) = attribute(&rows, ChargeBy::CostCenter, &mapping).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].key, "CC-1");
        assert_eq!(why["no team"].1, Money::from_picos(5));
        assert_eq!(why["team \"growth\" not in the mapping"].1, Money::from_picos(7));
        let (lines, why) = attribute(&rows, ChargeBy::Project, &mapping).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(why["no project"], (2, Money::from_picos(12)));
    }

    #[test]
    fn csv_lines_add_up_to_the_total_line() {
        let rows = [row("acme", "search", "", 10), row("acme", "growth", "", 20), row("acme", "", "", 7)];
        let (lines, reasons) = attribute(&rows, ChargeBy::Team, &CostCenterMapping::default()).unwrap();
        let chargeback = Chargeback::build(lines, 1, reasons["no team"].1).unwrap();
        let report = ChargebackReport {
            month: "2026-11".into(),
            range: crate::range::month_range("2026-11").unwrap(),
            database: "ledger".into(),
            tenant: None,
            by: ChargeBy::Team,
            chargeback,
            reasons,
        };
        let csv = report.to_csv();
        let mut charged = 0i128;
        let mut total = 0i128;
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let v: Money = f[5].parse().unwrap();
            if f[0] == "total" {
                total = v.picos();
            } else {
                charged += v.picos();
            }
        }
        assert_eq!((total, charged), (37, 37));
        assert!(csv.contains("unattributed,,1,0.000000000007,-0.000000000007,0.000000000000"), "{csv}");
        assert_eq!(report.to_json()["total"]["cost_usd"], "0.000000000037");
        let rows = report.display_rows(12).unwrap();
        assert_eq!(rows.len(), 4, "two lines, the unattributed line and the total");
        assert_eq!(rows[2].label, "(unattributed — no team: 1)");
        let charged: i128 = rows[..3].iter().map(|r| r.charged.picos()).sum();
        assert_eq!(charged, rows[3].charged.picos());
    }
}
