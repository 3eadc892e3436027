//! ClickHouse adapter of the LLM usage ledger: rows, fenced batch writer, migrations, report queries.
