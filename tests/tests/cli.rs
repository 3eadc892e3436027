//! The `ledger` binary's commands that need no service: `ledger stack` passes its arguments
//! to the stack script, and `ledger ingest keys` manages a keys file.

use std::path::PathBuf;
use std::process::{Command, Output};

use ledger_tests::{ledger_bin, random_suffix};

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("ledger-cli-test-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.env("RUST_LOG", "warn").output().expect("running ledger");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn stack_passes_its_arguments_to_the_script() {
    let dir = TempDir::new();
    std::fs::write(dir.0.join("stack.sh"), "echo \"args: $*\"\n").expect("fake stack.sh");
    for (argv, expected) in [
        (vec!["up"], "up"),
        (vec!["up", "--secure"], "up --secure"),
        (vec!["down"], "down"),
        (vec!["down", "--purge"], "down --purge"),
        (vec!["status"], "status"),
        (vec!["logs"], "logs -n 40"),
        (vec!["logs", "kafka", "-f", "-n", "5"], "logs kafka -f -n 5"),
        (vec!["logs", "clickhouse"], "logs clickhouse -n 40"),
    ] {
        let out = run(Command::new(ledger_bin()).arg("stack").args(&argv).env("LEDGER_SCRIPTS_DIR", &dir.0));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("args: {expected}"), "ledger stack {argv:?}");
    }
}

#[test]
fn ingest_keys_add_list_revoke_and_import() {
    let dir = TempDir::new();
    let file = dir.0.join("keys.toml");
    let keys = |args: &[&str]| run(Command::new(ledger_bin()).args(["ingest", "keys"]).args(args).arg("--api-keys").arg(&file));

    // `add` prints the key alone on stdout (for scripts), the explanation on stderr.
    let out = keys(&["add", "--tenant", "acme", "--name", "acme backend", "--rate-limit", "50", "--burst", "100"]);
    let key = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    assert!(key.starts_with("lk_") && key.len() == 80, "{key}");
    let id = &key[3..15];
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));
    let text = std::fs::read_to_string(&file).expect("keys file");
    assert!(text.contains(id) && !text.contains(&key), "stored hashed:\n{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    }

    let list = String::from_utf8(keys(&["list"]).stdout).expect("utf-8");
    for cell in ["id", "tenant", "rate limit", id, "acme backend", "50/s, burst 100"] {
        assert!(list.contains(cell), "{cell:?} missing from\n{list}");
    }
    assert!(!list.contains(&key[16..]), "never the secret");

    let revoked = String::from_utf8(keys(&["revoke", id]).stdout).expect("utf-8");
    assert!(revoked.contains(&format!("key {id} of tenant acme revoked")), "{revoked}");
    assert!(String::from_utf8(keys(&["list"]).stdout).expect("utf-8").contains("Z"), "revoked time listed");
    let unknown = Command::new(ledger_bin()).args(["ingest", "keys", "revoke", "0123456789ab", "--api-keys"]).arg(&file).output();
    let unknown = unknown.expect("ledger");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no API key with id 0123456789ab"));

    // A file of the plain-text format: the server's error says how to import it.
    let plain = dir.0.join("plain.toml");
    std::fs::write(&plain, "[[keys]]\nkey = \"plain-text-key-0123456789\"\ntenant_id = \"acme\"\n").expect("plain file");
    let refused = Command::new(ledger_bin()).args(["ingest", "--api-keys"]).arg(&plain).output().expect("ledger");
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("ledger ingest keys import") && !message.contains("plain-text-key"), "{message}");
    let imported = run(Command::new(ledger_bin()).args(["ingest", "keys", "import", "--api-keys"]).arg(&plain));
    assert!(String::from_utf8_lossy(&imported.stdout).contains("1 plain-text keys replaced by their hash"));
    assert!(!std::fs::read_to_string(&plain).expect("file").contains("plain-text-key"));
}
