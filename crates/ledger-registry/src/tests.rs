//! The client against a scripted HTTP server on loopback (the real registry is exercised by
//! `tests/tests/registry.rs`): requests, authentication, retries, caching, errors.

use std::sync::{Arc, Mutex};

use ledger_core::secret::Secret;
use ledger_core::UsageEvent;
use ledger_schema::{AvroRecord, Codec, Framing, IdWriter, WireFormat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{IdResolver, RegistryClient, RegistryConfig, SchemaSettings};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: String,
    body: String,
}

/// A server answering each request with the next `(status, body)` of its script (the last
/// one repeats), recording what it was asked.
struct Scripted {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted(script: Vec<(u16, &'static str)>) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/apis/ccompat/v7", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let read = socket.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0usize);
                    if buf.len() >= end + 4 + length || read == 0 {
                        break (text[..end].to_owned(), text[end + 4..].to_owned());
                    }
                }
            };
            let (line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
            log.lock().unwrap().push(Seen { line: line.to_owned(), headers: headers.to_ascii_lowercase(), body });
            let (status, answer) = script[n.min(script.len() - 1)];
            n += 1;
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    Scripted { url, seen }
}

fn config(url: &str) -> RegistryConfig {
    RegistryConfig { retries: 2, timeout_ms: 2_000, ..RegistryConfig::new(url) }
}

#[tokio::test]
async fn registers_under_the_subject_with_basic_auth_and_caches_the_id() {
    let server = scripted(vec![(200, r#"{"id":7}"#)]).await;
    let config = RegistryConfig { user: Some("ledger".into()), password: Some(Secret::new("hunter2")), ..config(&server.url) };
    let client = RegistryClient::new(&config).unwrap();
    assert!(!format!("{client:?}").contains("hunter2"));
    assert_eq!(client.register("llm.usage.v1-value", UsageEvent::AVSC).await.unwrap(), 7);
    assert_eq!(client.register("llm.usage.v1-value", UsageEvent::AVSC).await.unwrap(), 7, "from the cache");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].line, "POST /apis/ccompat/v7/subjects/llm.usage.v1-value/versions HTTP/1.1");
    // base64("ledger:hunter2")
    assert!(seen[0].headers.contains("authorization: basic bgvkz2vyomh1bnrlcji="), "{}", seen[0].headers);
    assert!(seen[0].headers.contains("content-type: application/vnd.schemaregistry.v1+json"));
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["schema"].as_str(), Some(UsageEvent::AVSC));
}

#[tokio::test]
async fn retries_what_may_pass_and_reports_what_does_not() {
    let server =
        scripted(vec![(503, "busy"), (500, r#"{"error_code":50001,"message":"store"}"#), (200, r#"{"schema":"\"string\""}"#)])
            .await;
    let client = RegistryClient::new(&config(&server.url)).unwrap();
    let found = client.schema_by_id(3).await.unwrap().unwrap();
    assert_eq!((found.schema_type.as_str(), &*found.schema), ("AVRO", "\"string\""));
    assert_eq!(server.seen.lock().unwrap().len(), 3);
    assert_eq!(server.seen.lock().unwrap()[2].line, "GET /apis/ccompat/v7/schemas/ids/3 HTTP/1.1");

    let down = scripted(vec![(503, r#"{"error_code":50003,"message":"not ready"}"#)]).await;
    let err = RegistryClient::new(&config(&down.url)).unwrap().schema_by_id(1).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("failed after 3 attempt(s): HTTP 503 Service Unavailable: not ready (error code 50003)"),
        "{err}"
    );

    let missing = scripted(vec![(404, r#"{"error_code":40403,"message":"Schema not found"}"#)]).await;
    let client = RegistryClient::new(&config(&missing.url)).unwrap();
    assert_eq!(client.schema_by_id(99).await.unwrap(), None);
    assert_eq!(client.lookup("t-value", "\"string\"").await.unwrap(), None);
    assert_eq!(missing.seen.lock().unwrap().len(), 2, "a 404 is an answer, not retried");
}

#[tokio::test]
async fn refused_credentials_name_the_settings_and_never_the_password() {
    let server = scripted(vec![(401, r#"{"error_code":401,"message":"Unauthorized"}"#)]).await;
    let dir = std::env::temp_dir().join(format!("ledger-registry-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pw");
    std::fs::write(&file, "s3cret-from-file\n").unwrap();
    let config = RegistryConfig { user: Some("ledger".into()), password_file: Some(file), ..config(&server.url) };
    let err = RegistryClient::new(&config).unwrap().register("t-value", "\"string\"").await.unwrap_err();
    let text = err.to_string();
    assert!(err.is_settings() && !err.is_retryable(), "{text}");
    assert!(text.contains("HTTP 401") && text.contains("check schema.registry.user and schema.registry.password"), "{text}");
    assert!(!text.contains("s3cret") && !format!("{err:?}").contains("s3cret"), "{text}");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    assert!(server.seen.lock().unwrap()[0].headers.contains("authorization: basic"));
    std::fs::remove_dir_all(&dir).unwrap();
    let missing = RegistryConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..RegistryConfig::new("https://h:8081") };
    let err = RegistryClient::new(&missing).unwrap_err().to_string();
    assert!(err.contains("schema.registry.ca_file: cannot read certificates from /nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn unreachable_registries_are_retryable() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client =
        RegistryClient::new(&RegistryConfig { retries: 1, ..RegistryConfig::new(format!("http://127.0.0.1:{port}")) }).unwrap();
    let err = client.schema_by_id(1).await.unwrap_err();
    assert!(err.is_retryable() && err.to_string().contains("fetching schema id 1 failed after 2 attempt(s)"), "{err}");
}

// Multi-threaded: the blocking call waits on this thread while the server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_take_a_configured_id_or_register_the_current_schema() {
    let pinned = SchemaSettings {
        framing: Framing::Confluent,
        ids: [("12".to_owned(), "current".to_owned()), ("4".to_owned(), "current".to_owned())].into(),
        registry: Some(RegistryConfig::new("http://127.0.0.1:9")),
    };
    assert_eq!(crate::wire_format(&pinned, "t").await.unwrap(), WireFormat::Confluent { schema_id: 4 }, "no registry call");
    let server = scripted(vec![(200, r#"{"id":21}"#)]).await;
    let registered =
        SchemaSettings { framing: Framing::Confluent, registry: Some(config(&server.url)), ..SchemaSettings::default() };
    assert_eq!(crate::wire_format_blocking(&registered, "usage").unwrap(), WireFormat::Confluent { schema_id: 21 });
    assert!(server.seen.lock().unwrap()[0].line.contains("/subjects/usage-value/versions"));
    let lookup = scripted(vec![(404, r#"{"error_code":40403,"message":"Schema not found"}"#)]).await;
    let settings = SchemaSettings {
        framing: Framing::Confluent,
        registry: Some(RegistryConfig { auto_register: false, ..config(&lookup.url) }),
        ..SchemaSettings::default()
    };
    let err = crate::wire_format(&settings, "usage").await.unwrap_err().to_string();
    assert!(err.contains("not registered under subject usage-value") && err.contains("auto_register is false"), "{err}");
    assert!(lookup.seen.lock().unwrap()[0].line.starts_with("POST /apis/ccompat/v7/subjects/usage-value HTTP"));
    let nothing = SchemaSettings { framing: Framing::Confluent, ..SchemaSettings::default() };
    let err = crate::wire_format(&nothing, "usage").await.unwrap_err().to_string();
    assert!(err.contains("needs the current schema's id: set schema.registry.url"), "{err}");
    assert_eq!(crate::wire_format(&SchemaSettings::default(), "usage").await.unwrap(), WireFormat::SingleObject);
}

#[tokio::test]
async fn readers_learn_each_id_once_and_reject_what_they_cannot_read() {
    let current = serde_json::json!({ "schema": UsageEvent::AVSC }).to_string().leak();
    let server = scripted(vec![
        (200, current),
        (404, r#"{"error_code":40403,"message":"Schema 8 not found"}"#),
        (200, r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}"#),
    ])
    .await;
    let settings = SchemaSettings { registry: Some(config(&server.url)), ..SchemaSettings::default() };
    let mut resolver = IdResolver::new(&settings).unwrap();
    let codec = Codec::<UsageEvent>::new().unwrap();
    let event: UsageEvent = serde_json::from_str(
        r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme","provider":"openai","request_model":"gpt-4o"}"#,
    )
    .unwrap();
    let message = |id| codec.encode_framed(&event, WireFormat::Confluent { schema_id: id }).unwrap();
    for _ in 0..2 {
        resolver.prepare(&message(5)).await.unwrap();
        assert_eq!(codec.decode_framed(resolver.ids(), &message(5)).unwrap(), event);
    }
    resolver.prepare(&message(8)).await.unwrap();
    resolver.prepare(&message(8)).await.unwrap();
    let err = codec.decode_framed(resolver.ids(), &message(8)).unwrap_err().to_string();
    assert!(err.contains("Confluent schema id 8: unknown to the schema registry at http://127.0.0.1:"), "{err}");
    resolver.prepare(&message(9)).await.unwrap();
    assert!(matches!(resolver.ids().get(9), Some(IdWriter::Rejected(why)) if why.contains("PROTOBUF schema")));
    resolver.prepare(&codec.encode(&event).unwrap()).await.unwrap();
    assert_eq!(server.seen.lock().unwrap().len(), 3, "one request per id; single-object messages ask nothing");

    let offline = IdResolver::new(&SchemaSettings { ids: [("1".into(), "current".into())].into(), ..SchemaSettings::default() });
    let mut offline = offline.unwrap();
    offline.prepare(&message(2)).await.unwrap();
    assert!(codec.decode_framed(offline.ids(), &message(1)).is_ok());
    let err = codec.decode_framed(offline.ids(), &message(2)).unwrap_err().to_string();
    assert!(err.contains("not among the configured schema.ids, and no schema.registry is configured"), "{err}");
}
