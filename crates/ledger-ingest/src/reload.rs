//! Reloading the keys file without a restart: its size, modification time and inode are
//! checked every `ingest.reload_interval_ms` (1 s); when they change the file is read again. A
//! valid file replaces the keys in force at once (a revoked key is refused from the next
//! request on); a missing or broken file is logged and the keys in force stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::keys::{file, ApiKeys, KeysError};
use crate::server::IngestState;

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// A rename over the file (as `ledger ingest keys` does) changes it even within one tick
    /// of a coarse clock.
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp { len: meta.len(), modified: meta.modified().ok(), inode })
}

/// What a poll found.
#[derive(Debug)]
pub enum Reload {
    /// The file did not change.
    Unchanged,
    /// It changed and is valid: these keys go in force.
    Changed(ApiKeys),
    /// It changed (or went away) and is not usable: the keys in force stay.
    Refused(KeysError),
}

/// Watches one keys file.
#[derive(Debug)]
pub struct KeysWatcher {
    path: PathBuf,
    last: Option<Stamp>,
}

impl KeysWatcher {
    /// Remembers the file as it is now: create the watcher *before* loading the keys, so a
    /// change in between is seen by the first poll.
    pub fn new(path: &Path) -> KeysWatcher {
        KeysWatcher { path: path.to_owned(), last: stamp(path) }
    }

    /// Checks the file once. A change is reported once: a broken file is not read again until
    /// it changes again.
    pub fn poll(&mut self) -> Reload {
        let now = stamp(&self.path);
        if now == self.last {
            return Reload::Unchanged;
        }
        self.last = now;
        match file::load(&self.path) {
            Ok(keys) => Reload::Changed(keys),
            Err(e) => Reload::Refused(e),
        }
    }
}

/// Polls `watcher` every `interval` and puts each valid new file in force in `state`; runs
/// until the task is aborted.
pub async fn watch_keys(state: Arc<IngestState>, mut watcher: KeysWatcher, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Reading a small file; a blocking call is fine on the runtime at this rate.
        match watcher.poll() {
            Reload::Unchanged => {}
            Reload::Changed(keys) => {
                tracing::info!(path = %watcher.path.display(), keys = keys.len(), active = keys.active(), "API keys file changed: reloaded");
                state.metrics().key_reload(true);
                state.replace_keys(keys);
            }
            Reload::Refused(e) => {
                state.metrics().key_reload(false);
                tracing::error!("the changed API keys file is not used; the keys in force stay. {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::file::{self, NewKey};

    #[test]
    fn a_changed_file_is_reported_once_and_a_broken_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("ledger-reload-test-{}", crate::keys::new_key_id()));
        let path = dir.join("api-keys.toml");
        let now = chrono::Utc::now();
        let first = file::add(&path, NewKey { tenant_id: "acme".into(), ..NewKey::default() }, now).unwrap();
        let mut watcher = KeysWatcher::new(&path);
        assert!(matches!(watcher.poll(), Reload::Unchanged));

        file::revoke(&path, &first.record.id, now).unwrap();
        match watcher.poll() {
            Reload::Changed(keys) => assert_eq!(keys.active(), 0),
            other => panic!("expected the revocation, got {other:?}"),
        }
        assert!(matches!(watcher.poll(), Reload::Unchanged), "reported once");

        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, "[[keys]\nbroken").unwrap();
        assert!(matches!(watcher.poll(), Reload::Refused(KeysError::Invalid { .. })));
        assert!(matches!(watcher.poll(), Reload::Unchanged), "a broken file is not re-read until it changes");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(watcher.poll(), Reload::Refused(KeysError::Missing { .. })));
        std::fs::write(&path, good).unwrap();
        assert!(matches!(watcher.poll(), Reload::Changed(keys) if keys.len() == 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
