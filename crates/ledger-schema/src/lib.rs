//! Avro schemas of the LLM usage ledger: encode, decode, single-object framing, compatibility
//! checks.
//!
//! The schemas in `schemas/avro/*.avsc` are the single source of truth; they are embedded at
//! build time, parsed once per process by apache-avro (the schema authority: parsing,
//! fingerprints, compatibility) and by serde_avro_fast (the hot-path datum codec).
//!
//! Messages use Avro single-object encoding: `C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint of the writer schema's Parsing Canonical Form, then the binary datum; usage
//! events may also use the Confluent wire format (`00`, a 4-byte big-endian registry schema id,
//! the datum), which readers tell apart by the first byte (see [`SchemaIds`]).
//!
//! ```
//! use ledger_schema::UsageEventCodec;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let codec = UsageEventCodec::new()?;
//! let event: ledger_core::UsageEvent = serde_json::from_str(
//!     r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme",
//!         "provider":"openai","request_model":"gpt-4o","input_tokens":1000,"output_tokens":300}"#,
//! )?;
//! let bytes = codec.encode(&event)?;
//! assert_eq!(&bytes[..2], &[0xC3, 0x01]);
//! assert_eq!(codec.decode(&bytes)?, event);
//! # Ok(())
//! # }
//! ```

mod codec;
mod confluent;
mod error;
mod lease_records;
mod records;
mod schema;
mod usage_fast;

pub use codec::{
    split_single_object, BudgetSignalCodec, Codec, LeaseGrantCodec, LeaseRequestCodec, SpendUpdateCodec, UsageEventCodec,
    HEADER_LEN, MAGIC,
};
pub use confluent::{
    confluent_schema_id, split_confluent, Framing, IdWriter, OtherWriter, SchemaIds, WireFormat, CONFLUENT_HEADER_LEN,
    CONFLUENT_MAGIC,
};
pub use error::{Fingerprint, SchemaError};
pub use schema::{
    check_backward_compatible, crc64_avro, fingerprint, parsing_canonical_form, schema_of, AvroRecord, RecordSchema,
};
