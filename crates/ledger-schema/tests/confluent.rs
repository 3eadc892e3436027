//! (e) The Confluent wire format: `00`, a 4-byte big-endian schema id, the datum. Readers of
//! both framings decode it through the schema-id table: the current schema on the fast path,
//! another readable writer by Avro resolution, anything else as poison naming the id.

mod common;

use apache_avro::Schema;
use common::*;
use ledger_core::UsageEvent;
use ledger_schema::{
    confluent_schema_id, schema_of, split_confluent, AvroRecord, IdWriter, SchemaError, SchemaIds, UsageEventCodec, WireFormat,
    CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC,
};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

fn table() -> SchemaIds {
    let mut ids = SchemaIds::new("not in this test's table");
    ids.insert(7, IdWriter::Current);
    ids
}

/// The current schema with `edit` applied to its field list.
fn edited(edit: impl FnOnce(&mut Vec<Json>)) -> String {
    let mut json: Json = serde_json::from_str(UsageEvent::AVSC).unwrap();
    edit(json["fields"].as_array_mut().unwrap());
    json.to_string()
}

#[test]
fn header_layout_and_both_framings_decode_alike() {
    let c = UsageEventCodec::new().unwrap();
    let event = full_usage_event();
    let confluent = c.encode_framed(&event, WireFormat::Confluent { schema_id: 0x0102_0304 }).unwrap();
    let single = c.encode(&event).unwrap();
    assert_eq!(&confluent[..CONFLUENT_HEADER_LEN], &[CONFLUENT_MAGIC, 1, 2, 3, 4]);
    assert_eq!(&confluent[CONFLUENT_HEADER_LEN..], &single[ledger_schema::HEADER_LEN..], "the same datum");
    assert_eq!(confluent_schema_id(&confluent), Some(0x0102_0304));
    assert_eq!(confluent_schema_id(&single), None);
    assert_eq!(split_confluent("UsageEvent", &confluent).unwrap().0, 0x0102_0304);
    assert_eq!(c.encode_framed(&event, WireFormat::SingleObject).unwrap(), single);

    let ids = table();
    let confluent = c.encode_framed(&event, WireFormat::Confluent { schema_id: 7 }).unwrap();
    for message in [&confluent, &single] {
        assert_eq!(c.decode_framed(&ids, message).unwrap(), event);
        assert_eq!(c.decode_framed_with(&ids, message, |e| e.to_owned_event()).unwrap(), event);
    }
}

#[test]
fn an_id_of_another_readable_schema_is_resolved_and_an_unreadable_one_is_poison() {
    let schema = schema_of::<UsageEvent>().unwrap();
    let c = UsageEventCodec::new().unwrap();
    let older = edited(|f| f.retain(|x| x["name"] != "trace_id" && x["name"] != "routed_from_model"));
    // The registry's copy may differ in layout and documentation only: still the current schema.
    let reformatted = serde_json::to_string_pretty(
        &serde_json::from_str::<Json>(&edited(|f| {
            f[0]["doc"] = json!("reworded");
        }))
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(schema.id_writer(&reformatted), IdWriter::Current));
    // A writer without a field the current schema needs (no default): unreadable.
    let incompatible = edited(|f| f.retain(|x| x["name"] != "event_id"));
    let mut ids = table();
    ids.insert(3, schema.id_writer(&older));
    ids.insert(4, schema.id_writer(&incompatible));
    ids.insert(5, schema.id_writer("not json"));
    assert!(matches!(ids.get(3), Some(IdWriter::Older(_))), "{:?}", ids.get(3));

    let event = full_usage_event();
    let writer = Schema::parse_str(&older).unwrap();
    let mut value = usage_to_value(&event);
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields.retain(|(k, _)| k != "trace_id" && k != "routed_from_model");
    }
    let mut message = vec![CONFLUENT_MAGIC, 0, 0, 0, 3];
    message.extend(apache_avro::to_avro_datum(&writer, value).unwrap());
    let mut expected = event.clone();
    expected.trace_id = None;
    expected.routed_from_model = None;
    assert_eq!(c.decode_framed(&ids, &message).unwrap(), expected);
    assert_eq!(c.decode_framed_with(&ids, &message, |e| e.to_owned_event()).unwrap(), expected);
    // A corrupt datum of that writer: poison, not a panic.
    assert!(c.decode_framed(&ids, &message[..CONFLUENT_HEADER_LEN + 5]).unwrap_err().is_poison());

    for (id, says) in [
        (4, "cannot be read as the current UsageEvent schema"),
        (5, "not an Avro schema"),
        (9, "unknown (not in this test's table)"),
    ] {
        message[1..CONFLUENT_HEADER_LEN].copy_from_slice(&u32::to_be_bytes(id));
        let err = c.decode_framed_with(&ids, &message, |_| ()).unwrap_err();
        assert!(matches!(err, SchemaError::SchemaId { id: i, .. } if i == id), "{err}");
        assert!(err.is_poison() && err.to_string().contains(&format!("Confluent schema id {id}: ")), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn short_and_foreign_messages_are_poison() {
    let (c, ids) = (UsageEventCodec::new().unwrap(), table());
    for short in [&[0u8][..], &[0, 0, 0, 7]] {
        let err = c.decode_framed(&ids, short).unwrap_err();
        assert!(matches!(err, SchemaError::ConfluentTruncated { .. }) && err.is_poison(), "{err}");
    }
    let err = c.decode_framed_with(&ids, br#"{"event_id":"e1"}"#, |_| ()).unwrap_err();
    assert!(matches!(err, SchemaError::UnknownFraming { first: b'{', .. }) && err.is_poison(), "{err}");
    assert!(err.to_string().contains("neither Avro single-object (c3 01) nor Confluent wire format (00)"), "{err}");
    assert!(matches!(c.decode_framed(&ids, &[]).unwrap_err(), SchemaError::Truncated { len: 0, .. }));
    // The header, then a datum cut short: the fast path names where it stopped.
    let message = c.encode_framed(&full_usage_event(), WireFormat::Confluent { schema_id: 7 }).unwrap();
    for len in CONFLUENT_HEADER_LEN..message.len() {
        assert!(c.decode_framed(&ids, &message[..len]).unwrap_err().is_poison(), "{len}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn confluent_messages_round_trip(event in usage_event(), id in any::<u32>()) {
        let c = UsageEventCodec::new().unwrap();
        let mut ids = SchemaIds::new("-");
        ids.insert(id, IdWriter::Current);
        let message = c.encode_framed(&event, WireFormat::Confluent { schema_id: id }).unwrap();
        prop_assert_eq!(c.decode_framed(&ids, &message).unwrap(), event);
    }

    #[test]
    fn mutated_confluent_messages_never_panic(event in usage_event(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let c = UsageEventCodec::new().unwrap();
        let mut message = c.encode_framed(&event, WireFormat::Confluent { schema_id: 7 }).unwrap();
        for (at, byte) in flips {
            let i = at % message.len();
            message[i] = byte;
        }
        let ids = table();
        if let Err(e) = c.decode_framed_with(&ids, &message, |e| e.event_id.len()) {
            prop_assert!(e.is_poison(), "{}", e);
        }
    }
}
