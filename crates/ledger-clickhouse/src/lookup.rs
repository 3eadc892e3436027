//! Point look-ups in the ledger by `event_id` (used by `ledger dlq replay` to skip events the
//! ledger already holds).

use std::collections::HashSet;

use crate::config::validate_database_name;
use crate::error::{Error, Result};

/// How many ids one `IN (...)` query carries.
pub const LOOKUP_BATCH: usize = 1_000;

/// The subset of `ids` that already has a row in `{database}.usage_ledger`.
///
/// Queries in batches of [`LOOKUP_BATCH`] ids with bound `IN (?, ...)` lists (every id is
/// escaped by the client, so any text is safe), which ClickHouse 18.16 and current releases
/// both accept.
pub async fn existing_event_ids(client: &clickhouse::Client, database: &str, ids: &[String]) -> Result<HashSet<String>> {
    validate_database_name(database)?;
    let mut found = HashSet::new();
    for chunk in ids.chunks(LOOKUP_BATCH) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT DISTINCT event_id FROM {database}.usage_ledger WHERE event_id IN ({placeholders})");
        let mut query = client.query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        let rows = query
            .fetch_all::<String>()
            .await
            .map_err(|e| Error::clickhouse(format!("looking up {} event ids in {database}.usage_ledger", chunk.len()), e))?;
        found.extend(rows);
    }
    Ok(found)
}
