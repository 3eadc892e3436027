-- 0005: price corrections of a month (`ledger close --month M --correct-prices CATALOG`).
--
-- A wrong price is corrected without touching the ledger: every row of the month is re-priced
-- under the corrected catalog, and the differences, per charge line and per-token price
-- difference, are recorded as correction lines of the month. A later correction of the same
-- month also reverses the earlier corrections' lines, so the corrections of a month always add
-- up to "the latest corrected prices minus the ledger's prices", and nothing recorded changes.
--
-- The lines go to chargeback_close_lines (migration 0004) under the correction's id in its
-- close_id column: one line shape, one reader for closes and corrections. Written in this order:
-- every line, then the correction's row here, which is the commit (lines whose id has no row
-- are ignored; the row carries their number and total, which readers check).

CREATE TABLE IF NOT EXISTS {database}.price_corrections
(
    month String,
    correction_id String,
    corrected_at DateTime('UTC'),
    catalog_version String,
    rows_repriced UInt64,
    rows_changed UInt64,
    lines UInt64,
    cost_usd Decimal(38, 12)
)
ENGINE = MergeTree
ORDER BY (month, corrected_at, correction_id);
