use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};

use super::file::{self, Imported, NewKey};
use super::*;

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("ledger-keys-test-{}", new_key_id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

fn new_key(tenant: &str) -> NewKey {
    NewKey { tenant_id: tenant.into(), ..NewKey::default() }
}

#[test]
fn hashes_are_sha256_in_hex_and_compare_in_constant_time() {
    // SHA-256("abc"), FIPS 180-2.
    let abc = KeyHash::of("abc");
    assert_eq!(abc.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(KeyHash::from_hex(&abc.to_hex()), Some(abc));
    assert_eq!(KeyHash::from_hex(&abc.to_hex().to_uppercase()), Some(abc));
    assert_eq!(KeyHash::from_hex("abc"), None);
    assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
    assert!(abc.matches(&KeyHash::of("abc")));
    assert!(!abc.matches(&KeyHash::of("abd")));
}

#[test]
fn generated_keys_carry_their_id_and_secrets_never_show_in_debug() {
    let id = new_key_id();
    assert!(is_key_id(&id), "{id}");
    let key = SecretKey::generate(&id);
    let text = key.expose();
    assert!(text.starts_with("lk_") && text.len() == 3 + 12 + 1 + 64, "{text}");
    assert_eq!(key_id(text), Some(id.as_str()));
    assert_ne!(SecretKey::generate(&id), key, "every key is random");
    assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    let hash = key.hash();
    assert!(!format!("{hash:?}").contains(&hash.to_hex()));
    // Texts of any other shape have no id.
    for other in ["lk_0123456789ab", "lk_0123456789AB_00", "acme-example-key-0001", "lk__x", ""] {
        assert_eq!(key_id(other), None, "{other}");
    }
}

fn record(id: &str, tenant: &str, key_text: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        tenant_id: tenant.into(),
        name: None,
        sha256: KeyHash::of(key_text),
        created_at: now(),
        revoked_at: None,
        rate_limit: None,
        burst: None,
        imported: false,
    }
}

#[test]
fn lookup_finds_keys_by_id_imported_keys_by_hash_and_tells_revoked_ones() {
    let a = SecretKey::generate("aaaaaaaaaaaa");
    let b = SecretKey::generate("bbbbbbbbbbbb");
    let legacy = "acme-example-key-change-me-0001";
    let mut revoked = record("bbbbbbbbbbbb", "globex", b.expose());
    revoked.revoked_at = Some(now());
    let imported = KeyRecord { imported: true, ..record("cccccccccccc", "acme", legacy) };
    let keys = ApiKeys::from_records(vec![record("aaaaaaaaaaaa", "acme", a.expose()), revoked, imported]).unwrap();
    assert_eq!((keys.len(), keys.active()), (3, 2));

    assert!(matches!(keys.lookup(a.expose()), Lookup::Valid(r) if r.id == "aaaaaaaaaaaa"));
    assert!(matches!(keys.lookup(b.expose()), Lookup::Revoked(r) if r.tenant_id == "globex"));
    assert!(matches!(keys.lookup(legacy), Lookup::Valid(r) if r.id == "cccccccccccc"));
    // A known id with another secret, an unknown id, near misses.
    let forged = format!("lk_aaaaaaaaaaaa_{}", "0".repeat(64));
    assert_eq!(keys.lookup(&forged), Lookup::Unknown);
    assert_eq!(keys.lookup(&a.expose().replace("lk_aaaaaaaaaaaa", "lk_dddddddddddd")), Lookup::Unknown);
    assert_eq!(keys.lookup(&legacy[1..]), Lookup::Unknown);
    assert_eq!(keys.lookup(""), Lookup::Unknown);
    // An id-format key is never matched through the imported keys' hash index.
    let imported_lk = KeyRecord { imported: true, ..record("eeeeeeeeeeee", "acme", a.expose()) };
    let other = ApiKeys::from_records(vec![imported_lk]).unwrap();
    assert!(matches!(other.lookup(a.expose()), Lookup::Valid(r) if r.id == "eeeeeeeeeeee"));
    assert!(!format!("{keys:?}").contains(&KeyHash::of(legacy).to_hex()));
}

#[test]
fn bad_entries_are_refused_with_what_is_wrong() {
    let ok = record("aaaaaaaaaaaa", "acme", "one");
    let problem = |records: Vec<KeyRecord>| ApiKeys::from_records(records).unwrap_err();
    assert!(problem(vec![KeyRecord { id: "short".into(), ..ok.clone() }]).contains("12 lowercase hex"));
    assert!(problem(vec![KeyRecord { tenant_id: " ".into(), ..ok.clone() }]).contains("tenant_id"));
    assert!(problem(vec![KeyRecord { burst: Some(0), ..ok.clone() }]).contains("burst"));
    assert!(problem(vec![ok.clone(), record("aaaaaaaaaaaa", "b", "two")]).contains("appears twice"));
    assert!(problem(vec![ok.clone(), record("bbbbbbbbbbbb", "b", "one")]).contains("same key"));
}

fn mode(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    0o600
}

#[test]
fn add_list_revoke_round_trip_through_the_file() {
    let dir = TempDir::new();
    let path = dir.file("sub/api-keys.toml");
    let added = file::add(
        &path,
        NewKey { tenant_id: " acme ".into(), name: Some("acme backend".into()), rate_limit: Some(50), burst: Some(100) },
        now(),
    )
    .unwrap();
    assert!(added.created_file);
    assert_eq!(mode(&path), 0o600, "only its owner reads the keys file");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(added.key.expose()), "the key's text is never stored");
    assert!(text.contains(&added.key.hash().to_hex()));
    assert!(text.starts_with("# Tenant API keys"));
    let second = file::add(&path, new_key("globex"), now()).unwrap();
    assert!(!second.created_file);
    assert_ne!(second.record.id, added.record.id);

    let listed = file::list(&path).unwrap();
    assert_eq!(listed, vec![added.record.clone(), second.record.clone()]);
    assert_eq!(listed[0].tenant_id, "acme");
    assert_eq!(
        listed[0].list_cells(),
        [added.record.id.as_str(), "acme", "acme backend", "2026-12-07 12:00:00Z", "", "50/s, burst 100"]
    );
    assert_eq!(listed[1].list_cells()[5], "default");
    assert!(listed.iter().all(|r| !r.list_cells().concat().contains(&r.sha256.to_hex())), "list never shows a hash");

    let keys = file::load(&path).unwrap();
    assert!(matches!(keys.lookup(added.key.expose()), Lookup::Valid(_)));
    // Revoke by id (or by the key's text); again is a no-op.
    let later = now() + chrono::Duration::hours(1);
    let revoked = file::revoke(&path, &added.record.id, later).unwrap();
    assert_eq!((revoked.already_revoked, revoked.record.revoked_at), (false, Some(later)));
    assert!(file::revoke(&path, added.key.expose(), later).unwrap().already_revoked);
    assert_eq!(mode(&path), 0o600);
    let keys = file::load(&path).unwrap();
    assert!(matches!(keys.lookup(added.key.expose()), Lookup::Revoked(_)));
    assert!(matches!(keys.lookup(second.key.expose()), Lookup::Valid(_)));
    assert_eq!(file::list(&path).unwrap()[0].list_cells()[4], "2026-12-07 13:00:00Z");
    assert!(matches!(file::revoke(&path, "0123456789ab", later), Err(KeysError::UnknownId { .. })));
    // No temporary file is left behind.
    let names: Vec<String> =
        std::fs::read_dir(dir.file("sub")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n == "api-keys.toml" || n == "api-keys.toml.lock"), "{names:?}");
}

#[test]
fn adding_needs_a_tenant_and_a_positive_burst() {
    let dir = TempDir::new();
    let path = dir.file("k.toml");
    assert!(matches!(file::add(&path, new_key(" "), now()), Err(KeysError::Usage(_))));
    let zero_burst = NewKey { burst: Some(0), ..new_key("acme") };
    assert!(matches!(file::add(&path, zero_burst, now()), Err(KeysError::Usage(_))));
    assert!(!path.exists());
    assert!(matches!(file::list(&path), Err(KeysError::Missing { .. })));
    assert!(matches!(file::load(&path), Err(KeysError::Missing { .. })));
}

const PLAIN: &str = r#"
[[keys]]
key = "acme-example-key-change-me-0001"
tenant_id = "acme"
name = "acme backend"

[[keys]]
key = "globex-example-key-change-me-0002"
tenant_id = "globex"
"#;

#[test]
fn plain_text_files_are_refused_until_imported_and_their_keys_keep_working() {
    let dir = TempDir::new();
    let path = dir.file("api-keys.toml");
    std::fs::write(&path, PLAIN).unwrap();
    let err = file::load(&path).unwrap_err();
    assert!(matches!(err, KeysError::PlainText { count: 2, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("ledger ingest keys import --api-keys"), "{message}");
    assert!(!message.contains("change-me"), "never a key in a message: {message}");
    // `keys add` on it asks for the import first and changes nothing.
    assert!(matches!(file::add(&path, new_key("acme"), now()), Err(KeysError::PlainText { .. })));

    assert_eq!(file::import(&path, now()).unwrap(), Imported { imported: 2, kept: 0 });
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("change-me"), "no key text is left:\n{text}");
    assert_eq!(mode(&path), 0o600);
    let keys = file::load(&path).unwrap();
    assert!(matches!(keys.lookup("acme-example-key-change-me-0001"), Lookup::Valid(r) if r.tenant_id == "acme" && r.imported));
    assert!(matches!(keys.lookup("globex-example-key-change-me-0002"), Lookup::Valid(r) if r.tenant_id == "globex"));
    assert_eq!(keys.records()[0].name.as_deref(), Some("acme backend"));
    assert_eq!(keys.records()[0].list_cells()[2], "acme backend (imported)");
    // Importing again changes nothing; new keys and revocations work on the imported file.
    assert_eq!(file::import(&path, now()).unwrap(), Imported { imported: 0, kept: 2 });
    let added = file::add(&path, new_key("acme"), now()).unwrap();
    file::revoke(&path, &keys.records()[1].id, now()).unwrap();
    let keys = file::load(&path).unwrap();
    assert!(matches!(keys.lookup("globex-example-key-change-me-0002"), Lookup::Revoked(_)));
    assert!(matches!(keys.lookup(added.key.expose()), Lookup::Valid(_)));
}

#[test]
fn import_refuses_short_plain_keys() {
    let dir = TempDir::new();
    let path = dir.file("api-keys.toml");
    std::fs::write(&path, "[[keys]]\nkey = \"short\"\ntenant_id = \"acme\"\n").unwrap();
    let err = file::import(&path, now()).unwrap_err().to_string();
    assert!(err.contains("shorter than 16") && !err.contains("short\""), "{err}");
    assert!(std::fs::read_to_string(&path).unwrap().contains("short"), "the file is unchanged");
}

#[test]
fn broken_files_are_described_without_quoting_them() {
    let dir = TempDir::new();
    let path = dir.file("api-keys.toml");
    let cases = [
        ("[[keys]\nkey = \"secret-text-0123456789\"\n", "line 1"),
        ("[[keys]]\nid = \"aaaaaaaaaaaa\"\ntenant_id = \"a\"\nsha256 = \"secret-text-0123456789\"\ncreated_at = \"2026-12-07T12:00:00Z\"\n", "64 hex digits"),
        ("[[keys]]\nid = \"aaaaaaaaaaaa\"\ntenant_id = \"a\"\n", "sha256"),
        ("[[keys]]\nkey = \"secret-text-0123456789\"\ntenant = \"a\"\n", "unknown field"),
        ("keys = 3\n", "[[keys]] tables"),
        ("[other]\n", "unknown top-level key"),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let err = file::load(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected:?} not in {err}");
        assert!(!err.contains("secret-text"), "the file is never quoted: {err}");
    }
    std::fs::write(&path, "# nothing yet\n").unwrap();
    assert!(file::load(&path).unwrap_err().to_string().contains("no [[keys]] entry"));
    assert_eq!(file::list(&path).unwrap(), vec![], "listing an empty file is fine");
}

#[test]
fn the_example_keys_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/api-keys.example.toml");
    let keys = file::load(&path).unwrap();
    assert!(!keys.is_empty());
}

#[test]
fn concurrent_adds_all_land() {
    let dir = TempDir::new();
    let path = dir.file("api-keys.toml");
    let added: Vec<KeyRecord> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                s.spawn({
                    let path = path.clone();
                    move || file::add(&path, new_key(&format!("tenant{i}")), now()).unwrap().record
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let listed = file::list(&path).unwrap();
    assert_eq!(listed.len(), 8, "the lock serialises the read-modify-write of every add");
    for r in &added {
        assert!(listed.contains(r));
    }
}
