//! (a) Every record type round-trips through its `.avsc`, and the fast codec agrees with the
//! apache-avro reference encoding in both directions, for arbitrary values.

mod common;

use apache_avro::{from_avro_datum, to_avro_datum};
use common::*;
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_schema::{
    AvroRecord, BudgetSignalCodec, Codec, LeaseGrantCodec, LeaseRequestCodec, SpendUpdateCodec, UsageEventCodec, HEADER_LEN,
    MAGIC,
};
use proptest::prelude::*;

/// Encode with the fast path, check the header, decode, and compare.
fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(codec: &Codec<T>, value: &T) {
    let bytes = codec.encode(value).unwrap();
    assert_eq!(&bytes[..2], &MAGIC);
    assert_eq!(&bytes[2..HEADER_LEN], &codec.schema().fingerprint().bytes());
    assert_eq!(&codec.decode(&bytes).unwrap(), value);
    // encode_into appends and equals encode.
    let mut buf = vec![1, 2, 3];
    codec.encode_into(value, &mut buf).unwrap();
    assert_eq!(&buf[..3], &[1, 2, 3]);
    assert_eq!(&buf[3..], &bytes[..]);
}

/// The fast path and the apache-avro reference agree in both directions.
fn agree<T: AvroRecord + PartialEq + std::fmt::Debug>(
    codec: &Codec<T>,
    value: &T,
    to_value: fn(&T) -> apache_avro::types::Value,
    from_value: fn(apache_avro::types::Value) -> T,
) {
    let schema = codec.schema().schema();
    let reference = to_value(value);
    assert!(reference.validate(schema), "reference value does not validate: {value:?}");
    // apache-avro writes, the fast path reads.
    let datum = to_avro_datum(schema, reference).unwrap();
    assert_eq!(&codec.decode_datum(&datum).unwrap(), value);
    // the fast path writes, apache-avro reads.
    let bytes = codec.encode(value).unwrap();
    let fast_datum = &bytes[HEADER_LEN..];
    let mut reader = fast_datum;
    let read = from_avro_datum(schema, &mut reader, None).unwrap();
    assert!(reader.is_empty(), "apache-avro left {} bytes", reader.len());
    assert_eq!(&from_value(read), value);
    // Same bytes up to map entry order (apache-avro's maps are hash maps).
    assert_eq!(datum.len(), fast_datum.len());
}

#[test]
fn fixed_values_round_trip() {
    let c = UsageEventCodec::new().unwrap();
    round_trip(&c, &full_usage_event());
    round_trip(&c, &minimal_usage_event());
    let mut unicode = full_usage_event();
    unicode.attribution.tenant_id = "テナント-ü-🦀".into();
    unicode.tags.insert("".into(), "".into());
    unicode.tags.insert("emoji 🎉".into(), "\u{0}\u{ffff}".into());
    round_trip(&c, &unicode);
    agree(&c, &unicode, usage_to_value, usage_from_value);

    let c = SpendUpdateCodec::new().unwrap();
    let full = full_spend_update();
    round_trip(&c, &full);
    let mut none = full.clone();
    (
        none.scope.attribution.team,
        none.scope.attribution.project,
        none.scope.attribution.user_id,
        none.scope.attribution.api_key_id,
        none.scope.model,
    ) = (None, None, None, None, None);
    round_trip(&c, &none);

    let c = BudgetSignalCodec::new().unwrap();
    let full = full_budget_signal();
    round_trip(&c, &full);
    let mut none = full.clone();
    none.scope_fields.clear();
    none.reroute.clear();
    (none.limit_usd, none.remaining_usd, none.limit_tokens) = (None, None, None);
    (none.projected_exhaustion, none.throttle_fraction_ppm, none.retry_after_ms) = (None, None, None);
    round_trip(&c, &none);
}

#[test]
fn lease_records_round_trip_and_apache_avro_reads_them() {
    let c = LeaseRequestCodec::new().unwrap();
    let full = full_lease_request();
    round_trip(&c, &full);
    let bytes = c.encode(&full).unwrap();
    let v = from_avro_datum(c.schema().schema(), &mut &bytes[HEADER_LEN..], None).unwrap();
    assert!(v.validate(c.schema().schema()));
    let mut only_returns = full.clone();
    (only_returns.wanted_usd, only_returns.least_usd) = (Default::default(), Default::default());
    only_returns.returns.truncate(1);
    round_trip(&c, &only_returns);
    only_returns.returns.clear();
    round_trip(&c, &only_returns);

    let c = LeaseGrantCodec::new().unwrap();
    let full = full_lease_grant();
    round_trip(&c, &full);
    let bytes = c.encode(&full).unwrap();
    assert!(from_avro_datum(c.schema().schema(), &mut &bytes[HEADER_LEN..], None).unwrap().validate(c.schema().schema()));
    for status in ledger_core::lease::LeaseStatus::ALL {
        round_trip(&c, &ledger_core::lease::LeaseGrant { status, ..full.clone() });
    }
}

#[test]
fn minimal_event_has_schema_defaults() {
    let e = minimal_usage_event();
    let c = UsageEventCodec::new().unwrap();
    let back = c.decode(&c.encode(&e).unwrap()).unwrap();
    assert_eq!(back.operation, "chat");
    assert_eq!(back.status, "ok");
    assert!(back.tags.is_empty() && back.attribution.team.is_none() && back.provided_cost_usd.is_none());
}

#[test]
fn fast_and_reference_bytes_are_identical_without_multi_entry_maps() {
    let c = UsageEventCodec::new().unwrap();
    let mut e = full_usage_event();
    e.tags.retain(|k, _| k == "region");
    let reference = to_avro_datum(c.schema().schema(), usage_to_value(&e)).unwrap();
    assert_eq!(&c.encode(&e).unwrap()[HEADER_LEN..], &reference[..]);
    let c = BudgetSignalCodec::new().unwrap();
    let mut g = full_budget_signal();
    g.scope_fields.retain(|k, _| k == "team");
    let reference = to_avro_datum(c.schema().schema(), signal_to_value(&g)).unwrap();
    assert_eq!(&c.encode(&g).unwrap()[HEADER_LEN..], &reference[..]);
    let c = SpendUpdateCodec::new().unwrap();
    let u = full_spend_update();
    let reference = to_avro_datum(c.schema().schema(), spend_to_value(&u)).unwrap();
    assert_eq!(&c.encode(&u).unwrap()[HEADER_LEN..], &reference[..]);
}

#[test]
fn sub_microsecond_precision_is_truncated() {
    let c = UsageEventCodec::new().unwrap();
    let mut e = minimal_usage_event();
    e.event_time = t("2026-11-01T12:00:00.123456789Z");
    let back = c.decode(&c.encode(&e).unwrap()).unwrap();
    assert_eq!(back.event_time, t("2026-11-01T12:00:00.123456Z"));
}

#[test]
fn money_min_is_refused_not_written() {
    // `Money` displays i128::MIN pico-dollars but cannot parse it back (ledger-core), so the
    // codec refuses to write a message it could not read.
    let c = UsageEventCodec::new().unwrap();
    let mut e = minimal_usage_event();
    e.provided_cost_usd = Some(ledger_core::Money::from_picos(i128::MIN));
    let mut out = vec![7];
    let err = c.encode_into(&e, &mut out).unwrap_err();
    assert!(matches!(err, ledger_schema::SchemaError::Unencodable { field: "provided_cost_usd", .. }), "{err}");
    assert!(!err.is_poison());
    assert_eq!(out, vec![7], "a failed encode_into leaves the buffer as it was");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn usage_events_round_trip_and_agree_with_apache_avro(e in usage_event()) {
        let c = UsageEventCodec::new().unwrap();
        round_trip(&c, &e);
        agree::<UsageEvent>(&c, &e, usage_to_value, usage_from_value);
        // The borrowed view the processor prices from reads the same event, and the owned
        // event's view is the same view.
        let bytes = c.encode(&e).unwrap();
        let (owned, view_validation) = c.decode_with(&bytes, |v| (v.to_owned_event(), v.validate())).unwrap();
        prop_assert_eq!(&owned, &e);
        prop_assert_eq!(view_validation, e.validate());
        prop_assert!(c.decode_with(&bytes, |v| *v == e.as_view()).unwrap());
        // The hand-written writer's bytes are apache-avro's exactly (with at most one tag, the
        // order of map entries cannot differ).
        let mut one_tag = e.clone();
        one_tag.tags = e.tags.iter().take(1).map(|(k, v)| (k.clone(), v.clone())).collect();
        let reference = to_avro_datum(c.schema().schema(), usage_to_value(&one_tag)).unwrap();
        prop_assert_eq!(&c.encode(&one_tag).unwrap()[HEADER_LEN..], &reference[..]);
    }

    #[test]
    fn spend_updates_round_trip_and_agree_with_apache_avro(u in spend_update()) {
        let c = SpendUpdateCodec::new().unwrap();
        round_trip(&c, &u);
        agree::<SpendUpdate>(&c, &u, spend_to_value, spend_from_value);
    }

    #[test]
    fn budget_signals_round_trip_and_agree_with_apache_avro(g in budget_signal()) {
        let c = BudgetSignalCodec::new().unwrap();
        round_trip(&c, &g);
        agree::<BudgetSignal>(&c, &g, signal_to_value, signal_from_value);
    }
}
