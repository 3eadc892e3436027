//! (d) Framing: wrong magic, truncation, unknown fingerprints and garbage give the right
//! error, never a panic. Also pins the fingerprint to the Avro specification.

mod common;

use common::*;
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_schema::{
    crc64_avro, fingerprint, parsing_canonical_form, split_single_object, AvroRecord, BudgetSignalCodec, Codec,
    Fingerprint, SchemaError, SpendUpdateCodec, UsageEventCodec, HEADER_LEN, MAGIC,
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
        assert!(matches!(err, SchemaError::Datum { .. }), "{len}: {err}");
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

#[test]
fn invalid_field_values_are_poison() {
    // Hand-written datums: a well-formed Avro datum whose money string is not exact.
    let c = UsageEventCodec::new().unwrap();
    let mut e = minimal_usage_event();
    e.provided_cost_usd = Some("1.5".parse().unwrap());
    let good = c.encode(&e).unwrap();
    let text = b"1.500000000000";
    let at = good.windows(text.len()).position(|w| w == text).unwrap();
    let mut bad = good.clone();
    bad[at..at + text.len()].copy_from_slice(b"1.5e-99999999");
    bad.splice(at + 13..at + text.len(), []);
    bad[at - 1] = 13 * 2; // zig-zag length of the 13-byte string
    let err = c.decode(&bad).unwrap_err();
    assert!(matches!(err, SchemaError::InvalidMoney { field: "provided_cost_usd", .. }), "{err}");
    assert!(err.is_poison());

    // An unknown budget period.
    let c = BudgetSignalCodec::new().unwrap();
    let mut g = full_budget_signal();
    g.period = ledger_core::signal::BudgetPeriod::Month;
    let good = c.encode(&g).unwrap();
    let at = good.windows(5).position(|w| w == b"month").unwrap();
    let mut bad = good.clone();
    bad[at..at + 5].copy_from_slice(b"years");
    let err = c.decode(&bad).unwrap_err();
    assert!(matches!(err, SchemaError::InvalidValue { field: "period", .. }), "{err}");

    // An enum index out of range.
    let mut g = full_budget_signal();
    g.state = ledger_core::signal::BudgetState::Block;
    let a = c.encode(&g).unwrap();
    g.state = ledger_core::signal::BudgetState::Ok;
    let b = c.encode(&g).unwrap();
    let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
    let mut bad = a.clone();
    bad[at] = 2 * 9; // symbol index 9
    assert!(matches!(c.decode(&bad).unwrap_err(), SchemaError::Datum { .. }));

    // A timestamp beyond chrono's range.
    let c = UsageEventCodec::new().unwrap();
    let mut e = minimal_usage_event();
    e.event_id = String::new();
    let good = c.encode(&e).unwrap();
    // Datum: event_id "" (1 byte 0x00), then event_time as a zig-zag varint.
    let mut bad = good[..HEADER_LEN + 1].to_vec();
    bad.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]); // i64::MAX
    let rest_at = HEADER_LEN + 1 + {
        let mut n = 0;
        while good[HEADER_LEN + 1 + n] & 0x80 != 0 {
            n += 1;
        }
        n + 1
    };
    bad.extend_from_slice(&good[rest_at..]);
    let err = c.decode(&bad).unwrap_err();
    assert!(matches!(err, SchemaError::TimestampOutOfRange { field: "event_time", micros: i64::MAX, .. }), "{err}");
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
        let cut = cut.index(bytes.len());
        let _ = c.decode(&bytes[..cut]);
    }
}
