//! The first step of decoding: reading varints, string places, `["null", T]` unions and the
//! tags map straight from the datum, zeroing multi-byte varints in the masked copy.

use super::RECORD;
use crate::error::SchemaError;

pub(super) struct Reader<'a, 'm> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    /// A copy of `buf` in which every multi-byte varint read so far is zeroed. Once the whole
    /// datum is read, the only bytes above 0x7f left in it are string bytes, so one UTF-8
    /// check of the copy checks every string of the event at once: a check per string, or
    /// per run of ASCII between varints, cost a third of the decode in call overhead.
    pub(super) masked: &'m mut [u8],
    /// The error behind a [`Fail`]: kept here so the readers return a zero-sized error and
    /// every `?` on the hot path stays a single branch.
    pub(super) error: Option<SchemaError>,
}

/// A read failed; the error is in [`Reader::error`].
#[derive(Debug)]
pub(super) struct Fail;

/// Where a string lies in the datum, before its UTF-8 is checked (a datum is shorter than
/// 4 GiB, see [`decode_then`](super::decode_then)).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub(super) fn range(self) -> std::ops::Range<usize> {
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
pub(super) const INLINE_TAGS: usize = 4;

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
    pub(super) fn push(&mut self, pair: T) {
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
    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.spilled.clear();
    }

    pub(super) fn as_slice(&self) -> &[T] {
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
    pub(super) fn fail(&mut self, error: SchemaError) -> Fail {
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
    pub(super) fn long(&mut self, field: &'static str) -> Result<i64, Fail> {
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
    pub(super) fn wide(&mut self, field: &'static str) -> Result<i64, Fail> {
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
    pub(super) fn str(&mut self, field: &'static str) -> Result<Span, Fail> {
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
    pub(super) fn present(&mut self, field: &'static str) -> Result<bool, Fail> {
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
    pub(super) fn opt_str(&mut self, field: &'static str) -> Result<Option<Span>, Fail> {
        if self.present(field)? {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }

    #[inline(always)]
    pub(super) fn map_into(&mut self, field: &'static str, out: &mut TagBuf<(Span, Span)>) -> Result<(), Fail> {
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
