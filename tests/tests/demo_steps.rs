//! The steps of `scripts/demo.sh` that live in their own scripts, run on the real stack with this
//! test's topics and database. `scripts/demo.sh` promises it can run again and again; its budget
//! step once failed the third run in a row: with no new signal to publish, `grep -c` printed 0
//! and exited 1, fatal under `set -o pipefail`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ledger_tests::{produce_synthetic, random_suffix, read_topic, workspace_root, TestEnv};

/// Budgets every synthetic load crosses at once: a cent a month for the two biggest tenants, no
/// look-ahead (the states follow from the spend alone).
const BUDGETS: &str = r#"
[defaults]
timezone = "UTC"
lookahead_secs = 0

[[budget]]
name = "acme-cent"
scope = { tenant_id = "acme" }
period = "month"
limit_usd = "0.01"
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "100"
action = "block"

[[budget]]
name = "globex-cent"
scope = { tenant_id = "globex" }
period = "month"
limit_usd = "0.01"
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;

/// Runs `scripts/demo/enforce-step.sh` with the test's `ledger` binary and settings.
fn enforce_step(env: &TestEnv, budgets: &Path) -> Output {
    let ledger = env.ledger();
    let mut step = Command::new("bash");
    step.arg(workspace_root().join("scripts/demo/enforce-step.sh"))
        .arg(ledger.get_program())
        .arg(budgets)
        .current_dir(workspace_root())
        .env("LEDGER__ENFORCER__GROUP_ID", format!("{}-enforcer", env.group));
    for (key, value) in ledger.get_envs() {
        match value {
            Some(value) => step.env(key, value),
            None => step.env_remove(key),
        };
    }
    step.output().expect("running scripts/demo/enforce-step.sh")
}

/// The step's exit status must be 0; returns the number of signals it says it published.
fn published(run: &str, out: &Output) -> usize {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let explain = || format!("{run} run ({}):\nstdout:\n{stdout}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the enforce step exits 0 on its {}", explain());
    let count = stdout
        .lines()
        .find_map(|line| line.strip_prefix("the enforcer published ")?.strip_suffix(" signal(s) this run")?.parse().ok());
    count.unwrap_or_else(|| panic!("the enforce step reports how many signals it published on its {}", explain()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_enforce_step_runs_again_and_reports_no_new_signal() {
    let env = TestEnv::new("demo_steps");
    env.run_ledger(&["migrate"]);
    produce_synthetic(&env, 2_000, 26, 0, 0).await;
    env.run_ledger(&["process", "--until-drained"]);
    let budgets: PathBuf = std::env::temp_dir().join(format!("demo-steps-budgets-{}.toml", random_suffix()));
    std::fs::write(&budgets, BUDGETS).expect("writing the budgets file");

    let first = published("first", &enforce_step(&env, &budgets));
    let on_topic = read_topic(&env, &env.topics.signals).len();
    assert!(first >= 2, "both tenants are over their budgets, so the first run publishes their signals (it said {first})");
    assert_eq!(first, on_topic, "the first run reports what it published on the signals topic");

    // Nothing new since: the second run publishes nothing, says so, and still succeeds.
    let second = published("second", &enforce_step(&env, &budgets));
    assert_eq!(second, 0, "the second run finds nothing to publish");
    assert_eq!(read_topic(&env, &env.topics.signals).len(), on_topic, "the second run published nothing");

    let _ = std::fs::remove_file(&budgets);
}
