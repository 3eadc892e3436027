//! `ledger stack`: a thin wrapper around `scripts/stack.sh`, which installs, starts, stops and
//! inspects the local single-node Kafka + ClickHouse stack. The script does the work (it is also
//! used on its own, e.g. in CI); this command finds it, passes the arguments, streams its output
//! and returns its exit code.

use std::path::{Path, PathBuf};

use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum as _;

/// Arguments of `ledger stack`.
#[derive(Debug, clap::Args)]
#[command(after_help = ledger_ops::stack::AFTER_HELP)]
pub(crate) struct StackArgs {
    #[command(subcommand)]
    command: StackCommand,

    /// Folder holding stack.sh (default: found automatically, see below).
    #[arg(long, global = true, env = "LEDGER_SCRIPTS_DIR", hide_env_values = true, value_name = "DIR")]
    scripts_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum StackCommand {
    /// Install what is missing, start Kafka and ClickHouse, wait until both answer. Idempotent.
    Up {
        /// Also a Kafka SASL_SSL listener (SCRAM-SHA-512) and a ClickHouse HTTPS port, with a local CA
        /// and user `ledger`; writes `<state>/secure/ledger.toml`. Kept by later `up`s of the state dir.
        #[arg(long)]
        secure: bool,
        /// Also a schema registry (Apicurio, Confluent-compatible API) on 127.0.0.1:8081. Kept likewise.
        #[arg(long)]
        registry: bool,
    },
    /// Stop the servers `up` started (SIGTERM, SIGKILL after 30 s). Idempotent.
    Down {
        /// Also delete the state folder (all Kafka and ClickHouse data).
        #[arg(long)]
        purge: bool,
    },
    /// Show each server: running or stopped, pid, address, version, data folder.
    /// Exits 0 when both run and answer, 3 otherwise.
    Status,
    /// Print (or follow) the server logs.
    Logs {
        /// Only this server's log.
        #[arg(value_enum)]
        service: Option<Service>,
        /// Keep following the log(s), like `tail -F`.
        #[arg(short, long)]
        follow: bool,
        /// How many lines of each log to print first.
        #[arg(short = 'n', long, default_value_t = 40)]
        lines: u32,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Service {
    Kafka,
    Clickhouse,
    Registry,
}

impl StackCommand {
    fn script_args(&self) -> Vec<String> {
        match self {
            Self::Up { secure, registry } => ["up"]
                .into_iter()
                .chain(secure.then_some("--secure"))
                .chain(registry.then_some("--registry"))
                .map(Into::into)
                .collect(),
            Self::Down { purge } => ["down"].into_iter().chain(purge.then_some("--purge")).map(Into::into).collect(),
            Self::Status => vec!["status".into()],
            Self::Logs { service, follow, lines } => {
                let service = service.and_then(|s| s.to_possible_value()).map(|v| v.get_name().to_owned());
                let mut args: Vec<String> = std::iter::once("logs".to_owned()).chain(service).collect();
                args.extend(follow.then(|| "-f".to_owned()));
                args.extend(["-n".to_owned(), lines.to_string()]);
                args
            }
        }
    }
}

pub(crate) async fn run(args: StackArgs) -> anyhow::Result<ExitCode> {
    let script = ledger_ops::stack::find_script(args.scripts_dir.as_deref(), Path::new(env!("CARGO_MANIFEST_DIR")))?;
    tracing::debug!(script = %script.display(), "running the stack script");
    // stdin/stdout/stderr are inherited: the script's output streams straight through.
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .args(args.command.script_args())
        .status()
        .await
        .with_context(|| format!("cannot run bash {}", script.display()))?;
    Ok(ExitCode::from(ledger_ops::stack::exit_code_of(status)))
}
