use super::*;
use serde_json::json;

fn valid() -> Value {
    json!({"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme","provider":"openai",
           "request_model":"gpt-4o","input_tokens":1000,"cache_read_input_tokens":200,"output_tokens":300,
           "provided_cost_usd":"0.0042","tags":{"region":"eu"},"latency_ms":null})
}

fn errors_of(v: Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let now = DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z").unwrap().with_timezone(&Utc);
    let rules = ledger_core::acceptance::AcceptanceRules::default();
    let raw = RawValue::from_string(v.to_string()).unwrap();
    let event = parse_event(0, &raw, &Door { rules: Some(rules), catalog: None }, now, &mut errors);
    assert_eq!(event.is_some(), errors.is_empty());
    errors
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().filter_map(|e| e.field.as_deref()).collect()
}

#[test]
fn a_valid_event_parses() {
    assert_eq!(errors_of(valid()), vec![]);
}

#[test]
fn every_problem_names_its_field() {
    let mut v = valid();
    v["input_token"] = json!(5);
    v["output_tokens"] = json!(-1);
    v["tenant_id"] = json!("");
    v["provided_cost_usd"] = json!(0.1);
    v["event_time"] = json!("yesterday");
    v["tags"] = json!({"a": 1});
    v.as_object_mut().unwrap().remove("request_model");
    let errors = errors_of(v);
    let mut f = fields(&errors);
    f.sort();
    assert_eq!(
        f,
        vec!["event_time", "input_token", "output_tokens", "provided_cost_usd", "request_model", "tags.a", "tenant_id"]
    );
}

#[test]
fn inconsistent_tokens_and_window_are_reported() {
    let mut v = valid();
    v["reasoning_output_tokens"] = json!(301);
    assert_eq!(fields(&errors_of(v)), vec!["reasoning_output_tokens"]);
    let mut v = valid();
    v["cache_read_input_tokens"] = json!(1001);
    assert_eq!(fields(&errors_of(v)), vec!["input_tokens"]);
    let mut v = valid();
    v["event_time"] = json!("2026-11-01T13:00:00Z");
    assert_eq!(fields(&errors_of(v)), vec!["event_time"]);
    let mut v = valid();
    v["input_tokens"] = json!(1.5);
    assert_eq!(fields(&errors_of(v)), vec!["input_tokens"]);
    let mut v = valid();
    v["team"] = json!("x".repeat(MAX_STRING_CHARS + 1));
    assert_eq!(fields(&errors_of(v)), vec!["team"]);
    let mut v = valid();
    v["input_tokens"] = json!(1_000_000_000_000_000_000u64);
    let errors = errors_of(v);
    assert_eq!(fields(&errors), vec!["input_tokens"]);
    assert!(errors[0].message.contains("implausible_tokens"), "{}", errors[0].message);
    let mut v = valid();
    v["project"] = json!("p".repeat(300));
    let errors = errors_of(v);
    assert_eq!(fields(&errors), vec!["project"]);
    assert!(errors[0].message.contains("field_too_long"), "{}", errors[0].message);
}

#[test]
fn the_field_table_is_the_event_schema() {
    let mut errors = Vec::new();
    let raw = RawValue::from_string(valid().to_string()).unwrap();
    let event = parse_event(0, &raw, &Door::default(), Utc::now(), &mut errors).unwrap();
    let serialized = serde_json::to_value(&event).unwrap();
    let mut names: Vec<&str> = serialized.as_object().unwrap().keys().map(String::as_str).collect();
    let mut table: Vec<&str> = FIELDS.iter().map(|(f, _)| *f).filter(|f| *f != "decision_id").collect();
    names.sort_unstable();
    table.sort_unstable();
    assert_eq!(names, table);
}

proptest::proptest! {
    /// The fast path never accepts what the field-by-field checks refuse, and both build
    /// the same event.
    #[test]
    fn the_fast_path_agrees_with_the_checks(
        field in 0..FIELDS.len(),
        choice in 0usize..12,
        number in proptest::prelude::any::<i64>(),
        text in ".{0,12}",
    ) {
        let replacement = match choice {
            0 => Value::Null,
            1 => json!(number),
            2 => json!(-1),
            3 => json!(0),
            4 => json!(text),
            5 => json!(""),
            6 => json!(1.5),
            7 => json!({"k": text}),
            8 => json!([number]),
            9 => json!("2026-11-01T12:00:00+02:00"),
            10 => json!("12.5"),
            _ => json!(true),
        };
        let mut v = valid();
        v[FIELDS[field].0] = replacement;
        let raw = RawValue::from_string(v.to_string()).unwrap();
        let mut errors = Vec::new();
        let checked = parse_checked(0, &raw, &mut errors);
        if let Some(fast) = parse_fast(&raw) {
            proptest::prop_assert_eq!(Some(fast), checked, "{}", v);
        }
    }
}

#[test]
fn nulls_fall_back_to_defaults() {
    let mut v = valid();
    v["operation"] = Value::Null;
    v["output_tokens"] = Value::Null;
    v["reasoning_output_tokens"] = Value::Null;
    assert_eq!(errors_of(v), vec![]);
}

#[test]
fn bodies_of_every_shape_split() {
    let one = valid().to_string();
    assert_eq!(split_body(one.as_bytes(), 10).unwrap().len(), 1);
    let arr = json!([valid(), valid()]).to_string();
    assert_eq!(split_body(arr.as_bytes(), 10).unwrap().len(), 2);
    let wrapped = json!({"events": [valid(), valid(), valid()]}).to_string();
    assert_eq!(split_body(wrapped.as_bytes(), 10).unwrap().len(), 3);
    assert_eq!(split_body(arr.as_bytes(), 1).unwrap_err(), BodyError::TooManyEvents { count: 2, max: 1 });
    let spaced = format!("  \n{}", json!({"events": [valid()]}));
    assert_eq!(split_body(spaced.as_bytes(), 10).unwrap().len(), 1);
    for bad in ["", "[]", "42", "{\"events\": 1}", "{\"events\": [], \"x\": 1}", "[1,"] {
        assert!(matches!(split_body(bad.as_bytes(), 10), Err(BodyError::Malformed(_))), "{bad}");
    }
}

#[test]
fn a_decision_id_is_accepted_beside_the_event_and_read_on_its_own() {
    let mut v = valid();
    v["decision_id"] = json!("d-1");
    assert_eq!(errors_of(v.clone()), vec![]);
    let raw = RawValue::from_string(v.to_string()).unwrap();
    assert_eq!(decision_id_of(&raw), Some("d-1".to_owned()));
    assert_eq!(decision_id_of(&RawValue::from_string(valid().to_string()).unwrap()), None);
    v["decision_id"] = json!(7);
    assert_eq!(fields(&errors_of(v)), vec!["decision_id"]);
}
