//! The error type of the crate, tagged retryable or fatal.

use std::fmt;

/// Whether retrying the failed operation can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Transient: connection refused or reset, timeout, server overloaded or 5xx. Retry with backoff.
    Retryable,
    /// Permanent: bad SQL, schema mismatch, invalid input, changed migration. Retrying repeats it.
    Fatal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Fatal => "fatal",
        })
    }
}

/// Everything that can go wrong talking to the ClickHouse ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ClickHouse request failed; `kind` says whether a retry can help.
    #[error("ClickHouse {context} failed ({kind}): {source}")]
    ClickHouse {
        /// What was being done (`insert into ledger.usage_ledger`, `migration 2 statement 3`, ...).
        context: String,
        /// Retryable or fatal, from the transport error or the server's exception code.
        kind: ErrorKind,
        /// The client error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// An applied migration's text changed since it was applied.
    #[error(
        "migration {version} ({name}) was changed after it was applied: the database records checksum \
         {recorded}, this binary embeds {embedded}; never edit an applied migration, add a new one"
    )]
    ChecksumMismatch {
        /// Migration version.
        version: u32,
        /// Migration name.
        name: String,
        /// Checksum recorded in `schema_migrations`.
        recorded: String,
        /// Checksum of the embedded text.
        embedded: String,
    },
    /// The database has migrations this binary does not know (it is older than the schema).
    #[error("the database has migration {version} ({name}) that this binary does not know; upgrade `ledger`")]
    UnknownMigration {
        /// Migration version recorded in the database.
        version: u32,
        /// Its recorded name.
        name: String,
    },
    /// A batch handed to the writer breaks a precondition of the fence; nothing was written.
    #[error("invalid ledger batch: {0}")]
    InvalidBatch(String),
    /// A value does not fit its column (e.g. a time outside the `DateTime` range 1970..2106).
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// The configuration is unusable (e.g. a database name that is not a plain identifier).
    #[error("invalid ClickHouse configuration: {0}")]
    Config(String),
    /// The server refused the credentials, its certificate is not trusted, or it does not
    /// speak the URL's protocol. Fatal: fix the named setting.
    #[error("ClickHouse: {problem}: fix {setting}")]
    Security {
        /// The setting(s) to fix, as the config file and the environment name them.
        setting: String,
        /// What is wrong, in one line.
        problem: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Retryable or fatal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ClickHouse { kind, .. } => *kind,
            _ => ErrorKind::Fatal,
        }
    }

    /// True when retrying (with backoff) can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// True when a setting is wrong (credentials, certificate, URL, database name): the message
    /// names it, and hints about a server not running would mislead.
    pub fn is_settings(&self) -> bool {
        matches!(self, Error::Security { .. } | Error::Config(_))
    }

    /// True when the server could not be reached at all (connection refused, DNS, reset).
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::ClickHouse { source: clickhouse::error::Error::Network(_), .. })
    }

    /// Wraps a client error with what was being done, classifying it.
    pub(crate) fn clickhouse(context: impl Into<String>, source: clickhouse::error::Error) -> Self {
        if let Some(security) = security_problem(&source) {
            return security;
        }
        let kind = classify(&source);
        Error::ClickHouse { context: context.into(), kind, source }
    }
}

/// ClickHouse's codes for refused credentials: UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD,
/// IP_ADDRESS_NOT_ALLOWED, AUTHENTICATION_FAILED.
const AUTH_CODES: &[u32] = &[192, 193, 194, 195, 516];

/// The setting a client error points at, when it is a credentials or TLS problem. TLS failures
/// are transport errors, which would otherwise be retried for ever.
fn security_problem(e: &clickhouse::error::Error) -> Option<Error> {
    use clickhouse::error::Error as E;
    let error = |setting: &str, problem: String| Some(Error::Security { setting: setting.to_owned(), problem });
    match e {
        E::BadResponse(msg) if exception_code(msg).is_some_and(|c| AUTH_CODES.contains(&c)) => error(
            "clickhouse.user and clickhouse.password (or clickhouse.password_file, LEDGER__CLICKHOUSE__PASSWORD)",
            format!("the server refused the credentials ({})", first_sentence(msg)),
        ),
        E::Network(_) => {
            let chain = error_chain(e);
            if chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate") || chain.contains("certificate") {
                error(
                    "clickhouse.ca_file (LEDGER__CLICKHOUSE__CA_FILE)",
                    format!("the server's TLS certificate is not trusted ({})", tls_reason(&chain)),
                )
            } else if chain.contains("InvalidContentType")
                || chain.contains("corrupt message")
                || chain.contains(crate::config::TLS_HANDSHAKE_TIMED_OUT)
            {
                error(
                    "clickhouse.url",
                    "the server did not answer TLS: is the URL's port ClickHouse's https_port, or should it start with http://?"
                        .to_owned(),
                )
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The messages of an error and all its sources, joined.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// The part of a TLS error chain that says why, e.g. `invalid peer certificate: UnknownIssuer`.
fn tls_reason(chain: &str) -> String {
    chain
        .find("invalid peer certificate")
        .map_or_else(|| chain.to_owned(), |i| chain[i..].split(": client error").next().unwrap_or("").to_owned())
}

/// A server message up to its first sentence (ClickHouse repeats itself after that).
fn first_sentence(msg: &str) -> String {
    let text = msg.split(", e.what()").next().unwrap_or(msg);
    text.split(" (version").next().unwrap_or(text).trim().to_owned()
}

/// ClickHouse exception codes after which a retry can succeed: timeouts, overload, network,
/// memory pressure, too many parts, replica/keeper trouble, cancelled or aborted queries.
const RETRYABLE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (truncated request body)
    159, // TIMEOUT_EXCEEDED
    160, // TOO_SLOW
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    236, // ABORTED
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY (replica lost its keeper session)
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    394, // QUERY_WAS_CANCELLED
    425, // SYSTEM_ERROR
    999, // KEEPER_EXCEPTION
];

/// Classifies a client error: transport failures and timeouts are retryable; a server exception
/// is retryable when its code is in [`RETRYABLE_CODES`] or it is a bare HTTP 5xx; the rest is fatal.
pub(crate) fn classify(e: &clickhouse::error::Error) -> ErrorKind {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => ErrorKind::Retryable,
        E::BadResponse(msg) => classify_server_message(msg),
        _ => ErrorKind::Fatal,
    }
}

/// Classifies the text of a server error (`Code: 159, e.displayText() = ...` on 18.16,
/// `Code: 159. DB::Exception: ...` on current releases, or a bare `503 Service Unavailable`).
pub(crate) fn classify_server_message(msg: &str) -> ErrorKind {
    if let Some(code) = exception_code(msg) {
        return if RETRYABLE_CODES.contains(&code) { ErrorKind::Retryable } else { ErrorKind::Fatal };
    }
    let status: String = msg.trim_start().chars().take_while(char::is_ascii_digit).collect();
    match status.parse::<u16>() {
        Ok(s) if (500..600).contains(&s) => ErrorKind::Retryable,
        _ => ErrorKind::Fatal,
    }
}

/// The numeric exception code in a ClickHouse error text, if any.
pub(crate) fn exception_code(msg: &str) -> Option<u32> {
    let rest = &msg[msg.find("Code:")? + "Code:".len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_classified() {
        let old = "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1, e.what() = DB::Exception";
        assert_eq!(exception_code(old), Some(62));
        assert_eq!(classify_server_message(old), ErrorKind::Fatal);
        let new = "Code: 159. DB::Exception: Timeout exceeded: elapsed 1.2 seconds. (TIMEOUT_EXCEEDED)";
        assert_eq!(classify_server_message(new), ErrorKind::Retryable);
        assert_eq!(classify_server_message("Code: 252, e.displayText() = DB::Exception: Too many parts"), ErrorKind::Retryable);
        assert_eq!(classify_server_message("503 Service Unavailable"), ErrorKind::Retryable);
        assert_eq!(classify_server_message("404 Not Found"), ErrorKind::Fatal);
        let e = Error::clickhouse("x", clickhouse::error::Error::TimedOut);
        assert!(e.is_retryable());
        assert!(!Error::InvalidBatch("x".into()).is_retryable());
    }

    #[test]
    fn refused_credentials_name_the_password_setting() {
        let msg = "Code: 193, e.displayText() = DB::Exception: Wrong password for user ledger, e.what() = DB::Exception";
        let e = Error::clickhouse("querying", clickhouse::error::Error::BadResponse(msg.into()));
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.contains("refused the credentials (Code: 193") && text.contains("fix clickhouse.user and clickhouse.password"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}
