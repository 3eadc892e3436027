//! Connection settings and the ClickHouse client built from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use ledger_core::secret::redact_url;
use ledger_core::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default HTTP endpoint of ClickHouse (`ledger stack up` starts one there).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8123";
/// Default database of the ledger.
pub const DEFAULT_DATABASE: &str = "ledger";

/// Where the ledger lives. Deserializes from the `[clickhouse]` section of the config file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) endpoint, e.g. `http://127.0.0.1:8123` or `https://ch.example.com:8443`.
    /// Credentials go in `user` and `password`, never in the URL.
    pub url: String,
    /// Database holding `usage_ledger`, the rollups and `schema_migrations`.
    pub database: String,
    /// User; `None` means the server's `default` user.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// A file holding the password (container secrets); read when the client is built.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA certificates an `https://` server's certificate must chain to;
    /// without it, the system's trusted roots. Verification is always on.
    pub ca_file: Option<PathBuf>,
    /// Compress inserts with LZ4 (`true`: less network) or send them plain (`false`: less CPU).
    /// Unset (the default): plain when the URL's host is this machine (`localhost`, `127.x.x.x`,
    /// `[::1]`), where LZ4 only costs CPU on both ends, else LZ4.
    pub compress: Option<bool>,
}

impl std::fmt::Debug for ClickHouseConfig {
    /// Redacts the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("compress", &self.compress)
            .finish()
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: DEFAULT_URL.to_owned(),
            database: DEFAULT_DATABASE.to_owned(),
            user: None,
            password: None,
            password_file: None,
            ca_file: None,
            compress: None,
        }
    }
}

impl ClickHouseConfig {
    /// Settings for `url` and `database`, no credentials.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        ClickHouseConfig { url: url.into(), database: database.into(), ..ClickHouseConfig::default() }
    }

    /// Checks the settings: the database must be a plain identifier (it is spliced into SQL),
    /// the URL `http://` or `https://` without credentials, and the files readable.
    pub fn validate(&self) -> Result<()> {
        validate_database_name(&self.database)?;
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "clickhouse.url {:?} is not an http:// or https:// URL of ClickHouse's HTTP interface",
                redact_url(&self.url)
            )));
        }
        let authority = self.url.split_once("://").map_or("", |(_, r)| r).split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(Error::Config(format!(
                "clickhouse.url {} carries credentials: put them in clickhouse.user and clickhouse.password \
                 (or LEDGER__CLICKHOUSE__PASSWORD / password_file) instead",
                redact_url(&self.url)
            )));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return Err(Error::Config("clickhouse.ca_file is set but clickhouse.url is not https://".into()));
        }
        Ok(())
    }

    /// The password: `password`, or the contents of `password_file`.
    fn resolved_password(&self) -> Result<Option<Secret>> {
        match &self.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(Secret::from_file_contents(&t)))
                .map_err(|e| Error::Config(format!("clickhouse.password_file: cannot read {}: {e}", path.display()))),
            None => Ok(self.password.clone()),
        }
    }

    /// A client for these settings, configured to work with ClickHouse 18.16 and current releases:
    ///
    /// * `with_validation(false)`: plain `RowBinary`, because 18.16 lacks `RowBinaryWithNamesAndTypes`;
    /// * no default database on the client: every statement names `{database}.table`, so the
    ///   migrator can run before the database exists;
    /// * LZ4 stays on (the crate default): inserts are sent with `decompress=1` in ClickHouse's
    ///   native compressed-block format, which 18.16 accepts; for queries the crate only sends
    ///   `Accept-Encoding: lz4`, which 18.16 ignores (it answers uncompressed) — both verified by
    ///   the integration tests;
    /// * the crate sends no other settings by default (only `database`, `query`, `default_format`,
    ///   `decompress`), all known to 18.16.
    ///
    /// An `https://` URL is served over TLS (rustls) with the certificate verified against
    /// `ca_file` or the system's roots.
    pub fn client(&self) -> Result<clickhouse::Client> {
        self.validate()?;
        let compression = if self.compresses() { clickhouse::Compression::Lz4 } else { clickhouse::Compression::None };
        let client =
            if self.url.starts_with("https://") { https_client(self.ca_file.as_deref())? } else { clickhouse::Client::default() };
        let mut client = client.with_url(self.url.clone()).with_validation(false).with_compression(compression);
        if let Some(user) = &self.user {
            client = client.with_user(user.clone());
        }
        if let Some(password) = self.resolved_password()? {
            client = client.with_password(password.expose().to_owned());
        }
        Ok(client)
    }
}

impl ClickHouseConfig {
    /// Whether inserts are LZ4-compressed: `compress`, or when unset, unless the server is local.
    pub fn compresses(&self) -> bool {
        self.compress.unwrap_or_else(|| !is_loopback_url(&self.url))
    }
}

/// The crate's defaults for its own HTTP client, kept for ours: ClickHouse closes idle
/// connections after 3 s by default, so the pool lets them go after 2.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A client over HTTPS whose server certificates must chain to `ca_file` (PEM), or to the
/// system's trusted roots without one.
fn https_client(ca_file: Option<&std::path::Path>) -> Result<clickhouse::Client> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject as _;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::Config(format!("clickhouse.ca_file: cannot read certificates from {}: {e}", path.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Config(format!("clickhouse.ca_file: {} holds no usable CA certificate", path.display())));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    // ring, not aws-lc-rs (rustls' default), so that building needs no cmake and no C toolchain
    // beyond librdkafka's; its deprecation is about post-quantum key exchange, which ClickHouse
    // servers do not offer anyway.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(http);
    let bounded = HandshakeBound { inner: https, limit: TLS_CONNECT_TIMEOUT };
    let http_client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(bounded);
    Ok(clickhouse::Client::with_http_client(http_client))
}

/// The longest a TCP connect plus TLS handshake may take. A plain HTTP port given an `https://`
/// URL does not always answer the ClientHello (ClickHouse 18.16 sometimes waits for more bytes):
/// without a bound the client would wait for ever.
const TLS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The text of the error of a handshake that timed out ([`crate::error`] classifies it).
pub(crate) const TLS_HANDSHAKE_TIMED_OUT: &str = "no TLS handshake completed within";

/// A connector whose connect (TCP and TLS) fails after `limit`. Hand-written: tower's `Timeout`
/// would pull in tower with its util features for these few lines.
#[derive(Clone)]
struct HandshakeBound<C> {
    inner: C,
    limit: std::time::Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<http::Uri> for HandshakeBound<C>
where
    C: tower_service::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (connect, limit) = (self.inner.call(uri), self.limit);
        Box::pin(async move {
            match tokio::time::timeout(limit, connect).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(format!("{TLS_HANDSHAKE_TIMED_OUT} {limit:?}").into()),
            }
        })
    }
}

/// True when the host of an `http(s)://` URL is this machine.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks that a database name is a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes).
pub fn validate_database_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!("database name {name:?} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_to_this_machine_are_sent_plain_unless_configured() {
        for local in ["http://127.0.0.1:8123", "http://localhost:8123/", "https://user:pw@127.0.0.2", "http://[::1]:8123"] {
            assert!(!ClickHouseConfig::new(local, "ledger").compresses(), "{local}");
        }
        for remote in
            ["http://clickhouse:8123", "https://10.0.0.7:8443", "http://[2001:db8::1]:8123", "http://localhost.example.com"]
        {
            assert!(ClickHouseConfig::new(remote, "ledger").compresses(), "{remote}");
        }
        let forced = ClickHouseConfig { compress: Some(true), ..ClickHouseConfig::new("http://127.0.0.1:8123", "l") };
        assert!(forced.compresses());
        let plain = ClickHouseConfig { compress: Some(false), ..ClickHouseConfig::new("http://clickhouse:8123", "l") };
        assert!(!plain.compresses());
    }

    #[test]
    fn database_names_are_checked() {
        assert!(validate_database_name("ledger").is_ok());
        assert!(validate_database_name("ledger_test_0af3").is_ok());
        for bad in ["", "1x", "a-b", "a;DROP", "a.b", "`x`"] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = ClickHouseConfig { password: Some(Secret::new("hunter2")), ..ClickHouseConfig::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_shown() {
        let c = ClickHouseConfig::new("https://ledger:hunter2@ch.example.com:8443/", "ledger");
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("carries credentials") && !err.contains("hunter2"), "{err}");
        assert_eq!(redact_url("http://a:b@h:1/p?q"), "http://h:1/p?q");
        let err = ClickHouseConfig::new("ftp://h", "ledger").validate().unwrap_err().to_string();
        assert!(err.contains("not an http:// or https:// URL"), "{err}");
        let c = ClickHouseConfig { ca_file: Some("/ca.pem".into()), ..ClickHouseConfig::new("http://h:8123", "l") };
        assert!(c.validate().unwrap_err().to_string().contains("not https://"));
    }

    #[test]
    fn https_clients_build_with_the_system_roots_or_a_ca_file() {
        ClickHouseConfig::new("https://ch.example.com:8443", "ledger").client().unwrap();
        let missing = ClickHouseConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..ClickHouseConfig::new("https://h", "l") };
        let err = missing.client().unwrap_err().to_string();
        assert!(err.contains("clickhouse.ca_file: cannot read certificates from /nonexistent/ca.pem"), "{err}");
        let pw = ClickHouseConfig { password_file: Some("/nonexistent/pw".into()), ..ClickHouseConfig::new("http://h", "l") };
        assert!(pw.client().unwrap_err().to_string().contains("clickhouse.password_file: cannot read /nonexistent/pw"));
    }
}
