//! Decoding a datum: its fields in schema order (as places), one UTF-8 check of the masked
//! copy, then the borrowed view of the event.

use ledger_core::attribution::Attribution;
use ledger_core::{EventTime, Money, TagsRef, UsageEvent, UsageEventRef};

use super::reader::{Fail, Reader, Span, TagBuf};
use super::RECORD;
use crate::error::SchemaError;

/// Decodes a `UsageEvent` datum of the current schema.
pub(crate) fn decode(datum: &[u8]) -> Result<UsageEvent, SchemaError> {
    decode_then(datum, |e| e.to_owned_event())
}

/// Datums up to this size are masked (see [`Reader::masked`]) in a buffer on the stack.
pub(super) const STACK_DATUM: usize = 512;

/// The stack buffer, aligned so the UTF-8 check starts on its word-at-a-time path at once.
#[repr(align(16))]
struct StackDatum([u8; STACK_DATUM]);

/// Reads a `UsageEvent` datum of the current schema without copying its strings out and
/// calls `f` with the view. The view lives on this function's stack and is passed by
/// reference, so the ~400-byte event is never moved; the tags are held inline (a vector only
/// for an event with more than [`INLINE_TAGS`](super::reader::INLINE_TAGS) tags).
///
/// Two steps: the structure is read (varints, string places) while a copy of the datum has
/// its multi-byte varints zeroed; then the copy's UTF-8 is checked once and the strings are
/// slices of it.
#[inline]
pub(crate) fn decode_then<R>(datum: &[u8], f: impl FnOnce(&UsageEventRef<'_>) -> R) -> Result<R, SchemaError> {
    if u32::try_from(datum.len()).is_err() {
        return Err(SchemaError::InvalidValue { record: RECORD, field: "event", detail: "datum of 4 GiB or more".into() });
    }
    let mut stack = StackDatum([0; STACK_DATUM]);
    let mut heap;
    let masked: &mut [u8] = match stack.0.get_mut(..datum.len()) {
        Some(buf) => {
            buf.copy_from_slice(datum);
            buf
        }
        None => {
            heap = datum.to_vec();
            &mut heap
        }
    };
    let mut r = Reader { buf: datum, pos: 0, masked, error: None };
    let mut tag_spans = TagBuf::new();
    // Filled in place: returned by value, the ~300-byte struct was copied once more.
    let mut spans = EventSpans::default();
    if let Err(Fail) = read(&mut r, &mut tag_spans, &mut spans) {
        return Err(failure(r.error));
    }
    let masked: &[u8] = r.masked;
    let Ok(text) = std::str::from_utf8(masked) else {
        return Err(first_string_not_utf8(&spans, tag_spans.as_slice(), masked));
    };
    let mut tags = TagBuf::new();
    for &(k, v) in tag_spans.as_slice() {
        tags.push((slice(text, "tags", k)?, slice(text, "tags", v)?));
    }
    resolve(&spans, TagsRef::Pairs(tags.as_slice()), text, f)
}

#[cold]
fn failure(error: Option<SchemaError>) -> SchemaError {
    error.unwrap_or_else(|| SchemaError::InvalidValue {
        record: RECORD,
        field: "event",
        detail: "decoding failed without a reason (a bug)".into(),
    })
}

/// A string of the masked datum `text`, which is UTF-8 as a whole. Every string then lies on
/// character boundaries (the byte before it ends a varint, below 0x80 or zeroed, and so does
/// the byte after it), so the error is for a broken invariant, not for input.
#[inline(always)]
fn slice<'t>(text: &'t str, field: &'static str, span: Span) -> Result<&'t str, SchemaError> {
    match text.get(span.range()) {
        Some(s) => Ok(s),
        None => Err(off_boundaries(field)),
    }
}

#[cold]
fn off_boundaries(field: &'static str) -> SchemaError {
    SchemaError::InvalidValue { record: RECORD, field, detail: "not UTF-8: a string off character boundaries".into() }
}

#[inline(always)]
fn opt_slice<'t>(text: &'t str, field: &'static str, span: Option<Span>) -> Result<Option<&'t str>, SchemaError> {
    match span {
        Some(span) => slice(text, field, span).map(Some),
        None => Ok(None),
    }
}

/// The error for a masked datum that is not UTF-8: the first string, in field order, that is
/// not UTF-8 on its own.
#[cold]
#[inline(never)]
fn first_string_not_utf8(s: &EventSpans, tags: &[(Span, Span)], masked: &[u8]) -> SchemaError {
    let before_tags = [
        ("event_id", Some(s.event_id)),
        ("tenant_id", Some(s.tenant_id)),
        ("team", s.team),
        ("project", s.project),
        ("user_id", s.user_id),
        ("api_key_id", s.api_key_id),
        ("feature", s.feature),
        ("environment", s.environment),
    ];
    let tags = tags.iter().flat_map(|(k, v)| [("tags", Some(*k)), ("tags", Some(*v))]);
    let after_tags = [
        ("provider", Some(s.provider)),
        ("operation", Some(s.operation)),
        ("request_model", Some(s.request_model)),
        ("response_model", s.response_model),
        ("routed_from_model", s.routed_from_model),
        ("service_tier", s.service_tier),
        ("provided_cost_usd", s.provided_cost_usd),
        ("status", Some(s.status)),
        ("response_id", s.response_id),
        ("trace_id", s.trace_id),
    ];
    for (field, span) in before_tags.into_iter().chain(tags).chain(after_tags) {
        if let Some(span) = span {
            if let Err(e) = std::str::from_utf8(&masked[span.range()]) {
                return SchemaError::InvalidValue { record: RECORD, field, detail: format!("not UTF-8: {e}") };
            }
        }
    }
    // Every string is UTF-8 on its own, so the bytes between them are not (a bug).
    off_boundaries("event")
}

/// A `UsageEvent` datum's fields as read by the first step: its strings are places yet.
#[derive(Default)]
struct EventSpans {
    event_id: Span,
    event_time: EventTime,
    tenant_id: Span,
    team: Option<Span>,
    project: Option<Span>,
    user_id: Option<Span>,
    api_key_id: Option<Span>,
    feature: Option<Span>,
    environment: Option<Span>,
    provider: Span,
    operation: Span,
    request_model: Span,
    response_model: Option<Span>,
    routed_from_model: Option<Span>,
    input_tokens: i64,
    cache_read_input_tokens: i64,
    cache_creation_input_tokens: i64,
    cache_creation_1h_input_tokens: i64,
    output_tokens: i64,
    reasoning_output_tokens: i64,
    service_tier: Option<Span>,
    provided_cost_usd: Option<Span>,
    latency_ms: Option<i64>,
    status: Span,
    response_id: Option<Span>,
    trace_id: Option<Span>,
}

/// The fields of the datum in schema order, into `out`; the tags go into `tags`.
#[inline(always)]
fn read(r: &mut Reader<'_, '_>, tags: &mut TagBuf<(Span, Span)>, out: &mut EventSpans) -> Result<(), Fail> {
    out.event_id = r.str("event_id")?;
    let micros = r.wide("event_time")?;
    let Some(event_time) = EventTime::from_micros(micros) else {
        return Err(r.fail(SchemaError::TimestampOutOfRange { record: RECORD, field: "event_time", micros }));
    };
    out.event_time = event_time;
    out.tenant_id = r.str("tenant_id")?;
    out.team = r.opt_str("team")?;
    out.project = r.opt_str("project")?;
    out.user_id = r.opt_str("user_id")?;
    out.api_key_id = r.opt_str("api_key_id")?;
    out.feature = r.opt_str("feature")?;
    out.environment = r.opt_str("environment")?;
    r.map_into("tags", tags)?;
    out.provider = r.str("provider")?;
    out.operation = r.str("operation")?;
    out.request_model = r.str("request_model")?;
    out.response_model = r.opt_str("response_model")?;
    out.routed_from_model = r.opt_str("routed_from_model")?;
    out.input_tokens = r.wide("input_tokens")?;
    out.cache_read_input_tokens = r.long("cache_read_input_tokens")?;
    out.cache_creation_input_tokens = r.long("cache_creation_input_tokens")?;
    out.cache_creation_1h_input_tokens = r.long("cache_creation_1h_input_tokens")?;
    out.output_tokens = r.wide("output_tokens")?;
    out.reasoning_output_tokens = r.long("reasoning_output_tokens")?;
    out.service_tier = r.opt_str("service_tier")?;
    out.provided_cost_usd = r.opt_str("provided_cost_usd")?;
    out.latency_ms = if r.present("latency_ms")? { Some(r.wide("latency_ms")?) } else { None };
    out.status = r.str("status")?;
    out.response_id = r.opt_str("response_id")?;
    out.trace_id = r.opt_str("trace_id")?;
    if r.pos != r.buf.len() {
        let count = r.buf.len() - r.pos;
        return Err(r.fail(SchemaError::TrailingBytes { record: RECORD, count }));
    }
    Ok(())
}

/// Calls `f` with the view of the event whose fields `read` found, its strings slices of
/// `text` (here and not in the caller: a view returned by value was copied once more).
#[inline(always)]
fn resolve<'t, R>(
    s: &EventSpans,
    tags: TagsRef<'t>,
    text: &'t str,
    f: impl FnOnce(&UsageEventRef<'_>) -> R,
) -> Result<R, SchemaError> {
    let event_id = slice(text, "event_id", s.event_id)?;
    let tenant_id = slice(text, "tenant_id", s.tenant_id)?;
    let team = opt_slice(text, "team", s.team)?;
    let project = opt_slice(text, "project", s.project)?;
    let user_id = opt_slice(text, "user_id", s.user_id)?;
    let api_key_id = opt_slice(text, "api_key_id", s.api_key_id)?;
    let feature = opt_slice(text, "feature", s.feature)?;
    let environment = opt_slice(text, "environment", s.environment)?;
    let provider = slice(text, "provider", s.provider)?;
    let operation = slice(text, "operation", s.operation)?;
    let request_model = slice(text, "request_model", s.request_model)?;
    let response_model = opt_slice(text, "response_model", s.response_model)?;
    let routed_from_model = opt_slice(text, "routed_from_model", s.routed_from_model)?;
    let service_tier = opt_slice(text, "service_tier", s.service_tier)?;
    let provided_cost_usd = match opt_slice(text, "provided_cost_usd", s.provided_cost_usd)? {
        Some(cost) => Some(cost.parse::<Money>().map_err(|source| SchemaError::InvalidMoney {
            record: RECORD,
            field: "provided_cost_usd",
            source,
        })?),
        None => None,
    };
    let status = slice(text, "status", s.status)?;
    let response_id = opt_slice(text, "response_id", s.response_id)?;
    let trace_id = opt_slice(text, "trace_id", s.trace_id)?;
    let event = UsageEventRef {
        event_id,
        event_time: s.event_time,
        attribution: Attribution { tenant_id, team, project, user_id, api_key_id },
        feature,
        environment,
        tags,
        provider,
        operation,
        request_model,
        response_model,
        routed_from_model,
        input_tokens: s.input_tokens,
        cache_read_input_tokens: s.cache_read_input_tokens,
        cache_creation_input_tokens: s.cache_creation_input_tokens,
        cache_creation_1h_input_tokens: s.cache_creation_1h_input_tokens,
        output_tokens: s.output_tokens,
        reasoning_output_tokens: s.reasoning_output_tokens,
        service_tier,
        provided_cost_usd,
        latency_ms: s.latency_ms,
        status,
        response_id,
        trace_id,
    };
    Ok(f(&event))
}
