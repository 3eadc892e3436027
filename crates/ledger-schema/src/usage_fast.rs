//! A hand-written decoder of the current `UsageEvent` datum: the processor's hot path; and
//! the matching encoder, the emitters' (SDK, ingest, load generator) hot path.
//!
//! It reads the fields in the order of `schemas/avro/usage_event.avsc` straight from the slice
//! (zig-zag varints, length-prefixed UTF-8, `["null", T]` unions, one string map), about three
//! times faster than the generic serde path. It is only used for datums written with the
//! current schema (the fingerprint says so); older writers are first resolved by Avro rules.
//! The property tests compare it with apache-avro on arbitrary events, and a test pins the
//! field list to the schema so a schema change cannot leave it behind silently.

use ledger_core::attribution::Attribution;
use ledger_core::{EventTime, Money, TagsRef, UsageEvent, UsageEventRef};

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

struct Reader<'a, 'm> {
    buf: &'a [u8],
    pos: usize,
    /// A copy of `buf` in which every multi-byte varint read so far is zeroed. Once the whole
    /// datum is read, the only bytes above 0x7f left in it are string bytes, so one UTF-8
    /// check of the copy checks every string of the event at once: a check per string, or
    /// per run of ASCII between varints, cost a third of the decode in call overhead.
    masked: &'m mut [u8],
    /// The error behind a [`Fail`]: kept here so the readers return a zero-sized error and
    /// every `?` on the hot path stays a single branch.
    error: Option<SchemaError>,
}

/// A read failed; the error is in [`Reader::error`].
#[derive(Debug)]
struct Fail;

/// Where a string lies in the datum, before its UTF-8 is checked (a datum is shorter than
/// 4 GiB, see [`decode_then`]).
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The value of a varint of at most eight bytes, given as a little-endian word (bytes past
/// its end zero): the seven low bits of each byte, packed.
#[inline(always)]
fn compact_varint_groups(word: u64) -> u64 {
    let x = word & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | (x & 0x7f00_7f00_7f00_7f00) >> 1;
    let x = (x & 0x0000_3fff_0000_3fff) | (x & 0x3fff_0000_3fff_0000) >> 2;
    (x & 0x0000_0000_0fff_ffff) | (x & 0x0fff_ffff_0000_0000) >> 4
}

/// The `long` that Avro's zigzag encoding maps to `u`.
#[inline(always)]
fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

/// Number of tag pairs held without allocating; events carry a handful at most.
const INLINE_TAGS: usize = 4;

/// The tags of one event as read from a datum (as spans, then as strings): inline up to
/// [`INLINE_TAGS`] pairs, so the usual event allocates nothing, else in a vector.
#[derive(Debug)]
pub(crate) struct TagBuf<T> {
    inline: [T; INLINE_TAGS],
    len: usize,
    spilled: Vec<T>,
}

impl<T: Copy + Default> TagBuf<T> {
    pub(crate) fn new() -> Self {
        TagBuf { inline: [T::default(); INLINE_TAGS], len: 0, spilled: Vec::new() }
    }

    #[inline]
    fn push(&mut self, pair: T) {
        if self.spilled.is_empty() && self.len < INLINE_TAGS {
            self.inline[self.len] = pair;
            self.len += 1;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.push(pair);
        }
    }

    #[cfg(test)]
    fn clear(&mut self) {
        self.len = 0;
        self.spilled.clear();
    }

    fn as_slice(&self) -> &[T] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

impl Reader<'_, '_> {
    #[cold]
    #[inline(never)]
    fn fail(&mut self, error: SchemaError) -> Fail {
        self.error = Some(error);
        Fail
    }

    #[cold]
    #[inline(never)]
    fn bad(&mut self, field: &'static str, detail: String) -> Fail {
        self.fail(SchemaError::InvalidValue { record: RECORD, field, detail })
    }

    #[cold]
    #[inline(never)]
    fn negative_length(&mut self, field: &'static str, len: i64) -> Fail {
        self.bad(field, format!("negative string length {len}"))
    }

    #[cold]
    #[inline(never)]
    fn truncated_string(&mut self, field: &'static str) -> Fail {
        self.bad(field, "datum ends inside a string".into())
    }

    #[cold]
    #[inline(never)]
    fn bad_branch(&mut self, field: &'static str, n: i64) -> Fail {
        self.bad(field, format!("union branch {n} out of range"))
    }

    #[inline(always)]
    fn long(&mut self, field: &'static str) -> Result<i64, Fail> {
        // Most values of an event (union branches, lengths, small counts) take one byte.
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(unzigzag(u64::from(b)))
            }
            _ => self.long_slow(field),
        }
    }

    /// A varint of more than one byte, zeroed in [`Reader::masked`].
    #[inline(never)]
    fn long_slow(&mut self, field: &'static str) -> Result<i64, Fail> {
        self.wide(field)
    }

    /// A long that usually takes several bytes (timestamps, token counts, latencies), read
    /// here without the one-byte test and the call of [`Reader::long`]; zeroed in
    /// [`Reader::masked`] (a one-byte varint too, which changes nothing there).
    #[inline(always)]
    fn wide(&mut self, field: &'static str) -> Result<i64, Fail> {
        // With eight bytes left, a varint of at most eight bytes (every value below 2^55:
        // token counts, timestamps in microseconds) is read without a branch per byte, whose
        // exit mispredicted as lengths vary from event to event.
        let start = self.pos;
        if let Some(bytes) = self.buf.get(start..).and_then(|rest| rest.first_chunk::<8>()) {
            let word = u64::from_le_bytes(*bytes);
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = (ends.trailing_zeros() / 8 + 1) as usize;
                let varint = u64::MAX >> (64 - 8 * len);
                self.pos += len;
                if let Some(masked) = self.masked.get_mut(start..).and_then(|rest| rest.first_chunk_mut::<8>()) {
                    *masked = (word & !varint).to_le_bytes();
                }
                return Ok(unzigzag(compact_varint_groups(word & varint)));
            }
        }
        self.wide_slow(field)
    }

    #[inline(never)]
    fn wide_slow(&mut self, field: &'static str) -> Result<i64, Fail> {
        let start = self.pos;
        let value = self.long_varint(field)?;
        self.masked[start..self.pos].fill(0);
        Ok(unzigzag(value))
    }

    /// Varints of more than eight bytes (values of 2^55 and more), the end of a datum and bad
    /// input.
    #[cold]
    fn long_varint(&mut self, field: &'static str) -> Result<u64, Fail> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.bad(field, "datum ends inside a varint".into()));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(self.bad(field, "varint overflows 64 bits".into()));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.bad(field, "varint longer than 10 bytes".into()));
            }
        }
    }

    /// A string's place; its UTF-8 is checked with the rest of the datum's (see `masked`).
    #[inline(always)]
    fn str(&mut self, field: &'static str) -> Result<Span, Fail> {
        // A length below 64 is one even byte (zigzag): its half, with no sign to undo.
        let len = match self.buf.get(self.pos) {
            Some(&b) if b & 0x81 == 0 => {
                self.pos += 1;
                i64::from(b >> 1)
            }
            _ => self.long(field)?,
        };
        let start = self.pos;
        match usize::try_from(len).ok().map(|len| start + len).filter(|end| *end <= self.buf.len()) {
            Some(end) => {
                self.pos = end;
                Ok(Span { start: start as u32, end: end as u32 })
            }
            None if len < 0 => Err(self.negative_length(field, len)),
            None => Err(self.truncated_string(field)),
        }
    }

    #[inline(always)]
    fn present(&mut self, field: &'static str) -> Result<bool, Fail> {
        // The branch index of `["null", T]` is a one-byte zigzag 0 or 1: 0x00 or 0x02.
        match self.buf.get(self.pos) {
            Some(0) => {
                self.pos += 1;
                Ok(false)
            }
            Some(2) => {
                self.pos += 1;
                Ok(true)
            }
            _ => self.present_slow(field),
        }
    }

    #[cold]
    #[inline(never)]
    fn present_slow(&mut self, field: &'static str) -> Result<bool, Fail> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(self.bad_branch(field, n)),
        }
    }

    #[inline(always)]
    fn opt_str(&mut self, field: &'static str) -> Result<Option<Span>, Fail> {
        if self.present(field)? {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }

    #[inline(always)]
    fn map_into(&mut self, field: &'static str, out: &mut TagBuf<(Span, Span)>) -> Result<(), Fail> {
        loop {
            let mut count = self.long(field)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = match count.checked_neg() {
                    Some(c) => c,
                    None => return Err(self.bad(field, "map block count overflows".into())),
                };
                self.long(field)?; // block size in bytes, not needed
            }
            // Every entry takes at least two bytes: a count beyond the rest is a lie.
            if count as u64 > (self.buf.len() - self.pos) as u64 {
                return Err(self.bad(field, format!("map block of {count} entries exceeds the datum")));
            }
            for _ in 0..count {
                let k = self.str(field)?;
                let v = self.str(field)?;
                out.push((k, v));
            }
        }
    }
}

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

/// Decodes a `UsageEvent` datum of the current schema.
pub(crate) fn decode(datum: &[u8]) -> Result<UsageEvent, SchemaError> {
    decode_then(datum, |e| e.to_owned_event())
}

/// Datums up to this size are masked (see [`Reader::masked`]) in a buffer on the stack.
const STACK_DATUM: usize = 512;

/// The stack buffer, aligned so the UTF-8 check starts on its word-at-a-time path at once.
#[repr(align(16))]
struct StackDatum([u8; STACK_DATUM]);

/// Reads a `UsageEvent` datum of the current schema without copying its strings out and
/// calls `f` with the view. The view lives on this function's stack and is passed by
/// reference, so the ~400-byte event is never moved; the tags are held inline (a vector only
/// for an event with more than [`INLINE_TAGS`] tags).
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

    fn event() -> UsageEvent {
        serde_json::from_str(
            r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme","team":"search",
                "user_id":"user-7","provider":"openai","request_model":"gpt-4o","input_tokens":100000,
                "output_tokens":300,"status":"ok","trace_id":"t-1"}"#,
        )
        .expect("event")
    }

    fn datum(e: &UsageEvent) -> Vec<u8> {
        let codec = crate::Codec::<UsageEvent>::new().expect("codec");
        codec.encode(e).expect("encode")[crate::HEADER_LEN..].to_vec()
    }

    fn decoded(datum: &[u8]) -> Result<UsageEvent, SchemaError> {
        decode(datum)
    }

    #[test]
    fn the_hand_written_writer_matches_the_serde_writer() {
        let codec = crate::Codec::<UsageEvent>::new().expect("codec");
        let schema = codec.schema().fast_schema();
        let mut full = event();
        full.tags = [("a".to_owned(), "1".to_owned()), ("b\u{e9}".to_owned(), "x".repeat(300))].into();
        full.provided_cost_usd = Some("-0.000000000001".parse().expect("money"));
        full.latency_ms = Some(-1);
        full.input_tokens = i64::MIN;
        full.output_tokens = i64::MAX;
        full.response_id = Some(String::new());
        for e in [event(), full] {
            let (mut fast, mut reference) = (Vec::new(), Vec::new());
            encode_into(&e, &mut fast).expect("fast");
            crate::records::usage_event_datum_by_serde(&e, schema, &mut reference).expect("serde");
            assert_eq!(fast, reference);
            assert_eq!(decoded(&fast).unwrap(), e);
        }
        let mut e = event();
        e.provided_cost_usd = Some(Money::from_picos(i128::MIN));
        assert!(matches!(encode_into(&e, &mut Vec::new()), Err(SchemaError::Unencodable { .. })));
    }

    #[test]
    fn ascii_runs_and_non_ascii_strings_decode_exactly() {
        let mut e = event();
        assert_eq!(decoded(&datum(&e)).unwrap(), e);
        // Non-ASCII at the start, middle and end of the runs, and a string that starts inside
        // an ASCII run and leaves it.
        e.event_id = "é-1".into();
        e.attribution.tenant_id = "acme".into();
        e.attribution.team = Some("s\u{e9}arch".into());
        e.attribution.project = Some(String::new());
        e.attribution.user_id = Some("user-\u{1F600}".into());
        e.request_model = "gpt-4o\u{2003}".into();
        e.status = "ök".into();
        e.trace_id = Some(String::new());
        assert_eq!(decoded(&datum(&e)).unwrap(), e);
    }

    #[test]
    fn long_strings_and_long_datums_decode_exactly() {
        let mut e = event();
        // Lengths of two and three varint bytes, non-ASCII in and around them, and a datum
        // past the stack buffer.
        e.attribution.team = Some("\u{e9}".repeat(40));
        e.attribution.project = Some(format!("p{}", "x".repeat(200)));
        e.tags = [("k\u{1F600}".to_owned(), "v".repeat(STACK_DATUM))].into();
        e.status = format!("{}\u{e9}", "s".repeat(70));
        let bytes = datum(&e);
        assert!(bytes.len() > STACK_DATUM);
        assert_eq!(decoded(&bytes).unwrap(), e);
        e.tags.clear();
        e.attribution.project = None;
        let bytes = datum(&e);
        assert!(bytes.len() <= STACK_DATUM);
        assert_eq!(decoded(&bytes).unwrap(), e);
    }

    #[test]
    fn the_first_string_that_is_not_utf8_is_named() {
        let mut e = event();
        e.attribution.team = Some("team-a".into());
        e.trace_id = Some("trace-b".into());
        let mut bytes = datum(&e);
        for needle in [&b"team-a"[..], b"trace-b"] {
            let at = bytes.windows(needle.len()).position(|w| w == needle).expect("field bytes");
            bytes[at] = 0xff;
        }
        match decoded(&bytes).unwrap_err() {
            SchemaError::InvalidValue { field, .. } => assert_eq!(field, "team"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_wherever_it_is() {
        let e = event();
        let bytes = datum(&e);
        for needle in [&b"e1"[..], b"acme", b"search", b"user-7", b"gpt-4o", b"ok", b"t-1"] {
            let at = bytes.windows(needle.len()).position(|w| w == needle).expect("field bytes");
            for (offset, bad) in [(0, 0xff), (needle.len() - 1, 0xc3), (needle.len() - 1, 0x80)] {
                let mut b = bytes.clone();
                b[at + offset] = bad;
                let err = decoded(&b).unwrap_err();
                assert!(
                    matches!(&err, SchemaError::InvalidValue { detail, .. } if detail.starts_with("not UTF-8")),
                    "{needle:?} byte {offset} = {bad:#x}: {err}"
                );
            }
        }
    }

    #[test]
    fn many_tags_spill_and_keep_wire_order() {
        let mut e = event();
        e.tags = (0..(INLINE_TAGS as u32 * 3)).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        assert_eq!(decoded(&datum(&e)).unwrap(), e);
        let mut buf = TagBuf::new();
        for i in 0..INLINE_TAGS + 2 {
            buf.push(if i % 2 == 0 { ("a", "1") } else { ("b", "2") });
        }
        assert_eq!(buf.as_slice().len(), INLINE_TAGS + 2);
        assert_eq!(buf.as_slice()[INLINE_TAGS + 1], ("b", "2"));
        buf.clear();
        assert!(buf.as_slice().is_empty());
    }

    #[test]
    fn varints_at_the_limits_and_past_them() {
        let read = |bytes: &[u8]| {
            let mut masked = bytes.to_vec();
            let mut r = Reader { buf: bytes, pos: 0, masked: &mut masked, error: None };
            let read = r.long("f").map(|v| (v, r.pos)).map_err(|Fail| r.error.take().expect("error").to_string());
            // A varint of more than one byte is zeroed in the masked copy, and nothing else.
            if let Ok((_, len)) = read {
                let zeroed = if len > 1 { 0 } else { bytes[0] };
                assert!(masked[..len].iter().all(|b| *b == zeroed), "{bytes:?}");
                assert_eq!(masked[len..], bytes[len..]);
            }
            read
        };
        let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
        let encode = |mut u: u64| {
            let mut out = Vec::new();
            while u >= 0x80 {
                out.push((u as u8) | 0x80);
                u >>= 7;
            }
            out.push(u as u8);
            out
        };
        // Every varint length, at both ends of each: 2^(7k) - 1 and 2^(7k) in zigzag.
        let mut values = vec![0, -1, 1, 63, -64, 64, 1 << 20, -(1 << 40), i64::MAX, i64::MIN];
        for k in 1..9 {
            let edge = 1i64 << (7 * k - 1);
            values.extend([edge - 1, edge, -edge, -edge - 1]);
        }
        for v in values {
            let bytes = encode(zigzag(v));
            // Alone (the checked loop), and followed by bytes of either kind, so that the word
            // read sees it whenever eight bytes are at hand.
            assert_eq!(read(&bytes), Ok((v, bytes.len())), "{v}");
            for (pad, fill) in [(0, 0x00), (2, 0x00), (2, 0xff), (10, 0x00), (10, 0xff)] {
                let mut padded = bytes.clone();
                padded.extend(std::iter::repeat_n(fill, pad.max(8usize.saturating_sub(bytes.len()))));
                assert_eq!(read(&padded), Ok((v, bytes.len())), "{v} followed by {pad} x {fill:#x}");
            }
        }
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0];
        assert!(read(&overflow).unwrap_err().contains("overflows 64 bits"));
        assert!(read(&overflow[..10]).unwrap_err().contains("overflows 64 bits"));
        let too_long = [0x80; 12];
        assert!(read(&too_long).is_err());
        assert!(read(&[0x80, 0x80]).unwrap_err().contains("ends inside a varint"));
    }
}
