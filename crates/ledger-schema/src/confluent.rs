//! The Confluent Schema Registry wire format, beside single-object framing: `00`, the writer
//! schema's registry id (4 bytes, big-endian), the Avro binary datum. Kafka Connect, ksqlDB,
//! Flink and ClickHouse's `AvroConfluent` format read and write it.
//!
//! A reader tells the two framings apart by the first byte (`C3` or `00`). A Confluent message
//! names its writer schema by an id that only a registry (or configuration) can map to a schema,
//! so decoding it needs a [`SchemaIds`] table filled beforehand; this crate does no I/O, the
//! `ledger-registry` crate fills the table.

use std::fmt;
use std::sync::Arc;

use ledger_core::{UsageEvent, UsageEventRef};
use serde::{Deserialize, Serialize};

use crate::codec::{Codec, MAGIC};
use crate::error::SchemaError;
use crate::schema::{check_can_read, fingerprint, AvroRecord, RecordSchema, WriterSchema};

/// The first byte of a single-object message.
const SINGLE_OBJECT_FIRST: u8 = MAGIC[0];

/// The byte that opens a Confluent wire-format message.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// Length of the Confluent header: [`CONFLUENT_MAGIC`] and the 4-byte schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// How producers frame each message (the `schema.framing` setting). Readers accept both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Avro single-object encoding: `C3 01`, the 8-byte CRC-64-AVRO fingerprint, the datum.
    #[default]
    SingleObject,
    /// The Confluent wire format: `00`, the 4-byte big-endian registry schema id, the datum.
    Confluent,
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framing::SingleObject => "single_object",
            Framing::Confluent => "confluent",
        })
    }
}

/// What a producer writes in front of each datum: a [`Framing`] with what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// Single-object encoding with the current schema's fingerprint.
    #[default]
    SingleObject,
    /// The Confluent wire format with the registry id of the current schema.
    Confluent {
        /// The current schema's id in the registry (or configuration).
        schema_id: u32,
    },
}

/// Splits a Confluent wire-format message into the schema id and the datum. `record` only
/// labels the error.
pub fn split_confluent<'a>(record: &'static str, message: &'a [u8]) -> Result<(u32, &'a [u8]), SchemaError> {
    match message {
        [CONFLUENT_MAGIC, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [CONFLUENT_MAGIC, ..] => Err(SchemaError::ConfluentTruncated { record, len: message.len() }),
        [first, ..] => Err(SchemaError::UnknownFraming { record, first: *first }),
        [] => Err(SchemaError::ConfluentTruncated { record, len: 0 }),
    }
}

/// The schema id a Confluent message names, or `None` for any other message (no error: the
/// caller decodes it and learns what is wrong then).
pub fn confluent_schema_id(message: &[u8]) -> Option<u32> {
    match message {
        [CONFLUENT_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// What a Confluent schema id stands for, to a reader of one record type.
#[derive(Clone)]
pub enum IdWriter {
    /// The current schema (same Parsing Canonical Form): decoded like single-object data of the
    /// current schema, on the fast path.
    Current,
    /// Another writer schema the current one reads by Avro's resolution rules.
    Older(Arc<OtherWriter>),
    /// Messages with this id cannot be read (unknown id, not an Avro schema, a schema the
    /// current one cannot read): each is poison, for this reason.
    Rejected(Arc<str>),
}

impl fmt::Debug for IdWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdWriter::Current => f.write_str("Current"),
            IdWriter::Older(w) => write!(f, "Older({})", w.0.fingerprint),
            IdWriter::Rejected(why) => write!(f, "Rejected({why:?})"),
        }
    }
}

/// A writer schema other than the current one (opaque: it is read by the codec only).
pub struct OtherWriter(WriterSchema);

impl fmt::Debug for OtherWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtherWriter({})", self.0.fingerprint)
    }
}

impl OtherWriter {
    /// The writer schema's CRC-64-AVRO fingerprint.
    pub fn fingerprint(&self) -> crate::Fingerprint {
        self.0.fingerprint
    }
}

impl RecordSchema {
    /// What a writer schema (the text of an `.avsc`, e.g. as a registry returns it) is to this
    /// record's reader: the current schema, another readable writer, or rejected with the reason.
    pub fn id_writer(&self, writer_avsc: &str) -> IdWriter {
        let writer = match apache_avro::Schema::parse_str(writer_avsc) {
            Ok(s) => s,
            Err(e) => return IdWriter::Rejected(format!("not an Avro schema: {e}").into()),
        };
        let writer_fingerprint = fingerprint(&writer);
        if writer_fingerprint == self.fingerprint() {
            return IdWriter::Current;
        }
        match check_can_read(self.name(), &writer, self.schema()) {
            Ok(fingerprint) => IdWriter::Older(Arc::new(OtherWriter(WriterSchema { fingerprint, schema: writer }))),
            Err(e) => IdWriter::Rejected(
                format!("{} cannot be read as the current {} schema: {e}", writer_fingerprint, self.name()).into(),
            ),
        }
    }
}

/// The writer schemas behind Confluent schema ids, as far as a reader knows them: filled from
/// configuration and a registry before the messages that name them are decoded.
#[derive(Debug, Clone)]
pub struct SchemaIds {
    /// Few entries (one per schema version seen), so a scan beats hashing.
    entries: Vec<(u32, IdWriter)>,
    /// Why an id with no entry is unknown (where the reader looked).
    unknown: Arc<str>,
}

impl SchemaIds {
    /// An empty table; `unknown` says why an id without an entry is not known, e.g. "not among
    /// the configured schema.ids".
    pub fn new(unknown: impl Into<Arc<str>>) -> Self {
        SchemaIds { entries: Vec::new(), unknown: unknown.into() }
    }

    /// The entry of `id`.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&IdWriter> {
        self.entries.iter().find(|(i, _)| *i == id).map(|(_, w)| w)
    }

    /// Sets the entry of `id` (replacing any).
    pub fn insert(&mut self, id: u32, writer: IdWriter) {
        match self.entries.iter_mut().find(|(i, _)| *i == id) {
            Some(entry) => entry.1 = writer,
            None => self.entries.push((id, writer)),
        }
    }

    /// Removes the entry of `id`.
    pub fn remove(&mut self, id: u32) {
        self.entries.retain(|(i, _)| *i != id);
    }

    /// The ids whose entry is [`IdWriter::Current`], smallest first.
    pub fn current_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.entries.iter().filter(|(_, w)| matches!(w, IdWriter::Current)).map(|(i, _)| *i).collect();
        ids.sort_unstable();
        ids
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no id is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cold]
    fn error(&self, record: &'static str, id: u32) -> SchemaError {
        let detail = match self.get(id) {
            Some(IdWriter::Rejected(why)) => why.to_string(),
            _ => format!("unknown ({})", self.unknown),
        };
        SchemaError::SchemaId { record, id, detail }
    }
}

impl<T: AvroRecord> Codec<T> {
    /// Appends the message of `value` in `wire` format to `out`; on error `out` is left as it was.
    pub fn encode_framed_into(&self, value: &T, wire: WireFormat, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        match wire {
            WireFormat::SingleObject => self.encode_into(value, out),
            WireFormat::Confluent { schema_id } => {
                let start = out.len();
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&schema_id.to_be_bytes());
                let result = value.write_datum(self.schema().fast_schema(), out);
                if result.is_err() {
                    out.truncate(start);
                }
                result
            }
        }
    }

    /// Encodes `value` as a new message in `wire` format.
    pub fn encode_framed(&self, value: &T, wire: WireFormat) -> Result<Vec<u8>, SchemaError> {
        let mut out = Vec::with_capacity(256);
        self.encode_framed_into(value, wire, &mut out)?;
        Ok(out)
    }

    /// Decodes a message in either framing: single-object (as [`Codec::decode`]) or Confluent,
    /// whose schema id must have an entry in `ids`.
    pub fn decode_framed(&self, ids: &SchemaIds, message: &[u8]) -> Result<T, SchemaError> {
        match message.first() {
            Some(&CONFLUENT_MAGIC) => {}
            Some(&SINGLE_OBJECT_FIRST) | None => return self.decode(message),
            Some(&first) => return Err(SchemaError::UnknownFraming { record: T::NAME, first }),
        }
        let (id, datum) = split_confluent(T::NAME, message)?;
        match ids.get(id) {
            Some(IdWriter::Current) => self.decode_datum(datum),
            Some(IdWriter::Older(writer)) => {
                let datum = self.transcode(writer.0.fingerprint, &writer.0.schema, datum)?;
                self.decode_datum(&datum)
            }
            _ => Err(ids.error(T::NAME, id)),
        }
    }
}

impl Codec<UsageEvent> {
    /// [`Codec::decode_with`] for either framing: the processor's hot path. A single-object
    /// message of the current schema costs what it costs in [`Codec::decode_with`] (its header
    /// is checked first); a Confluent message whose id stands for the current schema is decoded
    /// on the same fast decoder.
    #[inline]
    pub fn decode_framed_with<R>(
        &self,
        ids: &SchemaIds,
        message: &[u8],
        read: impl FnOnce(&UsageEventRef<'_>) -> R,
    ) -> Result<R, SchemaError> {
        if let Some((header, datum)) = message.split_first_chunk::<{ crate::HEADER_LEN }>() {
            if header[..2] == MAGIC && header[2..] == self.schema().fingerprint().0 {
                return crate::usage_fast::decode_then(datum, read);
            }
        }
        self.decode_framed_other(ids, message, read)
    }

    /// [`Codec::decode_framed_with`] of anything but a single-object message of the current
    /// schema: Confluent messages, older writers, poison.
    #[inline(never)]
    fn decode_framed_other<R>(
        &self,
        ids: &SchemaIds,
        message: &[u8],
        read: impl FnOnce(&UsageEventRef<'_>) -> R,
    ) -> Result<R, SchemaError> {
        match message.first() {
            Some(&SINGLE_OBJECT_FIRST) | None => self.decode_with(message, read),
            Some(&CONFLUENT_MAGIC) => self.decode_confluent_with(ids, message, read),
            Some(&first) => Err(SchemaError::UnknownFraming { record: UsageEvent::NAME, first }),
        }
    }

    fn decode_confluent_with<R>(
        &self,
        ids: &SchemaIds,
        message: &[u8],
        read: impl FnOnce(&UsageEventRef<'_>) -> R,
    ) -> Result<R, SchemaError> {
        let (id, datum) = split_confluent(UsageEvent::NAME, message)?;
        match ids.get(id) {
            Some(IdWriter::Current) => crate::usage_fast::decode_then(datum, read),
            Some(IdWriter::Older(writer)) => {
                let datum = self.transcode(writer.0.fingerprint, &writer.0.schema, datum)?;
                crate::usage_fast::decode_then(&datum, read)
            }
            _ => Err(ids.error(UsageEvent::NAME, id)),
        }
    }
}
