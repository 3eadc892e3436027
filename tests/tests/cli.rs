//! The `ledger` binary's commands that need no service: `ledger stack` passes its arguments
//! to the stack script.

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
