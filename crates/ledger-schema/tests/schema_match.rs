//! (b) The field names, types, optionality and defaults of each `.avsc` match the Rust type.

mod common;

use std::collections::BTreeSet;

use apache_avro::schema::{RecordSchema as AvroRecordSchema, Schema};
use common::*;
use ledger_core::lease::{LeaseGrant, LeaseRequest, LeaseStatus};
use ledger_core::signal::BudgetSignal;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_schema::{schema_of, AvroRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

fn record_schema<T: AvroRecord>() -> AvroRecordSchema {
    match schema_of::<T>().unwrap().schema() {
        Schema::Record(r) => r.clone(),
        other => panic!("{} is not a record: {other:?}", T::NAME),
    }
}

/// Does a JSON value of the Rust type's serde form fit the Avro type?
fn json_fits(schema: &Schema, v: &Json) -> bool {
    match (schema, v) {
        (Schema::String, Json::String(_)) => true,
        (Schema::Long, Json::Number(n)) => n.as_i64().is_some(),
        (Schema::Int, Json::Number(n)) => n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()),
        // chrono's serde form of a timestamp is an RFC 3339 string.
        (Schema::TimestampMicros, Json::String(s)) => s.parse::<chrono::DateTime<chrono::Utc>>().is_ok(),
        (Schema::Map(m), Json::Object(o)) => o.values().all(|x| json_fits(&m.types, x)),
        (Schema::Enum(e), Json::String(s)) => e.symbols.contains(s),
        (Schema::Boolean, Json::Bool(_)) => true,
        (Schema::Array(a), Json::Array(items)) => items.iter().all(|x| json_fits(&a.items, x)),
        (Schema::Record(r), Json::Object(o)) => {
            o.len() == r.fields.len() && r.fields.iter().all(|f| o.get(&f.name).is_some_and(|x| json_fits(&f.schema, x)))
        }
        (Schema::Union(u), Json::Null) => u.variants().first() == Some(&Schema::Null),
        (Schema::Union(u), v) => u.variants().len() == 2 && json_fits(&u.variants()[1], v),
        _ => false,
    }
}

fn is_optional(schema: &Schema) -> bool {
    matches!(schema, Schema::Union(u) if u.variants().len() == 2 && u.variants()[0] == Schema::Null)
}

/// Checks names, types, optionality (`Option` <=> `["null", T]`) and defaults (a field has a
/// schema default <=> serde fills it in when absent, with the same value) of `T` against its
/// `.avsc`. `full` must have every optional field set and every map non-empty.
fn check<T: AvroRecord + Serialize + DeserializeOwned + std::fmt::Debug + PartialEq>(full: &T) {
    let record = record_schema::<T>();
    let json = serde_json::to_value(full).unwrap();
    let obj = json.as_object().unwrap();

    let schema_names: BTreeSet<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    let rust_names: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(schema_names, rust_names, "{}: fields in the schema vs the Rust type", T::NAME);

    for field in &record.fields {
        let name = field.name.as_str();
        let v = &obj[name];
        assert!(field.doc.as_deref().is_some_and(|d| !d.trim().is_empty()), "{}.{name}: every field needs a doc", T::NAME);
        assert!(json_fits(&field.schema, v), "{}.{name}: Rust value {v} does not fit {:?}", T::NAME, field.schema);
        assert!(!matches!(field.schema, Schema::Float | Schema::Double), "{}.{name}: no floats", T::NAME);

        // Optionality: null is accepted exactly for the ["null", T] fields.
        let mut with_null = obj.clone();
        with_null.insert(name.to_owned(), Json::Null);
        let accepts_null = serde_json::from_value::<T>(Json::Object(with_null)).is_ok();
        assert_eq!(accepts_null, is_optional(&field.schema), "{}.{name}: Option <=> [\"null\", T]", T::NAME);
        if is_optional(&field.schema) {
            assert!(!v.is_null(), "{}.{name}: the fully populated sample must set it", T::NAME);
        }

        // Defaults: serde fills the field in when absent exactly when the schema has a default,
        // and with the same value.
        let mut without = obj.clone();
        without.remove(name);
        let parsed = serde_json::from_value::<T>(Json::Object(without));
        match (&field.default, parsed) {
            (None, Err(_)) => {}
            (None, Ok(_)) => panic!("{}.{name}: Rust has a default, the schema has none", T::NAME),
            (Some(d), Err(e)) => panic!("{}.{name}: the schema has default {d}, Rust requires it: {e}", T::NAME),
            (Some(d), Ok(t)) => {
                let got = serde_json::to_value(&t).unwrap()[name].clone();
                assert_eq!(&got, d, "{}.{name}: Rust default vs schema default", T::NAME);
            }
        }
    }
}

/// The reference `Value` of a fully populated value validates against the schema, and so does
/// the value apache-avro reads back from the fast path's bytes.
fn validates<T: AvroRecord>(value: &T, to_value: fn(&T) -> apache_avro::types::Value) {
    let schema = schema_of::<T>().unwrap().schema();
    assert!(to_value(value).validate(schema), "{}: reference value does not validate", T::NAME);
}

#[test]
fn usage_event_matches_its_schema() {
    check::<UsageEvent>(&full_usage_event());
    validates(&full_usage_event(), usage_to_value);
    // Field order of the schema is the field order of the Rust struct.
    let record = record_schema::<UsageEvent>();
    let order: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(order[..3], ["event_id", "event_time", "tenant_id"]);
    assert_eq!(order.last(), Some(&"trace_id"));
}

#[test]
fn spend_update_matches_its_schema() {
    check::<SpendUpdate>(&full_spend_update());
    validates(&full_spend_update(), spend_to_value);
}

#[test]
fn budget_signal_matches_its_schema() {
    check::<BudgetSignal>(&full_budget_signal());
    validates(&full_budget_signal(), signal_to_value);
    let record = record_schema::<BudgetSignal>();
    let state = record.fields.iter().find(|f| f.name == "state").unwrap();
    match &state.schema {
        Schema::Enum(e) => {
            let rust: Vec<String> = ledger_core::signal::BudgetState::ALL.iter().map(|s| s.as_str().to_owned()).collect();
            assert_eq!(e.symbols, rust, "enum symbols in severity order");
        }
        other => panic!("state is not an enum: {other:?}"),
    }
}

#[test]
fn lease_records_match_their_schemas() {
    check::<LeaseRequest>(&full_lease_request());
    check::<LeaseGrant>(&full_lease_grant());
    let record = record_schema::<LeaseGrant>();
    let status = record.fields.iter().find(|f| f.name == "status").unwrap();
    match &status.schema {
        Schema::Enum(e) => {
            let rust: Vec<&str> = LeaseStatus::ALL.iter().map(|s| s.as_str()).collect();
            assert_eq!(e.symbols, rust, "enum symbols in severity order");
        }
        other => panic!("status is not an enum: {other:?}"),
    }
}

#[test]
fn schemas_follow_the_conventions() {
    for (name, avsc) in [
        (UsageEvent::NAME, UsageEvent::AVSC),
        (SpendUpdate::NAME, SpendUpdate::AVSC),
        (BudgetSignal::NAME, BudgetSignal::AVSC),
        (LeaseRequest::NAME, LeaseRequest::AVSC),
        (LeaseGrant::NAME, LeaseGrant::AVSC),
    ] {
        let json: Json = serde_json::from_str(avsc).unwrap();
        assert_eq!(json["namespace"], "dev.llmledger.v1", "{name}");
        assert!(json["doc"].as_str().is_some_and(|d| !d.is_empty()), "{name}: record doc");
        for f in json["fields"].as_array().unwrap() {
            let fname = f["name"].as_str().unwrap();
            let ty = &f["type"];
            // Optional fields: ["null", T] with default null.
            if ty.is_array() {
                assert_eq!(ty[0], "null", "{name}.{fname}: null first");
                assert_eq!(f.get("default"), Some(&Json::Null), "{name}.{fname}: default null");
            }
            // Money: strings, documented as exact decimals.
            if fname.ends_with("_usd") || fname.ends_with("_usd_per_hour") {
                let inner = if ty.is_array() { &ty[1] } else { ty };
                assert_eq!(inner, "string", "{name}.{fname}: money is a string");
                assert!(f["doc"].as_str().unwrap().contains("12 fractional digits"), "{name}.{fname}: money doc");
            }
            // Timestamps: long timestamp-micros.
            let time_like = ["_time", "_at", "_start", "_end", "_until", "_exhaustion"];
            if time_like.iter().any(|s| fname.ends_with(s)) {
                let inner = if ty.is_array() { &ty[1] } else { ty };
                assert_eq!(inner["type"], "long", "{name}.{fname}");
                assert_eq!(inner["logicalType"], "timestamp-micros", "{name}.{fname}");
            }
            // Token counts: long, default 0.
            if fname.ends_with("_tokens") && !ty.is_array() {
                assert_eq!(ty, "long", "{name}.{fname}");
                assert_eq!(f["default"], 0, "{name}.{fname}: default 0");
            }
            // Maps of strings default to {}.
            if ty.get("type") == Some(&Json::from("map")) {
                assert_eq!(ty["values"], "string", "{name}.{fname}");
                assert_eq!(f["default"], serde_json::json!({}), "{name}.{fname}: default {{}}");
            }
        }
        assert!(!avsc.contains("\"float\"") && !avsc.contains("\"double\""), "{name}: no floats");
    }
}
