//! Connection settings and the ClickHouse client built from them.

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
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding `usage_ledger`, the rollups and `schema_migrations`.
    pub database: String,
    /// User; `None` means the server's `default` user.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
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
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
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
            compress: None,
        }
    }
}

impl ClickHouseConfig {
    /// Settings for `url` and `database`, no credentials.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        ClickHouseConfig { url: url.into(), database: database.into(), ..ClickHouseConfig::default() }
    }

    /// Checks the settings: the database must be a plain identifier (it is spliced into SQL).
    pub fn validate(&self) -> Result<()> {
        validate_database_name(&self.database)?;
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(Error::Config(format!("url {:?} is not an http:// URL of ClickHouse's HTTP interface", self.url)));
        }
        Ok(())
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
    pub fn client(&self) -> Result<clickhouse::Client> {
        self.validate()?;
        let compression = if self.compresses() { clickhouse::Compression::Lz4 } else { clickhouse::Compression::None };
        let mut client =
            clickhouse::Client::default().with_url(self.url.clone()).with_validation(false).with_compression(compression);
        if let Some(user) = &self.user {
            client = client.with_user(user.clone());
        }
        if let Some(password) = &self.password {
            client = client.with_password(password.clone());
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
        let c = ClickHouseConfig { password: Some("hunter2".into()), ..ClickHouseConfig::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
