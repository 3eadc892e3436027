//! A hand-written decoder of the current `UsageEvent` datum: the processor's hot path; and
//! the matching encoder, the emitters' (SDK, ingest, load generator) hot path.
//!
//! It reads the fields in the order of `schemas/avro/usage_event.avsc` straight from the slice
//! (zig-zag varints, length-prefixed UTF-8, `["null", T]` unions, one string map), about three
//! times faster than the generic serde path. It is only used for datums written with the
//! current schema (the fingerprint says so); older writers are first resolved by Avro rules.
//! The property tests compare it with apache-avro on arbitrary events, and a test pins the
//! field list to the schema so a schema change cannot leave it behind silently.

mod decode;
mod encode;
mod reader;
#[cfg(test)]
mod tests;

pub(crate) use decode::{decode, decode_then};
pub(crate) use encode::encode_into;

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
