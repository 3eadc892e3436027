use super::validate::is_blank;
use super::*;

/// A valid event for tests.
pub(crate) fn sample() -> UsageEvent {
    serde_json::from_str(
        r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme",
            "provider":"openai","request_model":"gpt-4o","input_tokens":1000,
            "cache_read_input_tokens":200,"output_tokens":300,"reasoning_output_tokens":100}"#,
    )
    .unwrap()
}

#[test]
fn json_defaults_apply() {
    let e = sample();
    assert_eq!(e.operation, "chat");
    assert_eq!(e.status, "ok");
    assert_eq!(e.cache_creation_input_tokens, 0);
    let t = e.validate().unwrap();
    assert_eq!(t.uncached_input(), 800);
    assert_eq!(t.non_reasoning_output(), 200);
}

#[test]
fn inconsistent_cache_parts_are_rejected() {
    let mut e = sample();
    e.cache_creation_input_tokens = 801;
    assert_eq!(e.validate().unwrap_err().reason, RejectReason::InconsistentTokens);
    e.cache_creation_input_tokens = 800;
    assert!(e.validate().is_ok());
}

#[test]
fn reasoning_above_output_is_rejected() {
    let mut e = sample();
    e.reasoning_output_tokens = 301;
    assert_eq!(e.validate().unwrap_err().reason, RejectReason::InconsistentTokens);
}

#[test]
fn negative_and_missing_are_rejected() {
    let mut e = sample();
    e.output_tokens = -1;
    let r = e.validate().unwrap_err();
    assert_eq!(r.reason, RejectReason::NegativeTokens);
    assert!(r.detail.contains("output_tokens"));
    let mut e = sample();
    e.attribution.tenant_id = " ".into();
    assert_eq!(e.validate().unwrap_err().reason, RejectReason::MissingField);
}

#[test]
fn blank_means_what_trim_says() {
    for s in
        ["", " ", "\t\n\u{0B}\u{0C}\r ", "\u{85}", "\u{A0}", "\u{2003}\u{3000}", " a", "a", "\u{0B}x", "é", "\u{2003}é", "\u{0}"]
    {
        assert_eq!(is_blank(s), s.trim().is_empty(), "{s:?}");
    }
    for b in 0u8..128 {
        let s = char::from(b).to_string();
        assert_eq!(is_blank(&s), s.trim().is_empty(), "{b:#x}");
    }
}

#[test]
fn event_time_parts_agree_with_chrono() {
    let instants = [
        "2026-11-01T12:00:00Z",
        "2026-11-01T12:00:00.123456Z",
        "1969-12-31T23:59:59.999999Z",
        "1900-01-01T00:00:00.000001Z",
        "2106-02-07T06:28:15Z",
    ];
    for text in instants {
        let t: DateTime<Utc> = text.parse().unwrap();
        let e = EventTime::from_datetime(t);
        assert_eq!(e.secs(), t.timestamp(), "{text}");
        assert_eq!(e.millis(), t.timestamp_millis(), "{text}");
        assert_eq!(e.micros(), t.timestamp_micros(), "{text}");
        assert_eq!(e.subsec_micros(), t.timestamp_subsec_micros(), "{text}");
        assert_eq!(e.to_datetime(), t, "{text}");
        assert_eq!(EventTime::from_micros(e.micros()), Some(e));
        assert_eq!(e.to_string(), t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    // Sub-microsecond instants floor, before and after the epoch.
    let t: DateTime<Utc> = "1969-12-31T23:59:59.9999995Z".parse().unwrap();
    assert_eq!(EventTime::from_datetime(t).micros(), -1);
    let t: DateTime<Utc> = "2026-11-01T12:00:00.0000009Z".parse().unwrap();
    assert_eq!(EventTime::from_datetime(t).subsec_micros(), 0);
    // The range is chrono's, at both ends and one past them.
    for edge in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        let e = EventTime::from_datetime(edge);
        assert_eq!(DateTime::from_timestamp_micros(e.micros()).map(EventTime::from_datetime), Some(e));
    }
    assert_eq!(EventTime::from_micros(EventTime::MIN - 1), None);
    assert_eq!(EventTime::from_micros(EventTime::MAX + 1), None);
    assert_eq!(DateTime::from_timestamp_micros(EventTime::MIN - 1), None);
    assert_eq!(DateTime::from_timestamp_micros(EventTime::MAX + 1), None);
    assert_eq!(EventTime::from_micros(i64::MIN), None);
    assert_eq!(EventTime::from_micros(i64::MAX), None);
}

#[test]
fn reasons_round_trip() {
    for r in RejectReason::ALL {
        assert_eq!(RejectReason::parse(r.as_str()), Some(r));
    }
}
