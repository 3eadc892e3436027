-- 0004: month-end close of the chargeback (`ledger close --month M`).
--
-- A close records the month's charge lines as they stood (the FOCUS grain of docs/finance.md),
-- and the offset fence that defines them: per Kafka topic and partition, the highest offset of the
-- month's ledger rows at the close. A partition's rows are written in offset order, so "the rows
-- at or below the fence" is a set no later insert changes: what arrives for the month afterwards
-- (a late event, a replayed dead letter) lies above the fence and is reported as a correction
-- line, never as a change of the closed lines.
--
-- Written in this order: every line of the close, then its row in chargeback_closes. The row is
-- the commit: lines whose close_id has no row (a close that crashed half way) are ignored, and
-- the row carries the number of lines and their total, which readers check. The first close of
-- a month (by closed_at, then close_id) is the one that counts.
--
-- Portable DDL (18.16 and current releases): the fence as parallel arrays (as tag_keys and
-- tag_values are), money as Decimal(38, 12), times as DateTime('UTC'), no Nullable text.

CREATE TABLE IF NOT EXISTS {database}.chargeback_closes
(
    month String,
    close_id String,
    closed_at DateTime('UTC'),
    requests UInt64,
    lines UInt64,
    cost_usd Decimal(38, 12),
    fence_topics Array(String),
    fence_partitions Array(Int32),
    fence_offsets Array(Int64)
)
ENGINE = MergeTree
ORDER BY (month, closed_at, close_id);

CREATE TABLE IF NOT EXISTS {database}.chargeback_close_lines
(
    month String,
    close_id String,
    day DateTime('UTC'),
    tenant_id String,
    team String,
    project String,
    feature String,
    provider String,
    model String,
    price_version String,
    token_class String,
    unit_price_usd Decimal(38, 12),
    kafka_topic String,
    kafka_partition Int32,
    first_offset Int64,
    last_offset Int64,
    events UInt64,
    tokens UInt64,
    cost_usd Decimal(38, 12)
)
ENGINE = MergeTree
ORDER BY (month, close_id, tenant_id, day);
