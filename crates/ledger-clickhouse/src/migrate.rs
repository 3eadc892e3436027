//! Versioned, idempotent schema migrations embedded from `schemas/clickhouse/`.
//!
//! Each migration is a SQL file `NNNN_name.sql` templated with `{database}`. Statements are
//! separated by a `;` at the end of a line, and each must be idempotent (`IF NOT EXISTS`), so a
//! migration interrupted half way is simply run again. After all its statements succeed, a row
//! (version, name, checksum, applied_at) goes into `{database}.schema_migrations`. A later run
//! skips recorded versions, but first compares checksums: an applied migration whose text changed
//! is an error ([`Error::ChecksumMismatch`]), never a silent divergence.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::validate_database_name;
use crate::error::{Error, Result};

/// One embedded migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Version, strictly increasing.
    pub version: u32,
    /// Short name (the file name without version and extension).
    pub name: &'static str,
    /// The SQL text, templated with `{database}`.
    pub sql: &'static str,
}

impl Migration {
    /// `fnv1a64:<16 hex digits>` of the text with line endings normalized to `\n`.
    pub fn checksum(&self) -> String {
        checksum(self.sql)
    }

    /// The statements of the migration for `database`, comments dropped.
    pub fn statements(&self, database: &str) -> Vec<String> {
        split_statements(self.sql, database)
    }
}

/// Bootstrap SQL run before the migrations on every run: `CREATE DATABASE` and `schema_migrations`.
pub const BOOTSTRAP_SQL: &str = include_str!("../../../schemas/clickhouse/0000_bootstrap.sql");

/// Every migration this binary knows, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "usage_ledger", sql: include_str!("../../../schemas/clickhouse/0001_usage_ledger.sql") },
    Migration { version: 2, name: "rollups", sql: include_str!("../../../schemas/clickhouse/0002_rollups.sql") },
    Migration { version: 3, name: "views", sql: include_str!("../../../schemas/clickhouse/0003_views.sql") },
    Migration {
        version: 4,
        name: "chargeback_close",
        sql: include_str!("../../../schemas/clickhouse/0004_chargeback_close.sql"),
    },
    Migration {
        version: 5,
        name: "price_corrections",
        sql: include_str!("../../../schemas/clickhouse/0005_price_corrections.sql"),
    },
];

/// What happened to one migration during [`Migrator::migrate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStatus {
    /// Applied by this run.
    Applied,
    /// Already recorded in `schema_migrations` with the same checksum; nothing done.
    AlreadyApplied,
}

/// One line of a [`MigrationReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationOutcome {
    /// Migration version.
    pub version: u32,
    /// Migration name.
    pub name: String,
    /// Applied now or already present.
    pub status: MigrationStatus,
}

/// The result of [`Migrator::migrate`]: one outcome per known migration, in version order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The database migrated.
    pub database: String,
    /// Outcome per migration.
    pub outcomes: Vec<MigrationOutcome>,
}

impl MigrationReport {
    /// One line per migration and a summary, for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for o in &self.outcomes {
            let status = match o.status {
                MigrationStatus::Applied => "applied",
                MigrationStatus::AlreadyApplied => "already present",
            };
            out.push_str(&format!("{:04}_{:<20} {status}\n", o.version, o.name));
        }
        let (applied, present) = (self.applied().len(), self.already_applied().len());
        out.push_str(&format!("database {}: {applied} applied, {present} already present\n", self.database));
        out
    }

    /// Versions applied by this run.
    pub fn applied(&self) -> Vec<u32> {
        self.versions(MigrationStatus::Applied)
    }

    /// Versions that were already present.
    pub fn already_applied(&self) -> Vec<u32> {
        self.versions(MigrationStatus::AlreadyApplied)
    }

    fn versions(&self, status: MigrationStatus) -> Vec<u32> {
        self.outcomes.iter().filter(|o| o.status == status).map(|o| o.version).collect()
    }
}

/// A migration recorded in `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct AppliedMigration {
    /// Version.
    pub version: u32,
    /// Name.
    pub name: String,
    /// Checksum of the text that was applied.
    pub checksum: String,
    /// When it was applied (Unix seconds, UTC).
    pub applied_at: u32,
}

impl AppliedMigration {
    /// `applied_at` as a UTC time.
    pub fn applied_at_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.applied_at), 0).unwrap_or_default()
    }
}

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct MigrationRecord<'a> {
    version: u32,
    name: &'a str,
    checksum: String,
    applied_at: u32,
}

/// Applies the embedded migrations to one database.
#[derive(Debug, Clone)]
pub struct Migrator {
    database: String,
    migrations: Vec<Migration>,
}

impl Migrator {
    /// A migrator of `database` with every embedded migration ([`MIGRATIONS`]).
    pub fn new(database: impl Into<String>) -> Result<Self> {
        Migrator::with_migrations(database, MIGRATIONS.to_vec())
    }

    /// A migrator with an explicit list of migrations (tests use it to simulate an edited file).
    pub fn with_migrations(database: impl Into<String>, migrations: Vec<Migration>) -> Result<Self> {
        let database = database.into();
        validate_database_name(&database)?;
        for pair in migrations.windows(2) {
            if pair[0].version >= pair[1].version {
                return Err(Error::Config(format!(
                    "migration versions must increase: {} then {}",
                    pair[0].version, pair[1].version
                )));
            }
        }
        Ok(Migrator { database, migrations })
    }

    /// The database migrated.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The migrations of this migrator, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Migrations recorded in `schema_migrations` (after the bootstrap ran), in version order.
    pub async fn applied(&self, client: &clickhouse::Client) -> Result<Vec<AppliedMigration>> {
        let sql = format!(
            "SELECT version, any(name) AS name, any(checksum) AS checksum, toUInt32(min(applied_at)) AS applied_at \
             FROM {}.schema_migrations GROUP BY version ORDER BY version",
            self.database
        );
        client
            .query(&sql)
            .fetch_all::<AppliedMigration>()
            .await
            .map_err(|e| Error::clickhouse(format!("reading {}.schema_migrations", self.database), e))
    }

    /// Creates the database if missing, then applies every migration not yet recorded.
    ///
    /// Fails with [`Error::ChecksumMismatch`] before applying anything when an applied migration
    /// changed, and with [`Error::UnknownMigration`] when the database is ahead of this binary.
    pub async fn migrate(&self, client: &clickhouse::Client) -> Result<MigrationReport> {
        for (i, stmt) in split_statements(BOOTSTRAP_SQL, &self.database).iter().enumerate() {
            execute(client, stmt, || format!("bootstrap statement {}", i + 1)).await?;
        }
        let applied = self.applied(client).await?;
        for a in &applied {
            match self.migrations.iter().find(|m| m.version == a.version) {
                None => return Err(Error::UnknownMigration { version: a.version, name: a.name.clone() }),
                Some(m) if m.checksum() != a.checksum => {
                    return Err(Error::ChecksumMismatch {
                        version: m.version,
                        name: m.name.to_owned(),
                        recorded: a.checksum.clone(),
                        embedded: m.checksum(),
                    })
                }
                Some(_) => {}
            }
        }
        let mut report = MigrationReport { database: self.database.clone(), outcomes: Vec::new() };
        for m in &self.migrations {
            if applied.iter().any(|a| a.version == m.version) {
                report.outcomes.push(MigrationOutcome {
                    version: m.version,
                    name: m.name.to_owned(),
                    status: MigrationStatus::AlreadyApplied,
                });
                continue;
            }
            for (i, stmt) in m.statements(&self.database).iter().enumerate() {
                execute(client, stmt, || format!("migration {} ({}) statement {}", m.version, m.name, i + 1)).await?;
            }
            self.record(client, m).await?;
            tracing::info!(database = %self.database, version = m.version, name = m.name, "applied migration");
            report.outcomes.push(MigrationOutcome {
                version: m.version,
                name: m.name.to_owned(),
                status: MigrationStatus::Applied,
            });
        }
        Ok(report)
    }

    async fn record(&self, client: &clickhouse::Client, m: &Migration) -> Result<()> {
        let table = format!("{}.schema_migrations", self.database);
        let context = || format!("recording migration {} in {table}", m.version);
        let applied_at = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
        let record = MigrationRecord { version: m.version, name: m.name, checksum: m.checksum(), applied_at };
        crate::row::insert_one::<MigrationRecord<'_>>(client, &table, &record, context).await
    }
}

async fn execute(client: &clickhouse::Client, sql: &str, context: impl Fn() -> String) -> Result<()> {
    // Verbatim: `query` would treat a `?` as a bind placeholder.
    client.query_raw(sql).execute().await.map_err(|e| Error::clickhouse(context(), e))
}

/// `fnv1a64:<hex>` of `text` with `\r\n` normalized to `\n`.
pub fn checksum(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.replace("\r\n", "\n").bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{hash:016x}")
}

/// Splits a migration into statements: drops `--` comment lines, substitutes `{database}`,
/// splits at `;` ending a line (or the text).
pub fn split_statements(sql: &str, database: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(body) = trimmed.strip_suffix(';') {
            current.push_str(body);
            push_statement(&mut out, &mut current, database);
        } else {
            current.push_str(trimmed);
            current.push('\n');
        }
    }
    push_statement(&mut out, &mut current, database);
    out
}

fn push_statement(out: &mut Vec<String>, current: &mut String, database: &str) {
    let stmt = current.trim();
    if !stmt.is_empty() {
        out.push(stmt.replace("{database}", database));
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_templated_statements() {
        let s = MIGRATIONS[0].statements("db1");
        assert_eq!(s.len(), 1);
        assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS db1.usage_ledger"));
        let s = MIGRATIONS[1].statements("db1");
        assert_eq!(s.len(), 6);
        assert!(s.iter().all(|s| !s.contains("{database}") && !s.contains(';')));
        assert_eq!(split_statements(BOOTSTRAP_SQL, "x").len(), 2);
    }

    #[test]
    fn checksums_ignore_line_endings_only() {
        assert_eq!(checksum("a\nb"), checksum("a\r\nb"));
        assert_ne!(checksum("a\nb"), checksum("a\nc"));
        assert!(MIGRATIONS[0].checksum().starts_with("fnv1a64:"));
    }

    #[test]
    fn versions_must_increase() {
        assert!(Migrator::new("ledger").is_ok());
        let mut m = MIGRATIONS.to_vec();
        m.reverse();
        assert!(Migrator::with_migrations("ledger", m).is_err());
    }
}
