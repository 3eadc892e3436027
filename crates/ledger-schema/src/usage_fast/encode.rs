//! The hand-written encoder of the current `UsageEvent` datum: the emitters' hot path.

use ledger_core::UsageEvent;

use super::RECORD;
use crate::error::SchemaError;

/// Appends the datum of `e` in the current schema to `out`: the bytes the generic serde
/// writer produces (a test holds it to that), at a fraction of its cost.
pub(crate) fn encode_into(e: &UsageEvent, out: &mut Vec<u8>) -> Result<(), SchemaError> {
    fn long(out: &mut Vec<u8>, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        while u >= 0x80 {
            out.push((u as u8) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        long(out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
    }
    // `["null", T]`: branch 0 is null, branch 1 (zig-zag 2) the value.
    fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(2);
                string(out, s);
            }
        }
    }
    out.reserve(160 + e.event_id.len() + e.attribution.tenant_id.len() + e.request_model.len());
    string(out, &e.event_id);
    long(out, e.event_time.timestamp_micros());
    string(out, &e.attribution.tenant_id);
    let a = &e.attribution;
    for field in [&a.team, &a.project, &a.user_id, &a.api_key_id, &e.feature, &e.environment] {
        opt_string(out, field.as_deref());
    }
    if !e.tags.is_empty() {
        long(out, e.tags.len() as i64);
        for (k, v) in &e.tags {
            string(out, k);
            string(out, v);
        }
    }
    out.push(0);
    string(out, &e.provider);
    string(out, &e.operation);
    string(out, &e.request_model);
    opt_string(out, e.response_model.as_deref());
    opt_string(out, e.routed_from_model.as_deref());
    for count in [
        e.input_tokens,
        e.cache_read_input_tokens,
        e.cache_creation_input_tokens,
        e.cache_creation_1h_input_tokens,
        e.output_tokens,
        e.reasoning_output_tokens,
    ] {
        long(out, count);
    }
    opt_string(out, e.service_tier.as_deref());
    match e.provided_cost_usd {
        None => out.push(0),
        Some(m) if m.picos() == i128::MIN => {
            return Err(SchemaError::Unencodable {
                record: RECORD,
                field: "provided_cost_usd",
                detail: "amount out of the money range".to_owned(),
            })
        }
        Some(m) => {
            out.push(2);
            string(out, &m.to_string());
        }
    }
    match e.latency_ms {
        None => out.push(0),
        Some(ms) => {
            out.push(2);
            long(out, ms);
        }
    }
    string(out, &e.status);
    opt_string(out, e.response_id.as_deref());
    opt_string(out, e.trace_id.as_deref());
    Ok(())
}
