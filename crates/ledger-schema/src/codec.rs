//! Single-object framing and the generic [`Codec`].

use std::fmt;
use std::marker::PhantomData;

use ledger_core::lease::{LeaseGrant, LeaseRequest};
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_core::{UsageEvent, UsageEventRef};

use crate::error::{Fingerprint, SchemaError};
use crate::schema::{schema_of, AvroRecord, RecordSchema};

/// The two marker bytes that open an Avro single-object encoded message.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the single-object header: [`MAGIC`] and the 8-byte fingerprint.
pub const HEADER_LEN: usize = 10;

/// Splits a single-object encoded message into the writer schema's fingerprint and the datum.
/// `record` only labels the error.
pub fn split_single_object<'a>(record: &'static str, message: &'a [u8]) -> Result<(Fingerprint, &'a [u8]), SchemaError> {
    if message.len() < HEADER_LEN {
        // A short message that does not even start right is reported as bad magic.
        if message.len() >= 2 && message[..2] != MAGIC {
            return Err(SchemaError::BadMagic { record, found: [message[0], message[1]] });
        }
        return Err(SchemaError::Truncated { record, len: message.len() });
    }
    if message[..2] != MAGIC {
        return Err(SchemaError::BadMagic { record, found: [message[0], message[1]] });
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&message[2..HEADER_LEN]);
    Ok((Fingerprint(fp), &message[HEADER_LEN..]))
}

/// Encoder and decoder of one record type in Avro single-object encoding:
/// `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema, the
/// binary datum.
///
/// Cheap to copy, `Send + Sync`; the schemas are parsed once per process.
pub struct Codec<T> {
    schema: &'static RecordSchema,
    _record: PhantomData<fn() -> T>,
}

/// Codec of [`UsageEvent`] (`schemas/avro/usage_event.avsc`, topic `llm.usage.v1`).
pub type UsageEventCodec = Codec<UsageEvent>;
/// Codec of [`SpendUpdate`] (`schemas/avro/spend_update.avsc`, topic `llm.spend.v1`).
pub type SpendUpdateCodec = Codec<SpendUpdate>;
/// Codec of [`BudgetSignal`] (`schemas/avro/budget_signal.avsc`, topic `llm.budget-signals.v1`).
pub type BudgetSignalCodec = Codec<BudgetSignal>;
/// Codec of [`LeaseRequest`] (`schemas/avro/lease_request.avsc`, topic `llm.lease-requests.v1`).
pub type LeaseRequestCodec = Codec<LeaseRequest>;
/// Codec of [`LeaseGrant`] (`schemas/avro/lease_grant.avsc`, topic `llm.lease-grants.v1`).
pub type LeaseGrantCodec = Codec<LeaseGrant>;

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Codec<T> {}

impl<T> fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec").field("schema", self.schema).finish()
    }
}

impl<T: AvroRecord> Codec<T> {
    /// Builds the codec: parses (once per process) the current schema and its history, and
    /// checks that both Avro implementations agree on the fingerprint and that the current
    /// schema reads every released version. An error here is a bug.
    pub fn new() -> Result<Self, SchemaError> {
        Ok(Codec { schema: schema_of::<T>()?, _record: PhantomData })
    }

    /// A codec over explicitly loaded schemas (see [`RecordSchema::load_with_history`]),
    /// e.g. with extra writer schemas; errors when they are not the schemas of `T`.
    pub fn with_schema(schema: &'static RecordSchema) -> Result<Self, SchemaError> {
        if schema.name() != T::NAME || schema.avsc() != T::AVSC {
            return Err(SchemaError::WrongRecord { record: T::NAME, found: schema.name().to_owned() });
        }
        Ok(Codec { schema, _record: PhantomData })
    }

    /// The schemas this codec writes and reads.
    pub fn schema(&self) -> &'static RecordSchema {
        self.schema
    }

    /// Encodes `value` as a new single-object message.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, SchemaError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Appends the single-object message of `value` to `out` (reuse `out` across calls to
    /// avoid allocations). On error `out` is left as it was.
    ///
    /// Timestamps are written with microsecond precision; sub-microsecond digits are dropped.
    pub fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.schema.fingerprint().bytes());
        let result = value.write_datum(self.schema.fast_schema(), out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Decodes a single-object message.
    ///
    /// Checks the marker and the writer fingerprint. Data written with the current schema is
    /// decoded directly (the hot path); data written with an older released schema is resolved
    /// to the current schema by Avro rules first; an unknown fingerprint is an error naming it.
    pub fn decode(&self, message: &[u8]) -> Result<T, SchemaError> {
        let (fingerprint, datum) = split_single_object(T::NAME, message)?;
        if fingerprint == self.schema.fingerprint() {
            return T::read_datum(self.schema.fast_schema(), datum);
        }
        match self.schema.older_writer(fingerprint) {
            Some(writer) => {
                let datum = self.transcode(fingerprint, &writer.schema, datum)?;
                T::read_datum(self.schema.fast_schema(), &datum)
            }
            None => Err(SchemaError::UnknownFingerprint {
                record: T::NAME,
                fingerprint,
                known: self.schema.known_fingerprints().iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Decodes a bare datum written with the current schema (no header).
    pub fn decode_datum(&self, datum: &[u8]) -> Result<T, SchemaError> {
        T::read_datum(self.schema.fast_schema(), datum)
    }

    /// Resolves a datum of an older writer schema to the current schema and re-encodes it.
    pub(crate) fn transcode(
        &self,
        fingerprint: Fingerprint,
        writer: &apache_avro::Schema,
        mut datum: &[u8],
    ) -> Result<Vec<u8>, SchemaError> {
        let record = T::NAME;
        let reader = self.schema.schema();
        let value = apache_avro::from_avro_datum(writer, &mut datum, Some(reader)).map_err(|e| SchemaError::Resolve {
            record,
            fingerprint,
            source: Box::new(e),
        })?;
        if !datum.is_empty() {
            return Err(SchemaError::TrailingBytes { record, count: datum.len() });
        }
        apache_avro::to_avro_datum(reader, value).map_err(|e| SchemaError::Transcode { record, fingerprint, source: Box::new(e) })
    }
}

impl Codec<UsageEvent> {
    /// Decodes a single-object message like [`Codec::decode`], but hands `read` a borrowed
    /// view of the event instead of allocating its strings: the processor's hot path. Data of
    /// an older writer schema is resolved first, as in [`Codec::decode`].
    pub fn decode_with<R>(&self, message: &[u8], read: impl FnOnce(&UsageEventRef<'_>) -> R) -> Result<R, SchemaError> {
        let (fingerprint, datum) = split_single_object(UsageEvent::NAME, message)?;
        if fingerprint == self.schema.fingerprint() {
            return crate::usage_fast::decode_then(datum, read);
        }
        match self.schema.older_writer(fingerprint) {
            Some(writer) => {
                let datum = self.transcode(fingerprint, &writer.schema, datum)?;
                crate::usage_fast::decode_then(&datum, read)
            }
            None => Err(SchemaError::UnknownFingerprint {
                record: UsageEvent::NAME,
                fingerprint,
                known: self.schema.known_fingerprints().iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}
