//! Parsed schemas: the current (reader and writer) schema of each record and the released
//! writer schemas it can still read.

use std::fmt;
use std::sync::OnceLock;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::error::{Fingerprint, SchemaError};

/// A record type with an Avro schema in `schemas/avro/`.
///
/// Implemented in this crate for [`ledger_core::UsageEvent`],
/// [`ledger_core::spend::SpendUpdate`] and [`ledger_core::signal::BudgetSignal`]; the
/// `#[doc(hidden)]` methods are the datum mapping and not meant to be implemented elsewhere.
pub trait AvroRecord: Sized + 'static {
    /// The Avro record name (without namespace), e.g. `UsageEvent`.
    const NAME: &'static str;
    /// The current schema (`schemas/avro/<name>.avsc`): the writer schema of `encode` and the
    /// reader schema of `decode`.
    const AVSC: &'static str;
    /// Every released version (`schemas/avro/history/<name>/v*.avsc`), oldest first. `decode`
    /// reads data written with any of them; adding a version is one line here.
    const HISTORY: &'static [&'static str];

    #[doc(hidden)]
    fn schema_cell() -> &'static OnceLock<RecordSchema>;

    #[doc(hidden)]
    fn write_datum(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), SchemaError>;

    #[doc(hidden)]
    fn read_datum(schema: &serde_avro_fast::Schema, datum: &[u8]) -> Result<Self, SchemaError>;
}

/// A known writer schema other than the current one, read by Avro resolution rules.
pub(crate) struct WriterSchema {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) schema: Schema,
}

/// The parsed schemas of one record type: parsed once per process (see [`schema_of`]).
pub struct RecordSchema {
    name: &'static str,
    avsc: &'static str,
    schema: Schema,
    fast: serde_avro_fast::Schema,
    fingerprint: Fingerprint,
    pub(crate) older_writers: Vec<WriterSchema>,
}

impl fmt::Debug for RecordSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSchema")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .field("older_writers", &self.older_writers.iter().map(|w| w.fingerprint).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RecordSchema {
    /// The record name, e.g. `UsageEvent`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The schema text as embedded from `schemas/avro/`.
    pub fn avsc(&self) -> &'static str {
        self.avsc
    }

    /// The current schema, parsed by apache-avro (the schema authority).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The current schema, parsed by serde_avro_fast (the hot-path codec).
    pub fn fast_schema(&self) -> &serde_avro_fast::Schema {
        &self.fast
    }

    /// Fingerprint of the current schema: what `encode` writes after `C3 01`.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Every fingerprint `decode` accepts: the current one first, then older writers.
    pub fn known_fingerprints(&self) -> Vec<Fingerprint> {
        std::iter::once(self.fingerprint).chain(self.older_writers.iter().map(|w| w.fingerprint)).collect()
    }

    /// Parses the current schema and the history of `T` and checks that the current schema
    /// reads every history version. Prefer [`schema_of`], which does this once per process.
    pub fn load<T: AvroRecord>() -> Result<RecordSchema, SchemaError> {
        Self::load_with_history::<T>(T::HISTORY)
    }

    /// Like [`RecordSchema::load`] with an explicit list of writer schemas instead of
    /// `T::HISTORY` (for tests and tools that read data of unreleased or foreign versions).
    pub fn load_with_history<T: AvroRecord>(history: &[&str]) -> Result<RecordSchema, SchemaError> {
        let record = T::NAME;
        let schema = parse(record, T::AVSC)?;
        match &schema {
            Schema::Record(r) if r.name.name == record => {}
            other => {
                return Err(SchemaError::WrongRecord { record, found: format!("{:?}", other.name()) });
            }
        }
        let fingerprint = fingerprint(&schema);
        let fast: serde_avro_fast::Schema = T::AVSC.parse().map_err(|source| SchemaError::FastSchemaParse { record, source })?;
        let fast_fingerprint = Fingerprint(*fast.rabin_fingerprint());
        if fast_fingerprint != fingerprint {
            return Err(SchemaError::FingerprintMismatch { record, apache: fingerprint, fast: fast_fingerprint });
        }
        let mut older_writers: Vec<WriterSchema> = Vec::new();
        for avsc in history {
            let writer = parse(record, avsc)?;
            let writer_fingerprint = check_can_read(record, &writer, &schema)?;
            if writer_fingerprint != fingerprint && older_writers.iter().all(|w| w.fingerprint != writer_fingerprint) {
                older_writers.push(WriterSchema { fingerprint: writer_fingerprint, schema: writer });
            }
        }
        Ok(RecordSchema { name: record, avsc: T::AVSC, schema, fast, fingerprint, older_writers })
    }

    pub(crate) fn older_writer(&self, fingerprint: Fingerprint) -> Option<&WriterSchema> {
        self.older_writers.iter().find(|w| w.fingerprint == fingerprint)
    }
}

/// The parsed schemas of `T`, parsed and checked once per process.
pub fn schema_of<T: AvroRecord>() -> Result<&'static RecordSchema, SchemaError> {
    let cell = T::schema_cell();
    if let Some(s) = cell.get() {
        return Ok(s);
    }
    let loaded = RecordSchema::load::<T>()?;
    Ok(cell.get_or_init(|| loaded))
}

/// CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form, as the Avro
/// specification and the Java reference implementation define it.
///
/// apache-avro 0.21's `Schema::canonical_form` strips `logicalType` but then leaves a
/// primitive with a logical type as `{"type":"long"}` instead of reducing it to `"long"` (the
/// specification's `[PRIMITIVES]` rule), so its `fingerprint::<Rabin>()` differs from Java's,
/// Python's and serde_avro_fast's for every schema with a timestamp. This function applies the
/// missing reduction before hashing; [`RecordSchema::load`] cross-checks the result against
/// serde_avro_fast.
pub fn fingerprint(schema: &Schema) -> Fingerprint {
    Fingerprint(crc64_avro(parsing_canonical_form(schema).as_bytes()).to_le_bytes())
}

/// The CRC-64-AVRO (Rabin) fingerprint of `bytes`, as the Avro specification's reference
/// algorithm computes it (the same function as `apache_avro::rabin::Rabin`).
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    let mut fp = CRC64_AVRO_EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ CRC64_AVRO_TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

const CRC64_AVRO_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const CRC64_AVRO_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & 0u64.wrapping_sub(fp & 1));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The Parsing Canonical Form of `schema` as the Avro specification defines it (apache-avro's,
/// with primitives that carried a logical type reduced to their simple form).
pub fn parsing_canonical_form(schema: &Schema) -> String {
    let mut canonical = schema.canonical_form();
    // In canonical form `{"type":"<primitive>"}` can only be a primitive whose other attributes
    // (logicalType, ...) were stripped: names, fields and arrays always carry other keys, and
    // names and symbols cannot contain quotes or braces.
    for primitive in ["null", "boolean", "int", "long", "float", "double", "bytes", "string"] {
        let long_form = format!("{{\"type\":\"{primitive}\"}}");
        if canonical.contains(&long_form) {
            canonical = canonical.replace(&long_form, &format!("\"{primitive}\""));
        }
    }
    canonical
}

/// Checks that data written with `writer_avsc` can be read with `reader_avsc` by Avro
/// resolution rules (backward compatibility of `reader` with `writer`). Returns the writer's
/// fingerprint. `record` only labels the error.
pub fn check_backward_compatible(record: &'static str, writer_avsc: &str, reader_avsc: &str) -> Result<Fingerprint, SchemaError> {
    let writer = parse(record, writer_avsc)?;
    let reader = parse(record, reader_avsc)?;
    check_can_read(record, &writer, &reader)
}

pub(crate) fn check_can_read(record: &'static str, writer: &Schema, reader: &Schema) -> Result<Fingerprint, SchemaError> {
    let writer_fingerprint = fingerprint(writer);
    SchemaCompatibility::can_read(writer, reader).map_err(|e| SchemaError::Incompatible {
        record,
        writer: writer_fingerprint,
        detail: e.to_string(),
    })?;
    Ok(writer_fingerprint)
}

fn parse(record: &'static str, avsc: &str) -> Result<Schema, SchemaError> {
    Schema::parse_str(avsc).map_err(|e| SchemaError::SchemaParse { record, source: Box::new(e) })
}
