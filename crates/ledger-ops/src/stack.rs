//! `ledger stack`: finding `scripts/stack.sh`, which installs, starts, stops and inspects the
//! local stack, and passing its exit status on.

use std::path::{Path, PathBuf};

use crate::OpsError;

/// The help text after `ledger stack --help`'s options: examples, what runs, the environment.
pub const AFTER_HELP: &str = "\
Examples:
  ledger stack up               # install what is missing, start both, wait until healthy
  ledger stack up --secure      # also Kafka SASL_SSL (SCRAM) and ClickHouse HTTPS, then e.g.
  ledger report spend --config .state/secure/ledger.toml
  ledger stack up --registry    # also a schema registry (Apicurio, Confluent API) on 127.0.0.1:8081
  ledger stack up --secure --registry   # both; the registry then also serves HTTPS
  LEDGER_STATE_DIR=/tmp/cluster ledger stack up --cluster   # three Kafka nodes (9092, 9102, 9112)
  ledger stack status           # exit 0 when both run and answer, 3 otherwise
  ledger stack logs kafka -f    # follow the broker log
  ledger stack down             # stop what `up` started (data is kept)
  ledger stack down --purge     # stop and delete all state

  # a second, independent stack on other ports:
  LEDGER_STATE_DIR=/tmp/s2 LEDGER_KAFKA_PORT=19092 LEDGER_KAFKA_CONTROLLER_PORT=19093 \\
    LEDGER_CLICKHOUSE_HTTP_PORT=18123 LEDGER_CLICKHOUSE_TCP_PORT=19000 ledger stack up

What runs (loopback only):
  Apache Kafka 4.1.1, single node KRaft (broker + controller), jars resolved from Maven Central with
  mvn, on the machine's Java 17; ClickHouse from Debian's clickhouse-server package. `up` installs
  missing packages with apt-get (needs root or sudo). Topics are not auto-created. With --registry:
  Apicurio Registry 2.6 from Maven Central (Confluent-compatible API at /apis/ccompat/v7, schemas
  kept in an H2 file under the state dir); like --secure, kept by later `up`s of the state dir.
  With --cluster (a state dir of its own): three Kafka nodes, each broker and controller, and
  <state>/cluster/ledger.toml, which makes the ledger's topics with 3 replicas and min ISR 2.

Environment (defaults in brackets):
  LEDGER_STATE_DIR [<repo>/.state]      data, generated configs, logs and pid files
  LEDGER_CACHE_DIR [~/.cache/llm-ledger] Kafka jars (kafka-4.1.1/lib), the registry's (apicurio-*)
  LEDGER_KAFKA_PORT [9092]              LEDGER_KAFKA_CONTROLLER_PORT [9093]
  LEDGER_CLICKHOUSE_HTTP_PORT [8123]    LEDGER_CLICKHOUSE_TCP_PORT [9000]
  LEDGER_KAFKA_SECURE_PORT [9094]       LEDGER_CLICKHOUSE_HTTPS_PORT [8443]  (--secure)
  LEDGER_REGISTRY_PORT [8081]           LEDGER_REGISTRY_HTTPS_PORT [8444]  (--registry, + --secure)
  LEDGER_CLICKHOUSE_INTERSERVER_PORT [disabled]
  LEDGER_KAFKA_HEAP [-Xms512m -Xmx1g]   LEDGER_KAFKA_AUTO_CREATE_TOPICS [false]
  LEDGER_CLICKHOUSE_MAX_MEMORY [2000000000 bytes]
  LEDGER_KAFKA_START_TIMEOUT [90 s]     LEDGER_CLICKHOUSE_START_TIMEOUT [60 s]
  LEDGER_STOP_TIMEOUT [30 s]            LEDGER_SCRIPTS_DIR [found automatically]

The script is looked up in --scripts-dir / LEDGER_SCRIPTS_DIR, then in `scripts/` of the current
directory and its parents, then next to the `ledger` binary's checkout, then in the source tree
`ledger` was built from.";

/// The script's file name.
pub const SCRIPT: &str = "stack.sh";

/// Where stack.sh is: the explicit folder, then `scripts/` in the current directory or a parent,
/// then in a parent of the binary (e.g. `<repo>/target/release/ledger`), then in the source tree
/// `source_dir` (a crate of the build) belongs to.
pub fn find_script(explicit: Option<&Path>, source_dir: &Path) -> Result<PathBuf, OpsError> {
    if let Some(dir) = explicit {
        let script = dir.join(SCRIPT);
        if !script.is_file() {
            return Err(OpsError::Invalid(format!(
                "{} does not exist (from --scripts-dir / LEDGER_SCRIPTS_DIR)",
                script.display()
            )));
        }
        return Ok(script);
    }
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|d| d.join("scripts").join(SCRIPT)));
    }
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        candidates.extend(exe.ancestors().skip(1).map(|d| d.join("scripts").join(SCRIPT)));
    }
    candidates.extend(source_dir.ancestors().map(|d| d.join("scripts").join(SCRIPT)));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        OpsError::Invalid(format!(
            "cannot find scripts/{SCRIPT}: run `ledger stack` inside the repository checkout, \
             or set LEDGER_SCRIPTS_DIR to the folder holding {SCRIPT}"
        ))
    })
}

/// The exit code to pass on for a child's status: its code, else 128 + the signal that ended it.
pub fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_script_in_the_source_tree() {
        let script = find_script(None, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(script.ends_with("scripts/stack.sh"), "{}", script.display());
        let missing = find_script(Some(Path::new("/nonexistent")), Path::new("/")).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/stack.sh does not exist"), "{missing}");
    }

    #[test]
    fn exit_codes_pass_through() {
        use std::os::unix::process::ExitStatusExt as _;
        // wait(2) status encoding: exit code in the high byte, a signal in the low bits.
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(9)), 137);
    }
}
