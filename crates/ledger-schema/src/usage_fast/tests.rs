use super::decode::STACK_DATUM;
use super::reader::{Fail, Reader, TagBuf, INLINE_TAGS};
use super::*;
use crate::error::SchemaError;
use ledger_core::{Money, UsageEvent};

#[test]
fn field_list_matches_the_schema() {
    let avsc: serde_json::Value =
        serde_json::from_str(include_str!("../../../../schemas/avro/usage_event.avsc")).expect("avsc is JSON");
    let names: Vec<&str> = avsc["fields"].as_array().expect("fields").iter().map(|f| f["name"].as_str().expect("name")).collect();
    assert_eq!(names, FIELDS, "usage_fast must follow schemas/avro/usage_event.avsc");
}

fn event() -> UsageEvent {
    serde_json::from_str(
        r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme","team":"search",
            "user_id":"user-7","provider":"openai","request_model":"gpt-4o","input_tokens":100000,
            "output_tokens":300,"status":"ok","trace_id":"t-1"}"#,
    )
    .expect("event")
}

fn datum(e: &UsageEvent) -> Vec<u8> {
    let codec = crate::Codec::<UsageEvent>::new().expect("codec");
    codec.encode(e).expect("encode")[crate::HEADER_LEN..].to_vec()
}

fn decoded(datum: &[u8]) -> Result<UsageEvent, SchemaError> {
    decode(datum)
}

#[test]
fn the_hand_written_writer_matches_the_serde_writer() {
    let codec = crate::Codec::<UsageEvent>::new().expect("codec");
    let schema = codec.schema().fast_schema();
    let mut full = event();
    full.tags = [("a".to_owned(), "1".to_owned()), ("b\u{e9}".to_owned(), "x".repeat(300))].into();
    full.provided_cost_usd = Some("-0.000000000001".parse().expect("money"));
    full.latency_ms = Some(-1);
    full.input_tokens = i64::MIN;
    full.output_tokens = i64::MAX;
    full.response_id = Some(String::new());
    for e in [event(), full] {
        let (mut fast, mut reference) = (Vec::new(), Vec::new());
        encode_into(&e, &mut fast).expect("fast");
        crate::records::usage_event_datum_by_serde(&e, schema, &mut reference).expect("serde");
        assert_eq!(fast, reference);
        assert_eq!(decoded(&fast).unwrap(), e);
    }
    let mut e = event();
    e.provided_cost_usd = Some(Money::from_picos(i128::MIN));
    assert!(matches!(encode_into(&e, &mut Vec::new()), Err(SchemaError::Unencodable { .. })));
}

#[test]
fn ascii_runs_and_non_ascii_strings_decode_exactly() {
    let mut e = event();
    assert_eq!(decoded(&datum(&e)).unwrap(), e);
    // Non-ASCII at the start, middle and end of the runs, and a string that starts inside
    // an ASCII run and leaves it.
    e.event_id = "é-1".into();
    e.attribution.tenant_id = "acme".into();
    e.attribution.team = Some("s\u{e9}arch".into());
    e.attribution.project = Some(String::new());
    e.attribution.user_id = Some("user-\u{1F600}".into());
    e.request_model = "gpt-4o\u{2003}".into();
    e.status = "ök".into();
    e.trace_id = Some(String::new());
    assert_eq!(decoded(&datum(&e)).unwrap(), e);
}

#[test]
fn long_strings_and_long_datums_decode_exactly() {
    let mut e = event();
    // Lengths of two and three varint bytes, non-ASCII in and around them, and a datum
    // past the stack buffer.
    e.attribution.team = Some("\u{e9}".repeat(40));
    e.attribution.project = Some(format!("p{}", "x".repeat(200)));
    e.tags = [("k\u{1F600}".to_owned(), "v".repeat(STACK_DATUM))].into();
    e.status = format!("{}\u{e9}", "s".repeat(70));
    let bytes = datum(&e);
    assert!(bytes.len() > STACK_DATUM);
    assert_eq!(decoded(&bytes).unwrap(), e);
    e.tags.clear();
    e.attribution.project = None;
    let bytes = datum(&e);
    assert!(bytes.len() <= STACK_DATUM);
    assert_eq!(decoded(&bytes).unwrap(), e);
}

#[test]
fn the_first_string_that_is_not_utf8_is_named() {
    let mut e = event();
    e.attribution.team = Some("team-a".into());
    e.trace_id = Some("trace-b".into());
    let mut bytes = datum(&e);
    for needle in [&b"team-a"[..], b"trace-b"] {
        let at = bytes.windows(needle.len()).position(|w| w == needle).expect("field bytes");
        bytes[at] = 0xff;
    }
    match decoded(&bytes).unwrap_err() {
        SchemaError::InvalidValue { field, .. } => assert_eq!(field, "team"),
        other => panic!("{other}"),
    }
}

#[test]
fn invalid_utf8_is_an_error_wherever_it_is() {
    let e = event();
    let bytes = datum(&e);
    for needle in [&b"e1"[..], b"acme", b"search", b"user-7", b"gpt-4o", b"ok", b"t-1"] {
        let at = bytes.windows(needle.len()).position(|w| w == needle).expect("field bytes");
        for (offset, bad) in [(0, 0xff), (needle.len() - 1, 0xc3), (needle.len() - 1, 0x80)] {
            let mut b = bytes.clone();
            b[at + offset] = bad;
            let err = decoded(&b).unwrap_err();
            assert!(
                matches!(&err, SchemaError::InvalidValue { detail, .. } if detail.starts_with("not UTF-8")),
                "{needle:?} byte {offset} = {bad:#x}: {err}"
            );
        }
    }
}

#[test]
fn many_tags_spill_and_keep_wire_order() {
    let mut e = event();
    e.tags = (0..(INLINE_TAGS as u32 * 3)).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    assert_eq!(decoded(&datum(&e)).unwrap(), e);
    let mut buf = TagBuf::new();
    for i in 0..INLINE_TAGS + 2 {
        buf.push(if i % 2 == 0 { ("a", "1") } else { ("b", "2") });
    }
    assert_eq!(buf.as_slice().len(), INLINE_TAGS + 2);
    assert_eq!(buf.as_slice()[INLINE_TAGS + 1], ("b", "2"));
    buf.clear();
    assert!(buf.as_slice().is_empty());
}

#[test]
fn varints_at_the_limits_and_past_them() {
    let read = |bytes: &[u8]| {
        let mut masked = bytes.to_vec();
        let mut r = Reader { buf: bytes, pos: 0, masked: &mut masked, error: None };
        let read = r.long("f").map(|v| (v, r.pos)).map_err(|Fail| r.error.take().expect("error").to_string());
        // A varint of more than one byte is zeroed in the masked copy, and nothing else.
        if let Ok((_, len)) = read {
            let zeroed = if len > 1 { 0 } else { bytes[0] };
            assert!(masked[..len].iter().all(|b| *b == zeroed), "{bytes:?}");
            assert_eq!(masked[len..], bytes[len..]);
        }
        read
    };
    let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    let encode = |mut u: u64| {
        let mut out = Vec::new();
        while u >= 0x80 {
            out.push((u as u8) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
        out
    };
    // Every varint length, at both ends of each: 2^(7k) - 1 and 2^(7k) in zigzag.
    let mut values = vec![0, -1, 1, 63, -64, 64, 1 << 20, -(1 << 40), i64::MAX, i64::MIN];
    for k in 1..9 {
        let edge = 1i64 << (7 * k - 1);
        values.extend([edge - 1, edge, -edge, -edge - 1]);
    }
    for v in values {
        let bytes = encode(zigzag(v));
        // Alone (the checked loop), and followed by bytes of either kind, so that the word
        // read sees it whenever eight bytes are at hand.
        assert_eq!(read(&bytes), Ok((v, bytes.len())), "{v}");
        for (pad, fill) in [(0, 0x00), (2, 0x00), (2, 0xff), (10, 0x00), (10, 0xff)] {
            let mut padded = bytes.clone();
            padded.extend(std::iter::repeat_n(fill, pad.max(8usize.saturating_sub(bytes.len()))));
            assert_eq!(read(&padded), Ok((v, bytes.len())), "{v} followed by {pad} x {fill:#x}");
        }
    }
    let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0];
    assert!(read(&overflow).unwrap_err().contains("overflows 64 bits"));
    assert!(read(&overflow[..10]).unwrap_err().contains("overflows 64 bits"));
    let too_long = [0x80; 12];
    assert!(read(&too_long).is_err());
    assert!(read(&[0x80, 0x80]).unwrap_err().contains("ends inside a varint"));
}
