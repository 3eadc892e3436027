//! (d) Framing: wrong magic, truncation, unknown fingerprints and garbage give the right
//! error, never a panic. Also pins the fingerprint to the Avro specification.

mod common;

use common::*;
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_schema::{
    crc64_avro, fingerprint, parsing_canonical_form, split_single_object, AvroRecord, BudgetSignalCodec, Codec, Fingerprint,
    SchemaError, SpendUpdateCodec, UsageEventCodec, HEADER_LEN, MAGIC,
};
use proptest::prelude::*;

#[test]
fn wrong_magic() {
    let c = UsageEventCodec::new().unwrap();
    let mut bytes = c.encode(&full_usage_event()).unwrap();
    bytes[0] = 0x00;
    let err = c.decode(&bytes).unwrap_err();
    assert!(matches!(err, SchemaError::BadMagic { found: [0x00, 0x01], .. }), "{err}");
    assert!(err.is_poison());
    assert!(err.to_string().contains("expected c3 01"), "{err}");
    // JSON sent to an Avro topic.
    let err = c.decode(br#"{"event_id":"e1"}"#).unwrap_err();
    assert!(matches!(err, SchemaError::BadMagic { found: [b'{', b'"'], .. }), "{err}");
}

#[test]
fn truncated_header_and_datum() {
    let c = UsageEventCodec::new().unwrap();
    let bytes = c.encode(&full_usage_event()).unwrap();
    for len in 0..HEADER_LEN {
        let err = c.decode(&bytes[..len]).unwrap_err();
        assert!(matches!(err, SchemaError::Truncated { len: l, .. } if l == len), "{len}: {err}");
        assert!(err.is_poison());
    }
    for len in HEADER_LEN..bytes.len() {
        let err = c.decode(&bytes[..len]).unwrap_err();
        // The UsageEvent hot path (the usage_fast module) names the field it stopped in.
        assert!(matches!(err, SchemaError::Datum { .. } | SchemaError::InvalidValue { .. }), "{len}: {err}");
        assert!(err.is_poison());
    }
}

#[test]
fn trailing_bytes() {
    let c = SpendUpdateCodec::new().unwrap();
    let mut bytes = c.encode(&full_spend_update()).unwrap();
    bytes.extend_from_slice(&[0, 0]);
    let err = c.decode(&bytes).unwrap_err();
    assert!(matches!(err, SchemaError::TrailingBytes { count: 2, .. }), "{err}");
}

#[test]
fn unknown_fingerprint_is_named() {
    let c = UsageEventCodec::new().unwrap();
    let mut bytes = c.encode(&full_usage_event()).unwrap();
    bytes[2..HEADER_LEN].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    let err = c.decode(&bytes).unwrap_err();
    match &err {
        SchemaError::UnknownFingerprint { record, fingerprint, known } => {
            assert_eq!(*record, "UsageEvent");
            assert_eq!(fingerprint.value(), 0x0123_4567_89ab_cdef);
            assert!(known.contains(&c.schema().fingerprint().to_string()));
        }
        other => panic!("{other}"),
    }
    assert!(err.is_poison());
    assert!(err.to_string().contains("0x0123456789abcdef"), "{err}");
    // A message of another record type is an unknown fingerprint too.
    let spend = SpendUpdateCodec::new().unwrap().encode(&full_spend_update()).unwrap();
    assert!(matches!(c.decode(&spend).unwrap_err(), SchemaError::UnknownFingerprint { .. }));
}

/// Frames a reference `Value` (written by apache-avro) after replacing one field.
fn framed_with<T: AvroRecord>(value: apache_avro::types::Value, field: &str, replacement: apache_avro::types::Value) -> Vec<u8> {
    let mut value = value;
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields.iter_mut().find(|(k, _)| k == field).unwrap().1 = replacement;
    }
    let schema = ledger_schema::schema_of::<T>().unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&schema.fingerprint().bytes());
    out.extend(apache_avro::to_avro_datum(schema.schema(), value).unwrap());
    out
}

#[test]
fn invalid_field_values_are_poison() {
    use apache_avro::types::Value;
    let c = UsageEventCodec::new().unwrap();
    for bad_money in ["abc", "0.0000000000001", "1e99999", "", "1.5.5"] {
        let bytes = framed_with::<UsageEvent>(
            usage_to_value(&full_usage_event()),
            "provided_cost_usd",
            Value::Union(1, Box::new(Value::String(bad_money.into()))),
        );
        let err = c.decode(&bytes).unwrap_err();
        assert!(matches!(err, SchemaError::InvalidMoney { field: "provided_cost_usd", .. }), "{bad_money}: {err}");
        assert!(err.is_poison());
    }
    // Plain decimals with up to 12 fractional digits, signs and exponents are accepted.
    for good_money in ["1", "-0.5", "0.000000000001", "2.5e-06", "12.340000000000000"] {
        let bytes = framed_with::<UsageEvent>(
            usage_to_value(&full_usage_event()),
            "provided_cost_usd",
            Value::Union(1, Box::new(Value::String(good_money.into()))),
        );
        assert_eq!(c.decode(&bytes).unwrap().provided_cost_usd, Some(good_money.parse().unwrap()));
    }

    let bytes = framed_with::<UsageEvent>(usage_to_value(&full_usage_event()), "event_time", Value::TimestampMicros(i64::MAX));
    let err = c.decode(&bytes).unwrap_err();
    assert!(matches!(err, SchemaError::TimestampOutOfRange { field: "event_time", micros: i64::MAX, .. }), "{err}");
    assert!(err.is_poison());

    let c = BudgetSignalCodec::new().unwrap();
    let bytes = framed_with::<BudgetSignal>(signal_to_value(&full_budget_signal()), "period", Value::String("year".into()));
    let err = c.decode(&bytes).unwrap_err();
    assert!(matches!(err, SchemaError::InvalidValue { field: "period", .. }), "{err}");
    let bytes = framed_with::<BudgetSignal>(
        signal_to_value(&full_budget_signal()),
        "throttle_fraction_ppm",
        Value::Union(1, Box::new(Value::Int(-1))),
    );
    let err = c.decode(&bytes).unwrap_err();
    assert!(matches!(err, SchemaError::InvalidValue { field: "throttle_fraction_ppm", .. }), "{err}");

    // An enum index out of range (apache-avro cannot write one: patch the byte).
    let mut g = full_budget_signal();
    g.state = ledger_core::signal::BudgetState::Block;
    let a = c.encode(&g).unwrap();
    g.state = ledger_core::signal::BudgetState::Ok;
    let b = c.encode(&g).unwrap();
    let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
    let mut bad = a.clone();
    bad[at] = 2 * 9; // zig-zag symbol index 9
    let err = c.decode(&bad).unwrap_err();
    assert!(matches!(err, SchemaError::Datum { .. }), "{err}");
}

#[test]
fn fingerprint_follows_the_avro_specification() {
    // Reference values of Avro's share/test/data/schema-tests.txt (Java implementation).
    let int = apache_avro::Schema::parse_str(r#""int""#).unwrap();
    assert_eq!(fingerprint(&int).value() as i64, 8247732601305521295);
    assert_eq!(fingerprint(&int).bytes(), [0x8f, 0x5c, 0x39, 0x3f, 0x1a, 0xd5, 0x75, 0x72]);
    // Our CRC is apache-avro's Rabin on the same input.
    for s in [r#""int""#, UsageEvent::AVSC, SpendUpdate::AVSC, BudgetSignal::AVSC] {
        let schema = apache_avro::Schema::parse_str(s).unwrap();
        let apache = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
        assert_eq!(crc64_avro(schema.canonical_form().as_bytes()).to_le_bytes().to_vec(), apache);
    }
    // Logical types are not part of the Parsing Canonical Form ([PRIMITIVES] + [STRIP]).
    let ts = apache_avro::Schema::parse_str(r#"{"type":"long","logicalType":"timestamp-micros"}"#).unwrap();
    let long = apache_avro::Schema::parse_str(r#""long""#).unwrap();
    assert_eq!(parsing_canonical_form(&ts), r#""long""#);
    assert_eq!(fingerprint(&ts), fingerprint(&long));
    // serde_avro_fast (which follows the Java reference) agrees for every record schema.
    for s in [UsageEvent::AVSC, SpendUpdate::AVSC, BudgetSignal::AVSC] {
        let fast: serde_avro_fast::Schema = s.parse().unwrap();
        let apache = apache_avro::Schema::parse_str(s).unwrap();
        assert_eq!(fingerprint(&apache), Fingerprint(*fast.rabin_fingerprint()));
        assert!(!parsing_canonical_form(&apache).contains("{\"type\":\"long\"}"));
    }
}

#[test]
fn header_layout() {
    let c = UsageEventCodec::new().unwrap();
    let bytes = c.encode(&minimal_usage_event()).unwrap();
    let (fp, datum) = split_single_object("UsageEvent", &bytes).unwrap();
    assert_eq!(&bytes[..2], &MAGIC);
    assert_eq!(fp, c.schema().fingerprint());
    assert_eq!(u64::from_le_bytes(bytes[2..10].try_into().unwrap()), fp.value());
    assert_eq!(c.decode_datum(datum).unwrap(), minimal_usage_event());
}

fn never_panics<T: AvroRecord + std::fmt::Debug>(codec: &Codec<T>, bytes: &[u8]) {
    // Only the outcome matters: any error, no panic, no hang.
    let _ = codec.decode(bytes);
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(&codec.schema().fingerprint().bytes());
    framed.extend_from_slice(bytes);
    if let Err(e) = codec.decode(&framed) {
        assert!(e.is_poison(), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        never_panics(&UsageEventCodec::new().unwrap(), &bytes);
        never_panics(&SpendUpdateCodec::new().unwrap(), &bytes);
        never_panics(&BudgetSignalCodec::new().unwrap(), &bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        e in usage_event(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let c = UsageEventCodec::new().unwrap();
        let mut bytes = c.encode(&e).unwrap();
        for (i, b) in flips {
            let i = HEADER_LEN + i.index(bytes.len() - HEADER_LEN);
            bytes[i] = b;
        }
        if let Err(e) = c.decode(&bytes) {
            prop_assert!(e.is_poison(), "{}", e);
        }
        // The borrowed path fails exactly when the owned one does, with the same error.
        let owned = c.decode(&bytes);
        let view = c.decode_with(&bytes, |v| v.to_owned_event());
        prop_assert_eq!(owned.map_err(|e| e.to_string()), view.map_err(|e| e.to_string()));
        let cut = cut.index(bytes.len());
        let _ = c.decode(&bytes[..cut]);
    }
}
