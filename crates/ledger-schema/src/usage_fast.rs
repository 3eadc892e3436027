//! A hand-written decoder of the current `UsageEvent` datum: the processor's hot path.
//!
//! It reads the fields in the order of `schemas/avro/usage_event.avsc` straight from the slice
//! (zig-zag varints, length-prefixed UTF-8, `["null", T]` unions, one string map), about three
//! times faster than the generic serde path. It is only used for datums written with the
//! current schema (the fingerprint says so); older writers are first resolved by Avro rules.
//! The property tests compare it with apache-avro on arbitrary events, and a test pins the
//! field list to the schema so a schema change cannot leave it behind silently.

use chrono::DateTime;
use ledger_core::{Money, TagsRef, UsageEvent, UsageEventRef};

use crate::error::SchemaError;

const RECORD: &str = "UsageEvent";

/// The field names this decoder reads, in order; must equal the schema's.
#[cfg(test)]
const FIELDS: [&str; 27] = [
    "event_id",
    "event_time",
    "tenant_id",
    "team",
    "project",
    "user_id",
    "api_key_id",
    "feature",
    "environment",
    "tags",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "routed_from_model",
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "service_tier",
    "provided_cost_usd",
    "latency_ms",
    "status",
    "response_id",
    "trace_id",
];

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(field: &'static str, detail: impl Into<String>) -> SchemaError {
    SchemaError::InvalidValue { record: RECORD, field, detail: detail.into() }
}

impl<'a> Reader<'a> {
    #[inline]
    fn long(&mut self, field: &'static str) -> Result<i64, SchemaError> {
        // Most values of an event (union branches, lengths, small counts) take one byte.
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                let v = u64::from(b);
                Ok((v >> 1) as i64 ^ -((v & 1) as i64))
            }
            _ => self.long_slow(field),
        }
    }

    #[inline(never)]
    fn long_slow(&mut self, field: &'static str) -> Result<i64, SchemaError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(bad(field, "datum ends inside a varint"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(bad(field, "varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(bad(field, "varint longer than 10 bytes"));
            }
        }
        Ok((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    #[inline]
    fn str(&mut self, field: &'static str) -> Result<&'a str, SchemaError> {
        let len = self.long(field)?;
        let len = usize::try_from(len).map_err(|_| bad(field, format!("negative string length {len}")))?;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or_else(|| bad(field, "datum ends inside a string"))?;
        let s = std::str::from_utf8(&self.buf[self.pos..end]).map_err(|e| bad(field, format!("not UTF-8: {e}")))?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn present(&mut self, field: &'static str) -> Result<bool, SchemaError> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(bad(field, format!("union branch {n} out of range"))),
        }
    }

    #[inline]
    fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, SchemaError> {
        if self.present(field)? {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn map_into(&mut self, field: &'static str, out: &mut Vec<(&'a str, &'a str)>) -> Result<(), SchemaError> {
        loop {
            let mut count = self.long(field)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| bad(field, "map block count overflows"))?;
                self.long(field)?; // block size in bytes, not needed
            }
            // Every entry takes at least two bytes: a count beyond the rest is a lie.
            if count as u64 > (self.buf.len() - self.pos) as u64 {
                return Err(bad(field, format!("map block of {count} entries exceeds the datum")));
            }
            for _ in 0..count {
                let k = self.str(field)?;
                let v = self.str(field)?;
                out.push((k, v));
            }
        }
    }
}

/// Decodes a `UsageEvent` datum of the current schema.
pub(crate) fn decode(datum: &[u8]) -> Result<UsageEvent, SchemaError> {
    let mut tags = Vec::new();
    decode_ref(datum, &mut tags).map(|e| e.to_owned_event())
}

/// Reads a `UsageEvent` datum of the current schema without copying its strings; the tags go
/// into `tags` (which allocates only when the event has tags).
pub(crate) fn decode_ref<'d, 't>(
    datum: &'d [u8],
    tags: &'t mut Vec<(&'d str, &'d str)>,
) -> Result<UsageEventRef<'t>, SchemaError> {
    let mut r = Reader { buf: datum, pos: 0 };
    let event_id = r.str("event_id")?;
    let micros = r.long("event_time")?;
    let event_time = DateTime::from_timestamp_micros(micros)
        .ok_or(SchemaError::TimestampOutOfRange { record: RECORD, field: "event_time", micros })?;
    let tenant_id = r.str("tenant_id")?;
    let team = r.opt_str("team")?;
    let project = r.opt_str("project")?;
    let user_id = r.opt_str("user_id")?;
    let api_key_id = r.opt_str("api_key_id")?;
    let feature = r.opt_str("feature")?;
    let environment = r.opt_str("environment")?;
    tags.clear();
    r.map_into("tags", tags)?;
    let provider = r.str("provider")?;
    let operation = r.str("operation")?;
    let request_model = r.str("request_model")?;
    let response_model = r.opt_str("response_model")?;
    let routed_from_model = r.opt_str("routed_from_model")?;
    let input_tokens = r.long("input_tokens")?;
    let cache_read_input_tokens = r.long("cache_read_input_tokens")?;
    let cache_creation_input_tokens = r.long("cache_creation_input_tokens")?;
    let cache_creation_1h_input_tokens = r.long("cache_creation_1h_input_tokens")?;
    let output_tokens = r.long("output_tokens")?;
    let reasoning_output_tokens = r.long("reasoning_output_tokens")?;
    let service_tier = r.opt_str("service_tier")?;
    let provided_cost_usd = if r.present("provided_cost_usd")? {
        let text = r.str("provided_cost_usd")?;
        Some(text.parse::<Money>().map_err(|source| SchemaError::InvalidMoney {
            record: RECORD,
            field: "provided_cost_usd",
            source,
        })?)
    } else {
        None
    };
    let latency_ms = if r.present("latency_ms")? { Some(r.long("latency_ms")?) } else { None };
    let status = r.str("status")?;
    let response_id = r.opt_str("response_id")?;
    let trace_id = r.opt_str("trace_id")?;
    if r.pos != datum.len() {
        return Err(SchemaError::TrailingBytes { record: RECORD, count: datum.len() - r.pos });
    }
    let tags: &'t Vec<(&'d str, &'d str)> = tags;
    Ok(UsageEventRef {
        event_id,
        event_time,
        tenant_id,
        team,
        project,
        user_id,
        api_key_id,
        feature,
        environment,
        tags: TagsRef::Pairs(tags),
        provider,
        operation,
        request_model,
        response_model,
        routed_from_model,
        input_tokens,
        cache_read_input_tokens,
        cache_creation_input_tokens,
        cache_creation_1h_input_tokens,
        output_tokens,
        reasoning_output_tokens,
        service_tier,
        provided_cost_usd,
        latency_ms,
        status,
        response_id,
        trace_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_list_matches_the_schema() {
        let avsc: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/avro/usage_event.avsc")).expect("avsc is JSON");
        let names: Vec<&str> =
            avsc["fields"].as_array().expect("fields").iter().map(|f| f["name"].as_str().expect("name")).collect();
        assert_eq!(names, FIELDS, "usage_fast.rs must follow schemas/avro/usage_event.avsc");
    }
}
