//! (c) Backward compatibility: the current schema reads data written with every released
//! version under `schemas/avro/history/<name>/`, and the check rejects breaking changes.

mod common;

use std::path::PathBuf;

use apache_avro::Schema;
use common::*;
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_schema::{
    check_backward_compatible, fingerprint, AvroRecord, Codec, RecordSchema, SchemaError, UsageEventCodec, HEADER_LEN, MAGIC,
};
use serde_json::{json, Value as Json};

fn history_dir(file_stem: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/avro/history").join(file_stem)
}

/// Every `v<N>.avsc` in the history directory, sorted by N.
fn history_files(file_stem: &str) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = std::fs::read_dir(history_dir(file_stem))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            let n: u32 = stem.strip_prefix('v').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad name {p:?}"));
            (n, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn check_history<T: AvroRecord>(file_stem: &str) {
    let files = history_files(file_stem);
    assert!(!files.is_empty(), "{}: no released schema under history/{file_stem}", T::NAME);
    let versions: Vec<u32> = files.iter().map(|(n, _)| *n).collect();
    assert_eq!(versions, (1..=files.len() as u32).collect::<Vec<_>>(), "{}: versions are v1..vN", T::NAME);
    // The current schema reads every released version.
    for (n, avsc) in &files {
        check_backward_compatible(T::NAME, avsc, T::AVSC)
            .unwrap_or_else(|e| panic!("{}: current schema cannot read history v{n}: {e}", T::NAME));
    }
    // The newest released version is the current schema: a schema change must be released by
    // copying it into history/ (which also makes it a known writer of `decode`).
    let current = fingerprint(&Schema::parse_str(T::AVSC).unwrap());
    let newest = fingerprint(&Schema::parse_str(&files.last().unwrap().1).unwrap());
    assert_eq!(newest, current, "{}: copy the current schema to history/{file_stem}/v{}.avsc", T::NAME, files.len() + 1);
    // The codec knows every released version as a writer.
    assert_eq!(T::HISTORY.len(), files.len(), "{}: list every history file in AvroRecord::HISTORY", T::NAME);
    for ((_, file), embedded) in files.iter().zip(T::HISTORY) {
        assert_eq!(file, embedded, "{}: HISTORY is in version order", T::NAME);
    }
    // Every version is readable by every later one (not only by the current one).
    for (i, (_, older)) in files.iter().enumerate() {
        for (_, newer) in &files[i + 1..] {
            check_backward_compatible(T::NAME, older, newer).unwrap();
        }
    }
    Codec::<T>::new().unwrap();
}

#[test]
fn current_schemas_read_every_released_version() {
    check_history::<UsageEvent>("usage_event");
    check_history::<SpendUpdate>("spend_update");
    check_history::<BudgetSignal>("budget_signal");
    check_history::<ledger_core::lease::LeaseRequest>("lease_request");
    check_history::<ledger_core::lease::LeaseGrant>("lease_grant");
}

/// Edits the current UsageEvent schema's JSON.
fn edited(edit: impl FnOnce(&mut Vec<Json>)) -> String {
    let mut json: Json = serde_json::from_str(UsageEvent::AVSC).unwrap();
    edit(json["fields"].as_array_mut().unwrap());
    json.to_string()
}

fn incompatible(writer: &str, reader: &str) -> bool {
    match check_backward_compatible("UsageEvent", writer, reader) {
        Err(e @ SchemaError::Incompatible { .. }) => {
            assert!(!e.is_poison());
            true
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => false,
    }
}

#[test]
fn breaking_changes_fail_the_check() {
    let current = UsageEvent::AVSC;
    // A new required field without a default.
    let added_required = edited(|f| f.push(json!({"name": "region", "type": "string", "doc": "x"})));
    assert!(incompatible(current, &added_required));
    // A changed type.
    let retyped = edited(|f| {
        let field = f.iter_mut().find(|x| x["name"] == "input_tokens").unwrap();
        field["type"] = json!("string");
        field["default"] = json!("0");
    });
    assert!(incompatible(current, &retyped));
    // An optional field made required.
    let required = edited(|f| {
        let field = f.iter_mut().find(|x| x["name"] == "team").unwrap();
        field["type"] = json!("string");
        field.as_object_mut().unwrap().remove("default");
    });
    assert!(incompatible(current, &required));
    // A removed enum symbol.
    let mut signal: Json = serde_json::from_str(BudgetSignal::AVSC).unwrap();
    let state = signal["fields"].as_array_mut().unwrap().iter_mut().find(|x| x["name"] == "state").unwrap();
    state["type"]["symbols"] = json!(["OK", "NOTIFY", "THROTTLE", "REROUTE"]);
    assert!(check_backward_compatible("BudgetSignal", BudgetSignal::AVSC, &signal.to_string()).is_err());
}

#[test]
fn compatible_changes_pass_the_check() {
    let current = UsageEvent::AVSC;
    // A new field with a default.
    let added = edited(|f| f.push(json!({"name": "region", "type": ["null", "string"], "default": null, "doc": "x"})));
    assert!(!incompatible(current, &added));
    // A removed field (the reader ignores it).
    let removed = edited(|f| f.retain(|x| x["name"] != "trace_id"));
    assert!(!incompatible(current, &removed));
    // Promotion int -> long.
    let mut spend: Json = serde_json::from_str(SpendUpdate::AVSC).unwrap();
    let part = spend["fields"].as_array_mut().unwrap().iter_mut().find(|x| x["name"] == "source_partition").unwrap();
    part["type"] = json!("long");
    check_backward_compatible("SpendUpdate", SpendUpdate::AVSC, &spend.to_string()).unwrap();
}

#[test]
fn a_codec_refuses_an_incompatible_writer() {
    // A released writer the current schema cannot read: the codec does not build.
    let retyped = edited(|f| {
        let field = f.iter_mut().find(|x| x["name"] == "input_tokens").unwrap();
        field["type"] = json!("string");
        field["default"] = json!("0");
    });
    let err = RecordSchema::load_with_history::<UsageEvent>(&[&retyped]).unwrap_err();
    assert!(matches!(err, SchemaError::Incompatible { .. }), "{err}");
    // A writer with an extra required field is fine: the reader ignores it.
    let added_required = edited(|f| f.push(json!({"name": "region", "type": "string", "doc": "x"})));
    RecordSchema::load_with_history::<UsageEvent>(&[&added_required]).unwrap();
}

/// Data written with an older writer schema is resolved to the current schema: a writer that
/// lacked `trace_id` and `routed_from_model` is read with their defaults, and a writer with an
/// extra field is read without it.
#[test]
fn decode_resolves_older_writer_schemas() {
    let older = edited(|f| f.retain(|x| x["name"] != "trace_id" && x["name"] != "routed_from_model"));
    let newer = edited(|f| f.push(json!({"name": "region", "type": "string", "default": "eu", "doc": "x"})));
    let schema: &'static RecordSchema =
        Box::leak(Box::new(RecordSchema::load_with_history::<UsageEvent>(&[UsageEvent::AVSC, &older, &newer]).unwrap()));
    let codec = Codec::<UsageEvent>::with_schema(schema).unwrap();
    assert_eq!(schema.known_fingerprints().len(), 3);

    let event = full_usage_event();
    for (writer_avsc, expect_trace) in [(&older, false), (&newer, true)] {
        let writer = Schema::parse_str(writer_avsc).unwrap();
        let mut value = usage_to_value(&event);
        if let apache_avro::types::Value::Record(fields) = &mut value {
            fields.retain(|(k, _)| writer_avsc.contains(&format!("\"{k}\"")));
            if writer_avsc == &newer {
                fields.push(("region".into(), apache_avro::types::Value::String("us".into())));
            }
        }
        let mut message = MAGIC.to_vec();
        message.extend_from_slice(&fingerprint(&writer).bytes());
        message.extend(apache_avro::to_avro_datum(&writer, value).unwrap());
        let decoded = codec.decode(&message).unwrap();
        let mut expected = event.clone();
        if !expect_trace {
            expected.trace_id = None;
            expected.routed_from_model = None;
        }
        assert_eq!(decoded, expected);
        // The default codec does not know these writers.
        let err = UsageEventCodec::new().unwrap().decode(&message).unwrap_err();
        assert!(matches!(err, SchemaError::UnknownFingerprint { .. }));
        // Corrupt datum of a known older writer: an error, not a panic.
        let truncated = &message[..HEADER_LEN + 5];
        assert!(codec.decode(truncated).unwrap_err().is_poison());
    }
}
