//! Avro schemas of the LLM usage ledger: encode, decode, single-object framing, compatibility checks.
