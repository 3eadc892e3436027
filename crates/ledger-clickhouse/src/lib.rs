//! ClickHouse adapter of the LLM usage ledger: rows, fenced batch writer, migrations, report queries.
//!
//! * [`ClickHouseConfig`] builds a [`clickhouse::Client`] that works with ClickHouse 18.16 (CI)
//!   and current releases.
//! * [`Migrator`] applies the versioned DDL of `schemas/clickhouse/` (embedded at build time).
//! * [`LedgerRow`] is one `usage_ledger` row; [`LedgerWriter`] writes batches with the
//!   offset fence of docs/architecture.md (exactly once in money) and reads the fence state back.
//! * [`LedgerReader`] answers spend reports and the ledger-versus-rollups reconciliation.
//! * [`charge_lines`] reads the ledger at the grain finance exports and closes ([`close`]).
//!
//! Every error is an [`Error`] tagged [`ErrorKind::Retryable`] or [`ErrorKind::Fatal`].

pub mod charge_lines;
pub mod chargeback;
pub mod close;
pub mod config;
pub mod corrections;
pub mod encoded;
pub mod error;
pub mod lookup;
pub mod migrate;
pub mod provider_usage;
pub mod reconcile;
pub mod report;
pub mod row;
pub mod usage;
pub mod writer;

pub use clickhouse;
pub use config::{ClickHouseConfig, DEFAULT_DATABASE, DEFAULT_URL};
pub use encoded::{native_columns, BatchCapacity, BatchSpan, LedgerBatch, SealedBatch};
pub use error::{Error, ErrorKind, Result};
pub use migrate::{Migration, MigrationOutcome, MigrationReport, MigrationStatus, Migrator, MIGRATIONS};
pub use report::{Dimension, GroupedSpendRow, LedgerReader, LedgerTotals, Rollup, SpendRow, TableTotals};
pub use row::{LedgerRow, Lineage};
pub use usage::UsageRow;
pub use writer::{LedgerWriter, MAX_BATCH_ROWS};
