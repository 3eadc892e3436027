-- Bootstrap, run by the migrator before any versioned migration (every time, idempotent): the
-- database itself and the table that records which migrations were applied, with the checksum of
-- their text, so an edited migration is detected instead of silently diverging.
-- Not a versioned migration itself; `{database}` is the configured database name.
CREATE DATABASE IF NOT EXISTS {database};

CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY version;
