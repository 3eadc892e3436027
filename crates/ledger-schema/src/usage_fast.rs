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
    /// A run of ASCII bytes of `buf` starting at `text_start` (`<= pos`), already checked as
    /// UTF-8. The strings of an event sit in a few such runs between multi-byte varints, so
    /// checking a run once replaces a UTF-8 check per field (a quarter of the decode time).
    text: &'a str,
    text_start: usize,
    /// The error behind a [`Fail`]: kept here so the readers return a zero-sized error and
    /// every `?` on the hot path stays a single branch.
    error: Option<SchemaError>,
}

/// A read failed; the error is in [`Reader::error`].
#[derive(Debug)]
struct Fail;

/// The `long` that Avro's zigzag encoding maps to `u`.
#[inline(always)]
fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
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

/// Length of the leading run of ASCII bytes of `bytes`.
#[inline]
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut n = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let high = u64::from_le_bytes(w) & HIGH;
        if high != 0 {
            return n + (high.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    let rest = chunks.remainder();
    n + rest.iter().position(|b| !b.is_ascii()).unwrap_or(rest.len())
}

/// Number of tag pairs held without allocating; events carry a handful at most.
const INLINE_TAGS: usize = 4;

/// The tags of one event as read from a datum: inline up to [`INLINE_TAGS`] pairs, so the
/// usual event allocates nothing, else in a vector.
#[derive(Debug)]
pub(crate) struct TagBuf<'d> {
    inline: [(&'d str, &'d str); INLINE_TAGS],
    len: usize,
    spilled: Vec<(&'d str, &'d str)>,
}

impl<'d> TagBuf<'d> {
    pub(crate) fn new() -> Self {
        TagBuf { inline: [("", ""); INLINE_TAGS], len: 0, spilled: Vec::new() }
    }

    #[inline]
    fn push(&mut self, pair: (&'d str, &'d str)) {
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

    fn as_slice(&self) -> &[(&'d str, &'d str)] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

impl<'a> Reader<'a> {
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

    #[inline(never)]
    fn long_slow(&mut self, field: &'static str) -> Result<i64, Fail> {
        // With eight bytes left, a varint of at most eight bytes (every value below 2^55:
        // token counts, timestamps in microseconds) is read without a branch per byte, whose
        // exit mispredicted as lengths vary from event to event.
        if let Some(bytes) = self.buf.get(self.pos..).and_then(|rest| rest.first_chunk::<8>()) {
            let word = u64::from_le_bytes(*bytes);
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = (ends.trailing_zeros() / 8 + 1) as usize;
                let value = compact_varint_groups(word & (u64::MAX >> (64 - 8 * len)));
                self.pos += len;
                return Ok(unzigzag(value));
            }
        }
        // Longer varints (values of 2^55 and more), the end of a datum and bad input.
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
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(self.bad(field, "varint longer than 10 bytes".into()));
            }
        }
        Ok(unzigzag(value))
    }

    #[inline(always)]
    fn str(&mut self, field: &'static str) -> Result<&'a str, Fail> {
        let len = self.long(field)?;
        // A string inside the checked run needs no other test: the run lies inside the datum
        // and is valid UTF-8 (a negative length fails `try_from`, a long one `get`).
        let from = self.pos - self.text_start;
        if let Some(s) = usize::try_from(len).ok().and_then(|len| self.text.get(from..from + len)) {
            self.pos += s.len();
            return Ok(s);
        }
        self.str_slow(field, len)
    }

    #[inline(never)]
    fn str_slow(&mut self, field: &'static str, len: i64) -> Result<&'a str, Fail> {
        let Ok(len) = usize::try_from(len) else {
            return Err(self.negative_length(field, len));
        };
        let Some(end) = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()) else {
            return Err(self.truncated_string(field));
        };
        let s = self.str_outside_text(field, end)?;
        self.pos = end;
        Ok(s)
    }

    /// The string `buf[pos..end]` when it is not inside the current ASCII run: starts a new
    /// run at `pos` when the string is ASCII, else checks the string alone.
    #[inline(never)]
    fn str_outside_text(&mut self, field: &'static str, end: usize) -> Result<&'a str, Fail> {
        let bytes = &self.buf[self.pos..end];
        // A string that starts inside the run but leaves it holds a non-ASCII byte; scanning
        // again from here would only find the same end, so each byte is scanned once.
        if self.pos >= self.text_start + self.text.len() {
            let rest = &self.buf[self.pos..];
            let run = ascii_prefix_len(rest);
            if run >= bytes.len() {
                if let Ok(text) = std::str::from_utf8(&rest[..run]) {
                    self.text = text;
                    self.text_start = self.pos;
                    if let Some(s) = text.get(..bytes.len()) {
                        return Ok(s);
                    }
                }
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => Err(self.bad(field, format!("not UTF-8: {e}"))),
        }
    }

    #[inline(always)]
    fn present(&mut self, field: &'static str) -> Result<bool, Fail> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(self.bad_branch(field, n)),
        }
    }

    #[inline(always)]
    fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, Fail> {
        if self.present(field)? {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn map_into(&mut self, field: &'static str, out: &mut TagBuf<'a>) -> Result<(), Fail> {
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

/// Decodes a `UsageEvent` datum of the current schema.
pub(crate) fn decode(datum: &[u8]) -> Result<UsageEvent, SchemaError> {
    decode_then(datum, |e| e.to_owned_event())
}

/// Reads a `UsageEvent` datum of the current schema without copying its strings and calls
/// `f` with the view. The view lives on this function's stack and is passed by reference, so
/// the ~400-byte event is never moved; the tags are held inline (a vector only for an event
/// with more than [`INLINE_TAGS`] tags).
#[inline]
pub(crate) fn decode_then<R>(datum: &[u8], f: impl FnOnce(&UsageEventRef<'_>) -> R) -> Result<R, SchemaError> {
    let mut r = Reader { buf: datum, pos: 0, text: "", text_start: 0, error: None };
    let mut tags = TagBuf::new();
    match read(&mut r, &mut tags) {
        Ok(mut event) => {
            event.tags = TagsRef::Pairs(tags.as_slice());
            Ok(f(&event))
        }
        Err(Fail) => Err(r.error.take().unwrap_or_else(|| SchemaError::InvalidValue {
            record: RECORD,
            field: "event",
            detail: "decoding failed without a reason (a bug)".into(),
        })),
    }
}

/// The fields of the datum in schema order; the tags go into `tags` and the returned view has
/// none yet (the caller points it at `tags`).
#[inline(always)]
fn read<'d>(r: &mut Reader<'d>, tags: &mut TagBuf<'d>) -> Result<UsageEventRef<'d>, Fail> {
    let event_id = r.str("event_id")?;
    let micros = r.long("event_time")?;
    let Some(event_time) = DateTime::from_timestamp_micros(micros) else {
        return Err(r.fail(SchemaError::TimestampOutOfRange { record: RECORD, field: "event_time", micros }));
    };
    let tenant_id = r.str("tenant_id")?;
    let team = r.opt_str("team")?;
    let project = r.opt_str("project")?;
    let user_id = r.opt_str("user_id")?;
    let api_key_id = r.opt_str("api_key_id")?;
    let feature = r.opt_str("feature")?;
    let environment = r.opt_str("environment")?;
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
        match text.parse::<Money>() {
            Ok(m) => Some(m),
            Err(source) => {
                return Err(r.fail(SchemaError::InvalidMoney { record: RECORD, field: "provided_cost_usd", source }))
            }
        }
    } else {
        None
    };
    let latency_ms = if r.present("latency_ms")? { Some(r.long("latency_ms")?) } else { None };
    let status = r.str("status")?;
    let response_id = r.opt_str("response_id")?;
    let trace_id = r.opt_str("trace_id")?;
    if r.pos != r.buf.len() {
        let count = r.buf.len() - r.pos;
        return Err(r.fail(SchemaError::TrailingBytes { record: RECORD, count }));
    }
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
        tags: TagsRef::Pairs(&[]),
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
    fn ascii_runs_and_non_ascii_strings_decode_exactly() {
        let mut e = event();
        assert_eq!(decoded(&datum(&e)).unwrap(), e);
        // Non-ASCII at the start, middle and end of the runs, and a string that starts inside
        // an ASCII run and leaves it.
        e.event_id = "é-1".into();
        e.tenant_id = "acme".into();
        e.team = Some("s\u{e9}arch".into());
        e.project = Some(String::new());
        e.user_id = Some("user-\u{1F600}".into());
        e.request_model = "gpt-4o\u{2003}".into();
        e.status = "ök".into();
        e.trace_id = Some(String::new());
        assert_eq!(decoded(&datum(&e)).unwrap(), e);
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
            let mut r = Reader { buf: bytes, pos: 0, text: "", text_start: 0, error: None };
            r.long("f").map(|v| (v, r.pos)).map_err(|Fail| r.error.take().expect("error").to_string())
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

    #[test]
    fn ascii_prefix_len_finds_the_first_high_byte() {
        for len in 0..40 {
            for at in 0..=len {
                let mut b = vec![b'a'; len];
                if at < len {
                    b[at] = 0x80;
                }
                assert_eq!(ascii_prefix_len(&b), at, "len {len} at {at}");
            }
        }
    }
}
