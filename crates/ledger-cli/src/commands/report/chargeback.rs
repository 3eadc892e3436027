//! `ledger report chargeback`: a month's spend charged to teams, projects or cost centers, with
//! unattributed spend allocated by the rule of `ledger_core::chargeback` (in proportion to
//! attributed spend, largest remainder at the pico-dollar), totals exact to the ledger.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Months, NaiveDate, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use figment::providers::{Format as _, Toml};
use figment::Figment;
use ledger_core::chargeback::{round_preserving_sum, AttributedSpend, Chargeback, CostCenterMapping};
use ledger_core::Money;

use super::{csv_field, fmt_money, Format};
use crate::commands::migrate::{explain, ClickHouseArgs};

/// The allocation rule, as printed with every report.
pub(super) const RULE: &str = "unattributed spend is allocated in proportion to attributed spend; \
    the pico-dollars left after rounding down go one each to the largest remainders (ties: key order), \
    so the parts add up exactly";

/// What a chargeback line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ChargeBy {
    /// One line per team (events without a team are unattributed).
    Team,
    /// One line per project (events without a project are unattributed).
    Project,
    /// One line per cost center of the --mapping file (no team or an unmapped team: unattributed).
    CostCenter,
}

impl ChargeBy {
    fn name(self) -> &'static str {
        match self {
            ChargeBy::Team => "team",
            ChargeBy::Project => "project",
            ChargeBy::CostCenter => "cost_center",
        }
    }
}

/// Arguments of `ledger report chargeback`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger report chargeback --month 2026-11
  ledger report chargeback --month 2026-11 --by cost-center --mapping config/cost-centers.example.toml
  ledger report chargeback --month 2026-11 --by project --format csv > chargeback-2026-11.csv
  ledger report chargeback --month 2026-11 --tenant acme --format json

The month is by event time, UTC, read from usage_ledger itself. Spend without a team (or
project), and with --by cost-center spend of a team the mapping does not list, is unattributed:
it is shown as its own line and allocated to the other lines in proportion to their attributed
spend (largest remainder at the pico-dollar), so the charged column adds up exactly to the
ledger's total for the month. CSV and JSON carry exact 12-digit amounts; the table rounds for
display (--decimals) and prints the exact total.")]
pub(crate) struct ChargebackArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// The month to charge back, YYYY-MM (event time, UTC).
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
    /// What a line is.
    #[arg(long, value_enum, default_value_t = ChargeBy::Team)]
    by: ChargeBy,
    /// TOML file mapping teams to cost centers ([teams] team = "CC", "tenant/team" = "CC");
    /// required by --by cost-center.
    #[arg(long, value_name = "FILE")]
    mapping: Option<PathBuf>,
    /// Only this tenant's spend.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Fractional digits of amounts in the table (rounded half-to-even; CSV and JSON are exact).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=12))]
    decimals: u32,
}

/// `[first day, first day of the next month)` of `YYYY-MM`, midnight UTC.
pub(super) fn month_range(month: &str) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let bad = || format!("--month {month:?} is not a month: use YYYY-MM, e.g. 2026-11");
    let first = NaiveDate::parse_from_str(&format!("{}-01", month.trim()), "%Y-%m-%d").with_context(bad)?;
    let next = first.checked_add_months(Months::new(1)).with_context(bad)?;
    let at = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).with_context(bad);
    Ok((at(first)?, at(next)?))
}

/// Reads a cost-center mapping file (TOML, unknown keys are errors).
pub(super) fn load_mapping(path: &Path) -> anyhow::Result<CostCenterMapping> {
    anyhow::ensure!(
        path.exists(),
        "mapping file {} does not exist (see config/cost-centers.example.toml for the format)",
        path.display()
    );
    let mapping: CostCenterMapping = Figment::from(Toml::file(path))
        .extract()
        .with_context(|| format!("reading the cost-center mapping {} (format: see config/cost-centers.example.toml)", path.display()))?;
    let problems = mapping.problems();
    anyhow::ensure!(problems.is_empty(), "mapping file {}:\n  - {}", path.display(), problems.join("\n  - "));
    Ok(mapping)
}

/// Why some spend is unattributed: `(reason, requests, cost)` per reason.
type Unattributed = BTreeMap<String, (u64, Money)>;

/// Splits the ledger's spend into attributed lines and unattributed spend (with reasons).
pub(super) fn attribute(
    rows: &[ledger_clickhouse::chargeback::AttributionSpend],
    by: ChargeBy,
    mapping: &CostCenterMapping,
) -> anyhow::Result<(Vec<AttributedSpend>, Unattributed)> {
    let mut attributed = Vec::new();
    let mut unattributed: Unattributed = BTreeMap::new();
    for r in rows {
        let key = match by {
            ChargeBy::Team => (!r.team.is_empty()).then(|| r.team.clone()).ok_or_else(|| "no team".to_owned()),
            ChargeBy::Project => {
                (!r.project.is_empty()).then(|| r.project.clone()).ok_or_else(|| "no project".to_owned())
            }
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
                e.1 = e.1.checked_add(r.cost).context("unattributed spend overflowed")?;
            }
        }
    }
    Ok((attributed, unattributed))
}

pub(super) async fn run(args: ChargebackArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = month_range(&args.month)?;
    let mapping = match (&args.mapping, args.by) {
        (Some(path), _) => load_mapping(path)?,
        (None, ChargeBy::CostCenter) => anyhow::bail!(
            "--by cost-center needs --mapping FILE: a TOML file assigning teams to cost centers \
             (copy config/cost-centers.example.toml)"
        ),
        (None, _) => CostCenterMapping::default(),
    };
    let config = args.clickhouse.config()?;
    let client = config.client().context("invalid ClickHouse settings")?;
    let db = &config.database;
    let tenant = args.tenant.as_deref();
    let rows = ledger_clickhouse::chargeback::attribution_spend(&client, db, from, to, tenant)
        .await
        .map_err(|e| explain(e, &config.url))?;
    let ledger = ledger_clickhouse::chargeback::ledger_total(&client, db, from, to, tenant)
        .await
        .map_err(|e| explain(e, &config.url))?;

    let (attributed, reasons) = attribute(&rows, args.by, &mapping)?;
    let unattributed_requests: u64 = reasons.values().map(|(r, _)| r).sum();
    let unattributed = Money::checked_sum(reasons.values().map(|(_, c)| *c)).context("overflow")?;
    let chargeback = Chargeback::build(attributed, unattributed_requests, unattributed)?;
    // The report must add up to the ledger: a second read that disagrees means rows arrived
    // (or vanished) between the two queries.
    anyhow::ensure!(
        chargeback.total == ledger.cost && chargeback.total_requests == ledger.requests,
        "the ledger changed while the report was read (lines total {} USD over {} requests, ledger {} USD over {}): \
         run the report again, ideally once the month is closed",
        chargeback.total,
        chargeback.total_requests,
        ledger.cost,
        ledger.requests
    );
    anyhow::ensure!(chargeback.charged_total()? == ledger.cost, "internal error: charged amounts do not add up");

    let scope = match tenant {
        Some(t) => format!("tenant {t}, "),
        None => String::new(),
    };
    match args.format {
        Format::Csv => print!("{}", to_csv(&chargeback, args.by)),
        Format::Json => {
            let doc = to_json(&chargeback, &reasons, args.by, &args.month, db, tenant);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            if chargeback.total_requests == 0 {
                println!(
                    "No spend in database {db} for {scope}{} (event time, UTC). Check --month, or run `ledger process`.",
                    args.month
                );
                return Ok(ExitCode::SUCCESS);
            }
            print_table(&chargeback, &reasons, args.by, args.decimals)?;
            println!(
                "Chargeback of {scope}{} by {} in database {db}. Total (exact): {} USD over {} requests = the ledger's \
                 total for the month.",
                args.month,
                args.by.name(),
                chargeback.total,
                chargeback.total_requests
            );
            if chargeback.unattributed != Money::ZERO {
                if chargeback.unallocated == Money::ZERO {
                    println!("Allocation rule: {RULE}.");
                } else {
                    println!("No spend is attributed, so the unattributed spend could not be allocated; it stays on its own line.");
                }
            }
            println!(
                "Amounts are rounded to {} decimals for display by largest remainder, so the columns add up to the \
                 total; --format csv|json is exact.",
                args.decimals
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// CSV: `line,key,requests,direct_usd,allocated_usd,charged_usd`; `line` is `attributed`,
/// `unattributed` or `total`. The charged column of the attributed and unattributed lines adds
/// up to the total line, exactly; so does the direct column.
pub(super) fn to_csv(c: &Chargeback, by: ChargeBy) -> String {
    let mut out = format!("line,{},requests,direct_usd,allocated_usd,charged_usd\n", by.name());
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
    out.push_str(&format!(
        "unattributed,,{},{},{},{}\n",
        c.unattributed_requests, c.unattributed, given_away, c.unallocated
    ));
    out.push_str(&format!("total,,{},{},{},{}\n", c.total_requests, c.total, Money::ZERO, c.total));
    out
}

fn to_json(
    c: &Chargeback,
    reasons: &Unattributed,
    by: ChargeBy,
    month: &str,
    database: &str,
    tenant: Option<&str>,
) -> serde_json::Value {
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
    let breakdown: Vec<serde_json::Value> = reasons
        .iter()
        .map(|(reason, (requests, cost))| {
            serde_json::json!({ "reason": reason, "requests": requests, "cost_usd": cost.to_string() })
        })
        .collect();
    serde_json::json!({
        "month": month,
        "database": database,
        "tenant": tenant,
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

fn print_table(c: &Chargeback, reasons: &Unattributed, by: ChargeBy, decimals: u32) -> anyhow::Result<()> {
    // Rounded by largest remainder, so each printed column adds up to its printed total; the
    // printed share is charged - direct of the printed values, so each row adds up too.
    let show_unattributed = c.unattributed_requests > 0 || c.unattributed != Money::ZERO;
    let mut direct: Vec<Money> = c.lines.iter().map(|l| l.direct).collect();
    let mut charged: Vec<Money> = c.lines.iter().map(|l| l.charged).collect();
    direct.push(c.unattributed);
    charged.push(c.unallocated);
    let direct = round_preserving_sum(&direct, decimals)?;
    let charged = round_preserving_sum(&charged, decimals)?;
    let total = c.total.round_to(decimals);
    let share = |i: usize| Money::from_picos(charged[i].picos() - direct[i].picos());

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        by.name().replace('_', " "),
        "requests".into(),
        "direct (USD)".into(),
        "share of unattributed (USD)".into(),
        "charged (USD)".into(),
    ]);
    let num = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for (i, l) in c.lines.iter().enumerate() {
        table.add_row(vec![
            Cell::new(&l.key),
            num(l.requests.to_string()),
            num(fmt_money(direct[i], decimals)),
            num(fmt_money(share(i), decimals)),
            num(fmt_money(charged[i], decimals)),
        ]);
    }
    if show_unattributed {
        let i = c.lines.len();
        let why: Vec<String> = reasons.iter().map(|(r, (n, _))| format!("{r}: {n}")).collect();
        table.add_row(vec![
            Cell::new(format!("(unattributed — {})", why.join("; "))),
            num(c.unattributed_requests.to_string()),
            num(fmt_money(direct[i], decimals)),
            num(fmt_money(share(i), decimals)),
            num(fmt_money(charged[i], decimals)),
        ]);
    }
    table.add_row(vec![
        Cell::new("TOTAL"),
        num(c.total_requests.to_string()),
        num(fmt_money(total, decimals)),
        num(fmt_money(Money::ZERO, decimals)),
        num(fmt_money(total, decimals)),
    ]);
    println!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_clickhouse::chargeback::AttributionSpend;

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
    fn months_are_utc_calendar_months() {
        let (from, to) = month_range("2026-02").unwrap();
        assert_eq!(from.to_rfc3339(), "2026-02-01T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(month_range("2026-12").unwrap().1.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        for bad in ["2026-13", "2026", "Nov", "2026-11-01"] {
            assert!(month_range(bad).is_err(), "{bad}");
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
        let (lines, why) = attribute(&rows, ChargeBy::Team, &CostCenterMapping::default()).unwrap();
        let c = Chargeback::build(lines, 1, why["no team"].1).unwrap();
        let csv = to_csv(&c, ChargeBy::Team);
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
        assert_eq!(total, 37);
        assert_eq!(charged, 37);
        assert!(csv.contains("unattributed,,1,0.000000000007,-0.000000000007,0.000000000000"), "{csv}");
    }
}
