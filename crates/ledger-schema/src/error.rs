//! [`SchemaError`]: everything that can go wrong while framing, encoding or decoding.

use std::fmt;

use ledger_core::money::ParseMoneyError;

/// A CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form.
///
/// Held as the 8 bytes that follow `C3 01` in a single-object encoded message (the
/// little-endian form of the 64-bit value). `Display` prints the 64-bit value in hex, as
/// Java's `SchemaNormalization.parsingFingerprint64` would report it; `Debug` adds the wire
/// bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 8]);

impl Fingerprint {
    /// The 64-bit fingerprint value (the wire bytes read as little-endian).
    pub const fn value(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// The wire bytes, as they follow `C3 01` in a single-object encoded message.
    pub const fn bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.value())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self}, wire bytes ")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// What went wrong while loading a schema or encoding or decoding a message.
///
/// Variants marked **poison** mean the input bytes are bad: the message cannot be decoded by
/// any version of this program and belongs on the dead-letter topic
/// ([`SchemaError::is_poison`] is true). Variants marked **bug** mean the program, its
/// embedded schemas or the value handed to `encode` are wrong: retrying or dead-lettering
/// does not help, fix the code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// **Poison.** The message is shorter than the 10-byte single-object header.
    #[error("{record}: message of {len} bytes is shorter than the 10-byte Avro single-object header")]
    Truncated {
        /// Record the codec expected.
        record: &'static str,
        /// Length of the message.
        len: usize,
    },
    /// **Poison.** The message does not start with the single-object marker `C3 01`.
    #[error("{record}: not an Avro single-object message: starts with {:02x} {:02x}, expected c3 01", .found[0], .found[1])]
    BadMagic {
        /// Record the codec expected.
        record: &'static str,
        /// The first two bytes of the message.
        found: [u8; 2],
    },
    /// **Poison.** The message starts with the Confluent marker `00` but is shorter than the
    /// 5-byte Confluent header.
    #[error("{record}: message of {len} bytes is shorter than the 5-byte Confluent wire-format header")]
    ConfluentTruncated {
        /// Record the codec expected.
        record: &'static str,
        /// Length of the message.
        len: usize,
    },
    /// **Poison.** The message starts with neither framing a reader of both accepts.
    #[error("{record}: neither Avro single-object (c3 01) nor Confluent wire format (00): the message starts with {first:02x}")]
    UnknownFraming {
        /// Record the codec expected.
        record: &'static str,
        /// The message's first byte.
        first: u8,
    },
    /// **Poison** (until the id becomes known). A Confluent message names a schema id the reader
    /// does not know, or one whose schema it cannot read.
    #[error("{record}: Confluent schema id {id}: {detail}")]
    SchemaId {
        /// Record the codec expected.
        record: &'static str,
        /// The schema id in the message header.
        id: u32,
        /// Why it cannot be read (where the reader looked, or what the schema is).
        detail: String,
    },
    /// **Poison** (for this version of the program). The message was written with a schema this
    /// codec does not know: not the current schema nor any released version in its history.
    #[error("{record}: unknown writer schema fingerprint {fingerprint} (known: {known})")]
    UnknownFingerprint {
        /// Record the codec expected.
        record: &'static str,
        /// Fingerprint found in the message header.
        fingerprint: Fingerprint,
        /// The fingerprints this codec knows, comma-separated.
        known: String,
    },
    /// **Poison.** The datum after the header is not a valid Avro datum of the writer schema
    /// (truncated, corrupt length or union index, invalid UTF-8, ...).
    #[error("{record}: malformed Avro datum: {source}")]
    Datum {
        /// Record the codec expected.
        record: &'static str,
        /// The Avro decoder's error.
        source: serde_avro_fast::de::DeError,
    },
    /// **Poison.** The datum of a known older writer schema could not be read with the current
    /// schema (corrupt bytes; compatibility itself is checked when the codec is built).
    #[error("{record}: cannot read datum written with schema {fingerprint}: {source}")]
    Resolve {
        /// Record the codec expected.
        record: &'static str,
        /// Fingerprint of the writer schema.
        fingerprint: Fingerprint,
        /// apache-avro's error.
        source: Box<apache_avro::Error>,
    },
    /// **Poison.** Bytes are left over after a complete datum.
    #[error("{record}: {count} trailing bytes after the Avro datum")]
    TrailingBytes {
        /// Record the codec expected.
        record: &'static str,
        /// Number of bytes left over.
        count: usize,
    },
    /// **Poison.** A money field does not hold an exact decimal amount with at most 12
    /// fractional digits.
    #[error("{record}: field `{field}` is not an exact decimal amount of USD: {source}")]
    InvalidMoney {
        /// Record being decoded.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// Why the text is not a [`ledger_core::Money`].
        source: ParseMoneyError,
    },
    /// **Poison.** A timestamp is outside the range `chrono` can represent.
    #[error("{record}: field `{field}` holds timestamp {micros} us, out of the representable range")]
    TimestampOutOfRange {
        /// Record being decoded.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// The value on the wire (microseconds since the Unix epoch).
        micros: i64,
    },
    /// **Poison.** A field holds a value the schema allows but the domain type does not (an
    /// unknown budget period, a negative fraction, ...).
    #[error("{record}: field `{field}` is invalid: {detail}")]
    InvalidValue {
        /// Record being decoded.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// **Bug.** An embedded schema does not parse with apache-avro.
    #[error("{record}: embedded schema does not parse: {source}")]
    SchemaParse {
        /// Record whose schema failed.
        record: &'static str,
        /// apache-avro's error.
        source: Box<apache_avro::Error>,
    },
    /// **Bug.** An embedded schema does not parse with serde_avro_fast.
    #[error("{record}: embedded schema does not parse with the fast codec: {source}")]
    FastSchemaParse {
        /// Record whose schema failed.
        record: &'static str,
        /// serde_avro_fast's error.
        source: serde_avro_fast::schema::SchemaError,
    },
    /// **Bug.** apache-avro and serde_avro_fast disagree on a schema's fingerprint.
    #[error("{record}: schema fingerprints disagree: apache-avro {apache}, serde_avro_fast {fast}")]
    FingerprintMismatch {
        /// Record whose schema failed.
        record: &'static str,
        /// Fingerprint computed by apache-avro.
        apache: Fingerprint,
        /// Fingerprint computed by serde_avro_fast.
        fast: Fingerprint,
    },
    /// **Bug.** A schema is not a record with the expected name.
    #[error("{record}: embedded schema is not the record `{record}` (found `{found}`)")]
    WrongRecord {
        /// Record expected.
        record: &'static str,
        /// What the schema names.
        found: String,
    },
    /// **Bug.** The current schema cannot read data written with a released (or registered)
    /// writer schema: a backward-incompatible change.
    #[error("{record}: schema is not backward compatible with writer schema {writer}: {detail}")]
    Incompatible {
        /// Record whose schema failed.
        record: &'static str,
        /// Fingerprint of the writer schema that cannot be read.
        writer: Fingerprint,
        /// apache-avro's compatibility error.
        detail: String,
    },
    /// **Bug.** The value handed to `encode` cannot be represented in the schema.
    #[error("{record}: field `{field}` cannot be encoded: {detail}")]
    Unencodable {
        /// Record being encoded.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// **Bug.** The Avro encoder failed (the Rust mapping and the schema disagree).
    #[error("{record}: Avro encoding failed: {source}")]
    Encode {
        /// Record being encoded.
        record: &'static str,
        /// serde_avro_fast's error.
        source: serde_avro_fast::ser::SerError,
    },
    /// **Bug.** Re-encoding a datum resolved from an older writer schema failed.
    #[error("{record}: transcoding from writer schema {fingerprint} failed: {source}")]
    Transcode {
        /// Record being decoded.
        record: &'static str,
        /// Fingerprint of the writer schema.
        fingerprint: Fingerprint,
        /// apache-avro's error.
        source: Box<apache_avro::Error>,
    },
}

impl SchemaError {
    /// True when the input bytes are bad (dead-letter the message); false when the program,
    /// its schemas or the value to encode are wrong (a bug: fix the code, do not retry).
    pub fn is_poison(&self) -> bool {
        match self {
            SchemaError::Truncated { .. }
            | SchemaError::BadMagic { .. }
            | SchemaError::UnknownFingerprint { .. }
            | SchemaError::ConfluentTruncated { .. }
            | SchemaError::UnknownFraming { .. }
            | SchemaError::SchemaId { .. }
            | SchemaError::Datum { .. }
            | SchemaError::Resolve { .. }
            | SchemaError::TrailingBytes { .. }
            | SchemaError::InvalidMoney { .. }
            | SchemaError::TimestampOutOfRange { .. }
            | SchemaError::InvalidValue { .. } => true,
            SchemaError::SchemaParse { .. }
            | SchemaError::FastSchemaParse { .. }
            | SchemaError::FingerprintMismatch { .. }
            | SchemaError::WrongRecord { .. }
            | SchemaError::Incompatible { .. }
            | SchemaError::Unencodable { .. }
            | SchemaError::Encode { .. }
            | SchemaError::Transcode { .. } => false,
        }
    }
}
