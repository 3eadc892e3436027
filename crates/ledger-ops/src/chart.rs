//! The daily-spend-by-team chart of `ledger report spend --chart FILE.svg`: a self-contained SVG
//! of stacked bars, one bar per day (UTC), one segment per team, exact amounts in the `<title>`
//! tooltips. Every coordinate and the value axis are computed with integer math on pico-dollars.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Days, NaiveDate, Utc};
use ledger_clickhouse::chargeback::DailyTeamSpend;
use ledger_core::Money;

use crate::OpsError;

/// At most this many days fit a readable chart.
pub const MAX_DAYS: u64 = 400;

const WIDTH: i128 = 1000;
const HEIGHT: i128 = 520;
const LEFT: i128 = 110;
const RIGHT: i128 = 250;
const TOP: i128 = 70;
const BOTTOM: i128 = 60;
/// Distinguishable colors; more teams than colors reuse them with a darker outline.
const PALETTE: [&str; 12] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4",
    "#d62728",
];

/// The name a team is shown under (`""` is spend without a team).
pub fn team_label(team: &str) -> &str {
    if team.is_empty() {
        "(no team)"
    } else {
        team
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Exact amount without trailing fractional zeros: `12.5`, `0.0025`, `3`.
fn short_money(m: Money) -> String {
    let s = m.to_string();
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_owned()
}

/// The smallest `{1, 2, 5} × 10^k` pico-dollars at least `raw` (>= 1).
fn nice_step(raw: i128) -> i128 {
    let raw = raw.max(1);
    let mut magnitude: i128 = 1;
    loop {
        for m in [1, 2, 5] {
            if let Some(step) = magnitude.checked_mul(m) {
                if step >= raw {
                    return step;
                }
            }
        }
        match magnitude.checked_mul(10) {
            Some(next) => magnitude = next,
            None => return raw,
        }
    }
}

/// The value axis for a largest bar of `max` pico-dollars: `(step, top)` with about five ticks.
pub fn axis(max: i128) -> (i128, i128) {
    let max = max.max(1);
    let step = nice_step((max + 4) / 5);
    let ticks = (max + step - 1) / step;
    (step, step * ticks.max(1))
}

/// Renders the chart of `rows` (any order) for the days `[first, last]`.
pub fn render(rows: &[DailyTeamSpend], title_range: &str) -> Result<String, OpsError> {
    if rows.is_empty() {
        return Err(OpsError::Invalid("no spend to chart".into()));
    }
    let first = rows.iter().map(|r| r.day.date_naive()).min().unwrap_or_default();
    let last = rows.iter().map(|r| r.day.date_naive()).max().unwrap_or_default();
    let n_days = u64::try_from((last - first).num_days() + 1).unwrap_or(0);
    if n_days > MAX_DAYS {
        return Err(OpsError::Invalid(format!(
            "the chart would have {n_days} days (at most {MAX_DAYS} are readable): narrow --from/--to"
        )));
    }
    let days: Vec<NaiveDate> = (0..n_days).filter_map(|i| first.checked_add_days(Days::new(i))).collect();

    // Teams by total spend, largest first (ties by name), so the big ones sit at the bottom.
    let mut team_totals: BTreeMap<&str, (Money, u64)> = BTreeMap::new();
    let mut cells: BTreeMap<(NaiveDate, &str), (Money, u64)> = BTreeMap::new();
    for r in rows {
        let t = team_totals.entry(r.team.as_str()).or_insert((Money::ZERO, 0));
        t.0 = t.0.checked_add(r.cost)?;
        t.1 += r.requests;
        let c = cells.entry((r.day.date_naive(), r.team.as_str())).or_insert((Money::ZERO, 0));
        c.0 = c.0.checked_add(r.cost)?;
        c.1 += r.requests;
    }
    let mut teams: Vec<(&str, Money, u64)> = team_totals.into_iter().map(|(t, (m, n))| (t, m, n)).collect();
    teams.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let color = |i: usize| PALETTE[i % PALETTE.len()];

    let mut day_totals: Vec<Money> = Vec::with_capacity(days.len());
    for d in &days {
        let mut sum = Money::ZERO;
        for (team, _, _) in &teams {
            if let Some((m, _)) = cells.get(&(*d, *team)) {
                sum = sum.checked_add(*m)?;
            }
        }
        day_totals.push(sum);
    }
    let total = Money::checked_sum(day_totals.iter().copied())?;
    let max = day_totals.iter().map(|m| m.picos()).max().unwrap_or(0);
    let (step, top) = axis(max);

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bottom = TOP + plot_h;
    let slot = plot_w / i128::from(u32::try_from(days.len()).unwrap_or(1).max(1));
    // Wide enough to hover, but a single day is a bar, not a wall.
    let bar = (slot * 4 / 5).clamp(1, 80);
    let y_of = |picos: i128| bottom - picos.max(0) * plot_h / top;

    let mut svg = String::new();
    writeln!(
        svg,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<title>Daily spend by team (USD, event time UTC), {range}</title>
<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>
<text x="{LEFT}" y="28" font-size="18" font-weight="bold">Daily spend by team (USD)</text>
<text x="{LEFT}" y="50" fill="#555555">{range} · event time UTC · total {total} USD (exact) · hover a bar for exact amounts</text>"##,
        range = escape(title_range),
    )?;

    // Value axis: gridlines and labels at every step.
    let mut v = 0i128;
    while v <= top {
        let y = y_of(v);
        writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}" stroke="#e0e0e0"/><text x="{lx}" y="{ty}" text-anchor="end" fill="#333333">{label}</text>"##,
            x2 = LEFT + plot_w,
            lx = LEFT - 8,
            ty = y + 4,
            label = short_money(Money::from_picos(v)),
        )?;
        v += step;
    }
    writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#333333"/><line x1="{LEFT}" y1="{bottom}" x2="{x2}" y2="{bottom}" stroke="#333333"/>"##,
        x2 = LEFT + plot_w
    )?;

    // Bars: cumulative tops so the segments of a day stack without rounding gaps.
    let label_every = days.len().div_ceil(15).max(1);
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + i128::from(u32::try_from(i).unwrap_or(0)) * slot + (slot - bar) / 2;
        writeln!(svg, r#"<g><title>{d}: {} USD in total</title>"#, day_totals[i])?;
        let mut cum = 0i128;
        for (ti, (team, _, _)) in teams.iter().enumerate() {
            let Some((m, n)) = cells.get(&(*d, *team)) else { continue };
            let y_low = y_of(cum);
            cum += m.picos();
            let y_high = y_of(cum);
            writeln!(
                svg,
                r##"<rect x="{x}" y="{y_high}" width="{bar}" height="{h}" fill="{c}" stroke="#ffffff" stroke-width="0.5"><title>{d} · {name}: {m} USD ({n} requests)</title></rect>"##,
                h = y_low - y_high,
                c = color(ti),
                name = escape(team_label(team)),
            )?;
        }
        writeln!(svg, "</g>")?;
        if i % label_every == 0 {
            writeln!(
                svg,
                r##"<text x="{cx}" y="{ty}" text-anchor="middle" fill="#333333">{label}</text>"##,
                cx = x + bar / 2,
                ty = bottom + 18,
                label = d.format("%m-%d"),
            )?;
        }
    }

    // Legend: one entry per team with its exact total over the range.
    let lx = LEFT + plot_w + 20;
    writeln!(svg, r#"<text x="{lx}" y="{TOP}" font-weight="bold">Team (total USD)</text>"#)?;
    for (ti, (team, m, n)) in teams.iter().enumerate() {
        let y = TOP + 14 + i128::from(u32::try_from(ti).unwrap_or(0)) * 20;
        writeln!(
            svg,
            r##"<g><title>{name}: {m} USD ({n} requests)</title><rect x="{lx}" y="{y}" width="12" height="12" fill="{c}"/><text x="{tx}" y="{ty}">{name} ({short})</text></g>"##,
            name = escape(team_label(team)),
            c = color(ti),
            tx = lx + 18,
            ty = y + 11,
            short = short_money(m.round_to(2)),
        )?;
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// Midnight (UTC) at or before `t`.
pub fn floor_day(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc()).unwrap_or(t)
}

/// Midnight (UTC) at or after `t`.
pub fn ceil_day(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_day(t);
    if f == t {
        t
    } else {
        f.checked_add_days(Days::new(1)).unwrap_or(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(day: &str, team: &str, picos: i128) -> DailyTeamSpend {
        DailyTeamSpend {
            day: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc(),
            team: team.into(),
            requests: 3,
            cost: Money::from_picos(picos),
        }
    }

    #[test]
    fn axis_steps_are_nice_and_cover_the_max() {
        assert_eq!(axis(1), (1, 1));
        assert_eq!(axis(9), (2, 10));
        assert_eq!(axis(1_230_000_000_000), (500_000_000_000, 1_500_000_000_000));
        assert_eq!(axis(5_000_000), (1_000_000, 5_000_000));
        let (step, top) = axis(i128::MAX / 4);
        assert!(top >= i128::MAX / 4 && step > 0);
        assert_eq!(short_money(Money::from_picos(2_500_000_000)), "0.0025");
        assert_eq!(short_money(Money::from_usd(3)), "3");
    }

    #[test]
    fn chart_names_every_team_with_exact_amounts() {
        let rows = [
            spend("2026-11-01", "search", 1_500_000_000_000),
            spend("2026-11-01", "", 250_000_000_000),
            spend("2026-11-03", "a<b&c", 7),
        ];
        let svg = render(&rows, "2026-11-01 .. 2026-11-04").unwrap();
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("search: 1.500000000000 USD"));
        assert!(svg.contains("(no team): 0.250000000000 USD"));
        assert!(svg.contains("a&lt;b&amp;c: 0.000000000007 USD"));
        assert!(!svg.contains("a<b"));
        // Three days, the empty middle one included.
        assert!(svg.contains(">11-02<"));
        assert!(svg.contains("2026-11-02: 0.000000000000 USD in total"));
        assert!(render(&[], "x").is_err());
    }

    #[test]
    fn day_bounds_round_outwards() {
        let t = DateTime::parse_from_rfc3339("2026-11-03T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(floor_day(t).to_rfc3339(), "2026-11-03T00:00:00+00:00");
        assert_eq!(ceil_day(t).to_rfc3339(), "2026-11-04T00:00:00+00:00");
        assert_eq!(ceil_day(floor_day(t)), floor_day(t));
    }
}
