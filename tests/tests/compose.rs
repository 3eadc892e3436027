//! docker-compose.yml is checked without a Docker engine: `docker-compose config -q` validates it
//! against the Compose schema (Debian's docker-compose 1.29 needs no engine for `config`), and the
//! parsed YAML must hold the services, healthchecks and wiring the README promises.
//!
//! docker-compose missing is a failure, not a skip: CI installs it (`scripts/install-deps.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn compose_file() -> PathBuf {
    repo_root().join("docker-compose.yml")
}

fn compose() -> Value {
    let path = compose_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"].get(name).unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn env_var<'a>(svc: &'a Value, key: &str) -> Option<&'a str> {
    let env = &svc["environment"];
    if let Some(v) = env.get(key) {
        return v.as_str();
    }
    // List form: ["KEY=value", ...]
    env.as_sequence()?.iter().filter_map(Value::as_str).find_map(|kv| kv.strip_prefix(&format!("{key}=")))
}

fn depends_condition<'a>(svc: &'a Value, on: &str) -> Option<&'a str> {
    svc["depends_on"].get(on)?.get("condition")?.as_str()
}

#[test]
fn docker_compose_config_accepts_the_file() {
    let file = compose_file();
    let output =
        match Command::new("docker-compose").arg("-f").arg(&file).args(["config", "-q"]).current_dir(repo_root()).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "docker-compose is not installed, so docker-compose.yml cannot be validated: run the install \
             step first (scripts/install-deps.sh, or `apt-get install -y docker-compose`); CI installs it"
            ),
            Err(e) => panic!("cannot run docker-compose: {e}"),
        };
    assert!(
        output.status.success(),
        "`docker-compose -f {} config -q` rejected the file ({}):\n{}{}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_service_exists_and_the_servers_have_healthchecks() {
    let doc = compose();
    for name in ["kafka", "clickhouse", "migrate", "processor", "enforcer"] {
        service(&doc, name);
    }
    for name in ["kafka", "clickhouse", "processor"] {
        let test = str_list(&service(&doc, name)["healthcheck"]["test"]);
        assert!(
            test.first().is_some_and(|k| k == "CMD" || k == "CMD-SHELL") && test.len() >= 2,
            "service `{name}` needs a healthcheck with a CMD/CMD-SHELL test, has {test:?}"
        );
    }
    let kafka_image = service(&doc, "kafka")["image"].as_str().unwrap_or_default();
    assert_eq!(kafka_image, "apache/kafka:4.1.1", "the broker is the official Apache Kafka image");
    let ch_image = service(&doc, "clickhouse")["image"].as_str().unwrap_or_default();
    assert!(ch_image.starts_with("clickhouse/clickhouse-server:"), "official ClickHouse image, got {ch_image}");
}

#[test]
fn kafka_runs_single_node_kraft() {
    let doc = compose();
    let kafka = service(&doc, "kafka");
    assert_eq!(env_var(kafka, "KAFKA_PROCESS_ROLES"), Some("broker,controller"));
    assert!(env_var(kafka, "CLUSTER_ID").is_some_and(|id| !id.is_empty()), "KRaft needs a CLUSTER_ID");
    assert!(env_var(kafka, "KAFKA_CONTROLLER_QUORUM_VOTERS").is_some(), "KRaft needs the controller quorum");
    for key in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ] {
        let value = kafka["environment"].get(key).map(|v| match v {
            Value::Number(n) => n.to_string(),
            other => other.as_str().unwrap_or_default().to_owned(),
        });
        assert_eq!(value.as_deref(), Some("1"), "{key} must be 1 on a single node");
    }
    let advertised = env_var(kafka, "KAFKA_ADVERTISED_LISTENERS").unwrap_or_default();
    assert!(advertised.contains("//kafka:9092"), "containers reach the broker as kafka:9092: {advertised}");
}

#[test]
fn published_ports_are_loopback_only() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services is a mapping");
    for (name, svc) in services {
        for port in str_list(&svc["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "service {:?} publishes {port} beyond loopback",
                name.as_str().unwrap_or("?")
            );
        }
    }
}

#[test]
fn ledger_services_are_built_here_and_wait_for_healthy_servers() {
    let doc = compose();
    let migrate = service(&doc, "migrate");
    assert!(!migrate["build"].is_null(), "migrate builds the image from the repository's Dockerfile");
    assert!(repo_root().join("Dockerfile").is_file(), "docker-compose.yml builds from ./Dockerfile");
    let image = migrate["image"].as_str().expect("migrate names the image it builds");

    let expected_command = [("migrate", "migrate"), ("processor", "process"), ("enforcer", "enforce")];
    for (name, subcommand) in expected_command {
        let svc = service(&doc, name);
        assert_eq!(svc["image"].as_str(), Some(image), "`{name}` runs the image built by migrate");
        assert_eq!(
            str_list(&svc["command"]).first().map(String::as_str),
            Some(subcommand),
            "`{name}` runs `ledger {subcommand}`"
        );
        assert_eq!(env_var(svc, "LEDGER__KAFKA__BROKERS"), Some("kafka:9092"), "`{name}` brokers");
        assert_eq!(env_var(svc, "LEDGER__CLICKHOUSE__URL"), Some("http://clickhouse:8123"), "`{name}` ClickHouse URL");
        assert_eq!(env_var(svc, "LEDGER__CLICKHOUSE__DATABASE"), Some("ledger"), "`{name}` database");
    }
    assert_eq!(depends_condition(migrate, "clickhouse"), Some("service_healthy"));
    let processor = service(&doc, "processor");
    assert_eq!(depends_condition(processor, "kafka"), Some("service_healthy"));
    assert_eq!(depends_condition(processor, "clickhouse"), Some("service_healthy"));
    assert_eq!(depends_condition(processor, "migrate"), Some("service_completed_successfully"));
    assert_eq!(depends_condition(service(&doc, "enforcer"), "kafka"), Some("service_healthy"));
}
