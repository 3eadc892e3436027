//! `ledger price`: usage events as JSON lines in, one JSON line of cost terms (or the reason
//! for rejecting it) per event out, with the same [`Catalog::price_event`] the stream
//! processor uses. No Kafka, no ClickHouse: every cost can be checked by hand.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use ledger_core::catalog::{Catalog, LoadReport};
use ledger_core::event::{RejectReason, Rejection};
use ledger_core::{Money, UsageEvent};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct PricedLine<'a> {
    line: u64,
    event_id: &'a str,
    model: &'a str,
    price_version: &'a str,
    /// The target of the `alias_of` entry that priced the line.
    alias_of: Option<&'a str>,
    input_cost_usd: Money,
    cache_read_cost_usd: Money,
    cache_write_cost_usd: Money,
    cache_write_1h_cost_usd: Money,
    output_cost_usd: Money,
    reasoning_cost_usd: Money,
    cost_usd: Money,
    routed_from_model: Option<&'a str>,
    routed_from_cost_usd: Option<Money>,
    savings_usd: Option<Money>,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    line: u64,
    /// `null` when the line is not a decodable event with a string `event_id`.
    event_id: Option<&'a str>,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    reason: &'static str,
    detail: &'a str,
}

/// Just the event id of a line that is not a valid event, when it has a string one.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    event_id: Option<serde_json::Value>,
}

/// What pricing a stream of lines did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Lines read (blank lines are not counted).
    pub lines: u64,
    /// Lines priced.
    pub priced: u64,
    /// Lines rejected, per reason.
    pub failed: BTreeMap<&'static str, u64>,
    /// The cost of the priced lines.
    pub total: Money,
    /// True when the total left the money range.
    pub total_overflow: bool,
}

/// Prices every line of `input` (JSON usage events) and writes one JSON line per input line
/// to `out`: the cost terms, or the reason the line was rejected.
pub fn price_stream<R: BufRead, W: Write>(catalog: &Catalog, mut input: R, out: &mut W) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(4096);
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.lines += 1;
        let event = match serde_json::from_slice::<UsageEvent>(&buf) {
            Ok(e) => e,
            Err(e) => {
                let id = serde_json::from_slice::<IdOnly>(&buf).ok().and_then(|i| match i.event_id {
                    Some(serde_json::Value::String(s)) => Some(s),
                    _ => None,
                });
                let rejection = Rejection::new(RejectReason::DecodeError, format!("line {line_no}: {e}"));
                write_error(out, &mut summary, line_no, id.as_deref(), &rejection)?;
                continue;
            }
        };
        match catalog.price_event(&event) {
            Ok(p) => {
                summary.priced += 1;
                match summary.total.checked_add(p.cost) {
                    Ok(t) => summary.total = t,
                    Err(_) => summary.total_overflow = true,
                }
                let routed = p.routed_from.as_ref();
                let version = p.price_version_text();
                let line = PricedLine {
                    line: line_no,
                    event_id: &event.event_id,
                    model: &p.model,
                    price_version: &version,
                    alias_of: p.alias_of.as_deref(),
                    input_cost_usd: p.terms.input,
                    cache_read_cost_usd: p.terms.cache_read,
                    cache_write_cost_usd: p.terms.cache_write,
                    cache_write_1h_cost_usd: p.terms.cache_write_1h,
                    output_cost_usd: p.terms.output,
                    reasoning_cost_usd: p.terms.reasoning,
                    cost_usd: p.cost,
                    routed_from_model: routed.map(|r| &*r.model),
                    routed_from_cost_usd: routed.map(|r| r.cost),
                    savings_usd: routed.map(|r| r.savings),
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
            Err(r) => {
                let r = Rejection::new(r.reason, format!("line {line_no}: {}", r.detail));
                write_error(out, &mut summary, line_no, Some(&event.event_id), &r)?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

fn write_error<W: Write>(
    out: &mut W,
    summary: &mut Summary,
    line: u64,
    event_id: Option<&str>,
    r: &Rejection,
) -> std::io::Result<()> {
    *summary.failed.entry(r.reason.as_str()).or_insert(0) += 1;
    let body = ErrorLine { line, event_id, error: ErrorBody { reason: r.reason.as_str(), detail: &r.detail } };
    serde_json::to_writer(&mut *out, &body)?;
    out.write_all(b"\n")
}

impl Summary {
    /// The summary `ledger price` prints: the catalogs, the lines, the failures and the total.
    pub fn describe(&self, reports: &[LoadReport]) -> String {
        let s = self;
        let failed: u64 = s.failed.values().sum();
        let mut msg = String::new();
        msg.push_str("ledger price: catalogs loaded:\n");
        for r in reports {
            msg.push_str(&format!(
                "  {} ({} models priced, {} entries skipped, {} prices rounded to 12 digits, {} price fields ignored; \
                 loaded in {} ms)\n",
                r.version,
                r.priced,
                r.skipped.len(),
                r.rounded.len(),
                r.ignored.len(),
                r.load_time.as_millis()
            ));
        }
        msg.push_str(&format!("  lines: {}, priced: {}, failed: {failed}\n", s.lines, s.priced));
        for (reason, n) in &s.failed {
            msg.push_str(&format!("    {reason}: {n}\n"));
        }
        if s.total_overflow {
            msg.push_str("  total cost: out of the Decimal(38, 12) range\n");
        } else {
            msg.push_str(&format!("  total cost: {} USD\n", s.total));
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use ledger_core::catalog::CatalogSource;

    const CATALOG: &str = r#"{"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05}, "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}}"#;

    fn run_lines(input: &str) -> (String, Summary) {
        let (src, _) = CatalogSource::from_litellm_json("c", Utc.timestamp_opt(0, 0).unwrap(), CATALOG).unwrap();
        let catalog = Catalog::new(vec![src]).unwrap();
        let mut out = Vec::new();
        let s = price_stream(&catalog, input.as_bytes(), &mut out).unwrap();
        (String::from_utf8(out).unwrap(), s)
    }

    #[test]
    fn prices_and_rejects_line_by_line() {
        let input = concat!(
            r#"{"event_id":"a","event_time":"2026-11-01T12:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o","input_tokens":1000,"output_tokens":500,"routed_from_model":"gpt-4o-mini"}"#,
            "\n\n",
            r#"{"event_id":"b","event_time":"2026-11-01T12:00:00Z","tenant_id":"t","provider":"openai","request_model":"nope"}"#,
            "\n",
            r#"{"event_id":"c","event_time":"2026-11-01T12:00:00Z","tenant_id":"t","provider":"openai","request_model":"gpt-4o","input_tokens":"x"}"#,
            "\n{not json\n",
            r#"{"event_id":"d","event_time":"2026-11-01T12:00:00Z","provider":"openai","request_model":"gpt-4o"}"#,
            "\n",
        );
        let (out, s) = run_lines(input);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4]["error"]["reason"], "decode_error");
        assert!(lines[4]["error"]["detail"].as_str().unwrap().contains("tenant_id"));
        // 1000 * 2.5e-6 + 500 * 1e-5 = 0.0075; mini: 1000*1.5e-7 + 500*6e-7 = 0.00045
        assert_eq!(lines[0]["cost_usd"], "0.007500000000");
        assert_eq!(lines[0]["input_cost_usd"], "0.002500000000");
        assert_eq!(lines[0]["price_version"], "c@1970-01-01T00:00:00Z");
        assert_eq!(lines[0]["routed_from_cost_usd"], "0.000450000000");
        assert_eq!(lines[0]["savings_usd"], "-0.007050000000");
        assert_eq!(lines[1]["line"], 3);
        assert_eq!(lines[1]["error"]["reason"], "unknown_model");
        assert_eq!(lines[2]["event_id"], "c");
        assert_eq!(lines[2]["error"]["reason"], "decode_error");
        assert!(lines[2]["error"]["detail"].as_str().unwrap().contains("line 4"));
        assert_eq!(lines[3]["line"], 5);
        assert!(lines[3]["event_id"].is_null());
        assert_eq!(s.lines, 5);
        assert_eq!(s.priced, 1);
        assert_eq!(s.total, Money::from_picos(7_500_000_000));
    }
}
