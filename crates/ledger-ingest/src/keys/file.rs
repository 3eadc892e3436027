//! The keys file: TOML `[[keys]]` entries, read by the server and changed by
//! `ledger ingest keys add|revoke|import`. Every change is written to a temporary file (mode
//! 600) that then replaces the file in one rename, under a lock file (`<file>.lock`), so a
//! server reading it sees the old or the new file, never half of one, and two operators
//! changing it at once both get their change.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::{key_id, new_key_id, ApiKeys, KeyHash, KeyRecord, KeysError, SecretKey, MIN_PLAIN_KEY_LEN};

/// The comment at the top of every file `ledger ingest keys` writes.
const HEADER: &str = "\
# Tenant API keys of `ledger ingest` (ingest.api_keys_file), written by
# `ledger ingest keys add|revoke|import`: comments added by hand are not kept.
# Each key is stored as the SHA-256 hash of its text; the text is shown once by `keys add` and
# kept nowhere. A running server reloads this file within a second of a change.
# Format and fields: docs/ingest.md (\"API keys\").
";

/// An entry of the earlier format, with the key's text (only [`import`] reads it). No `Debug`:
/// nothing may print it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainEntry {
    key: String,
    tenant_id: String,
    #[serde(default)]
    name: Option<String>,
}

enum Entry {
    Hashed(KeyRecord),
    Plain(PlainEntry),
}

#[derive(Serialize)]
struct FileRepr<'a> {
    keys: &'a [KeyRecord],
}

fn invalid(path: &Path, problem: impl Into<String>) -> KeysError {
    KeysError::Invalid { path: path.to_owned(), problem: problem.into() }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeysError + '_ {
    move |source| KeysError::Io { path: path.to_owned(), source }
}

/// The entries of a keys file's text, either format. Errors name the line or entry and never
/// quote the file (it may hold plain-text keys).
fn parse_entries(text: &str, path: &Path) -> Result<Vec<Entry>, KeysError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let what = e.message().trim().replace('\n', "; ");
        let what = if what.is_empty() { "a syntax error".to_owned() } else { what };
        invalid(path, format!("not valid TOML (line {}): {what}", line.unwrap_or(0)))
    })?;
    if let Some(other) = table.keys().find(|k| *k != "keys") {
        return Err(invalid(path, format!("unknown top-level key `{other}`: the file holds [[keys]] tables only")));
    }
    let Some(keys) = table.get("keys") else { return Ok(Vec::new()) };
    let Some(array) = keys.as_array() else { return Err(invalid(path, "`keys` must be [[keys]] tables")) };
    array
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let plain = value.as_table().is_some_and(|t| t.contains_key("key"));
            let entry = if plain {
                value.clone().try_into::<PlainEntry>().map(Entry::Plain)
            } else {
                value.clone().try_into::<KeyRecord>().map(Entry::Hashed)
            };
            entry.map_err(|e| invalid(path, format!("entry #{}: {}", i + 1, e.message())))
        })
        .collect()
}

/// The entries of a keys file's text; a file with plain-text keys is [`KeysError::PlainText`].
pub fn parse(text: &str, path: &Path) -> Result<Vec<KeyRecord>, KeysError> {
    let entries = parse_entries(text, path)?;
    let plain = entries.iter().filter(|e| matches!(e, Entry::Plain(_))).count();
    if plain > 0 {
        return Err(KeysError::PlainText { path: path.to_owned(), count: plain });
    }
    let records: Vec<KeyRecord> = entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Hashed(r) => Some(r),
            Entry::Plain(_) => None,
        })
        .collect();
    ApiKeys::from_records(records.clone()).map_err(|p| invalid(path, p))?;
    Ok(records)
}

fn read_text(path: &Path) -> Result<String, KeysError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KeysError::Missing { path: path.to_owned() },
        _ => KeysError::Io { path: path.to_owned(), source: e },
    })
}

/// The entries of the keys file at `path`.
pub fn read(path: &Path) -> Result<Vec<KeyRecord>, KeysError> {
    parse(&read_text(path)?, path)
}

/// The keys the server puts in force: the file must exist, be valid and hold at least one entry.
pub fn load(path: &Path) -> Result<ApiKeys, KeysError> {
    let records = read(path)?;
    if records.is_empty() {
        return Err(invalid(path, "no [[keys]] entry: nobody could write usage (`ledger ingest keys add --tenant T`)"));
    }
    ApiKeys::from_records(records).map_err(|p| invalid(path, p))
}

/// The text of a keys file holding `records`.
pub fn render(records: &[KeyRecord]) -> String {
    let body = toml::to_string(&FileRepr { keys: records }).unwrap_or_default();
    format!("{HEADER}\n{body}")
}

/// Creates `path` (not existing yet) for writing, readable and writable by its owner only.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // The umask can only have cleared bits; make it exactly 600 all the same.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Writes `records` to `path` atomically: a temporary file of mode 600 beside it, flushed to
/// disk, then renamed over it.
pub fn write(path: &Path, records: &[KeyRecord]) -> Result<(), KeysError> {
    let dir = directory_of(path);
    std::fs::create_dir_all(&dir).map_err(io_error(path))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "api-keys.toml".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let text = render(records);
    let written = (|| {
        let _ = std::fs::remove_file(&tmp); // left by a crashed run with the same pid
        let mut file = create_private(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is (best effort: not every system
        // lets a directory be opened).
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io_error(path))
}

/// Runs `change` holding `<path>.lock`, so that concurrent `ledger ingest keys` commands change
/// the file one after the other (each reads what the previous one wrote).
fn locked<T>(path: &Path, change: impl FnOnce() -> Result<T, KeysError>) -> Result<T, KeysError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    std::fs::create_dir_all(directory_of(path)).map_err(io_error(path))?;
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options.open(&lock_path).map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    change()
    // The lock is released when `lock` is dropped.
}

/// A key to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewKey {
    /// The tenant whose usage it may write.
    pub tenant_id: String,
    /// Who holds it.
    pub name: Option<String>,
    /// Its rate limit in events per second (0: none; unset: `ingest.rate_limit`).
    pub rate_limit: Option<u32>,
    /// Its burst in events (unset: the default).
    pub burst: Option<u32>,
}

/// A key just created: its entry, and its text to hand over (never stored).
#[derive(Debug)]
pub struct AddedKey {
    /// The entry written to the file.
    pub record: KeyRecord,
    /// The key's text.
    pub key: SecretKey,
    /// True when the file did not exist before.
    pub created_file: bool,
}

/// Creates a key and adds its entry (with its hash, not its text) to the file, creating the
/// file when it does not exist.
pub fn add(path: &Path, new: NewKey, now: DateTime<Utc>) -> Result<AddedKey, KeysError> {
    let tenant_id = new.tenant_id.trim().to_owned();
    if tenant_id.is_empty() {
        return Err(KeysError::Usage("the tenant must not be empty (--tenant TENANT)".into()));
    }
    if new.burst == Some(0) {
        return Err(KeysError::Usage("the burst must be at least 1 event".into()));
    }
    locked(path, || {
        let (mut records, created_file) = match read(path) {
            Ok(records) => (records, false),
            Err(KeysError::Missing { .. }) => (Vec::new(), true),
            Err(e) => return Err(e),
        };
        let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let id = std::iter::repeat_with(new_key_id).find(|id| !ids.contains(id.as_str())).unwrap_or_else(new_key_id);
        let key = SecretKey::generate(&id);
        let record = KeyRecord {
            id,
            tenant_id,
            name: new.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()),
            sha256: key.hash(),
            created_at: now.trunc_subsecs(0),
            revoked_at: None,
            rate_limit: new.rate_limit,
            burst: new.burst,
            imported: false,
        };
        records.push(record.clone());
        ApiKeys::from_records(records.clone()).map_err(|p| invalid(path, p))?;
        write(path, &records)?;
        Ok(AddedKey { record, key, created_file })
    })
}

impl AddedKey {
    /// What to tell the operator beside the key itself (which goes alone to standard output).
    pub fn note(&self, path: &Path) -> String {
        format!(
            "key {} of tenant {} added to {}{}. It is shown this once and stored only as its hash: hand it to its \
             holder now. Clients send it as `Authorization: Bearer <key>`.",
            self.record.id,
            self.record.tenant_id,
            path.display(),
            if self.created_file { " (created)" } else { "" }
        )
    }
}

/// The entries of the file, for `ledger ingest keys list`.
pub fn list(path: &Path) -> Result<Vec<KeyRecord>, KeysError> {
    read(path)
}

/// The result of [`revoke`].
#[derive(Debug)]
pub struct Revocation {
    /// The entry as it now is.
    pub record: KeyRecord,
    /// True when it was revoked before (the file was not changed).
    pub already_revoked: bool,
}

impl std::fmt::Display for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self.record.revoked_at.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default();
        let what = if self.already_revoked { "was already revoked" } else { "revoked" };
        write!(
            f,
            "key {} of tenant {} {what} at {at}; a running server refuses it within a second.",
            self.record.id, self.record.tenant_id
        )
    }
}

/// Marks the key `id` revoked (`revoked_at` = `now`). A full key text is taken as its id.
pub fn revoke(path: &Path, id: &str, now: DateTime<Utc>) -> Result<Revocation, KeysError> {
    let id = key_id(id.trim()).unwrap_or(id.trim()).to_owned();
    locked(path, || {
        let mut records = read(path)?;
        let Some(record) = records.iter_mut().find(|r| r.id == id) else {
            return Err(KeysError::UnknownId { id, path: path.to_owned() });
        };
        if record.is_revoked() {
            return Ok(Revocation { record: record.clone(), already_revoked: true });
        }
        record.revoked_at = Some(now.trunc_subsecs(0));
        let record = record.clone();
        write(path, &records)?;
        Ok(Revocation { record, already_revoked: false })
    })
}

/// The result of [`import`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Plain-text keys replaced by their hash.
    pub imported: usize,
    /// Entries that were already hashed.
    pub kept: usize,
}

impl Imported {
    /// One line for the operator.
    pub fn describe(&self, path: &Path) -> String {
        format!(
            "{}: {} plain-text keys replaced by their hash, {} entries kept as they were.",
            path.display(),
            self.imported,
            self.kept
        )
    }
}

/// Rewrites a keys file of the earlier format in place: every plain-text `key` becomes an
/// entry with a new id and the key's SHA-256 hash (`imported = true`), so the same key texts
/// keep working and none is left on disk. Entries already hashed are kept as they are.
pub fn import(path: &Path, now: DateTime<Utc>) -> Result<Imported, KeysError> {
    locked(path, || {
        let entries = parse_entries(&read_text(path)?, path)?;
        let mut ids: HashSet<String> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Hashed(r) => Some(r.id.clone()),
                Entry::Plain(_) => None,
            })
            .collect();
        let (mut records, mut imported) = (Vec::with_capacity(entries.len()), 0);
        for (i, entry) in entries.into_iter().enumerate() {
            let plain = match entry {
                Entry::Hashed(r) => {
                    records.push(r);
                    continue;
                }
                Entry::Plain(p) => p,
            };
            if plain.key.trim().len() < MIN_PLAIN_KEY_LEN {
                return Err(invalid(path, format!("entry #{}: `key` is shorter than {MIN_PLAIN_KEY_LEN} characters", i + 1)));
            }
            let id = std::iter::repeat_with(new_key_id).find(|id| !ids.contains(id)).unwrap_or_else(new_key_id);
            ids.insert(id.clone());
            records.push(KeyRecord {
                id,
                tenant_id: plain.tenant_id.trim().to_owned(),
                name: plain.name,
                sha256: KeyHash::of(&plain.key),
                created_at: now.trunc_subsecs(0),
                revoked_at: None,
                rate_limit: None,
                burst: None,
                imported: true,
            });
            imported += 1;
        }
        ApiKeys::from_records(records.clone()).map_err(|p| invalid(path, p))?;
        if imported > 0 {
            write(path, &records)?;
        }
        Ok(Imported { imported, kept: records.len() - imported })
    })
}

/// Column titles of `ledger ingest keys list`.
pub const LIST_COLUMNS: [&str; 6] = ["id", "tenant", "name", "created", "revoked", "rate limit"];

impl KeyRecord {
    /// This entry's cells under [`LIST_COLUMNS`] (never its hash).
    pub fn list_cells(&self) -> Vec<String> {
        let time = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
        let mut name = self.name.clone().unwrap_or_default();
        if self.imported {
            name = format!("{name} (imported)").trim_start().to_owned();
        }
        let rate = match (self.rate_limit, self.burst) {
            (Some(0), _) => "none".to_owned(),
            (Some(r), None) => format!("{r}/s"),
            (Some(r), Some(b)) => format!("{r}/s, burst {b}"),
            (None, None) => "default".to_owned(),
            (None, Some(b)) => format!("default, burst {b}"),
        };
        vec![
            self.id.clone(),
            self.tenant_id.clone(),
            name,
            time(&self.created_at),
            self.revoked_at.as_ref().map(time).unwrap_or_default(),
            rate,
        ]
    }
}
