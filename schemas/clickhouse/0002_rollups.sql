-- 0002: rollups per minute, hour and day, fed by materialized views over usage_ledger.
--
-- Each rollup is a SummingMergeTree *target table* written by a `MATERIALIZED VIEW ... TO`, so
-- it can be queried, checked and backfilled directly (INSERT INTO usage_rollup_x SELECT ... FROM
-- usage_ledger, with the SELECT of its view). Key: (tenant_id, bucket, team, project, provider,
-- model); tenant first because dashboards, budgets and chargeback read one tenant, and the monthly
-- partition already prunes time.
-- Counters: request_count, every token column and every cost column of usage_ledger, summed under
-- the ledger's column names. The two Nullable costs are summed over the rows that have one, next to
-- the count of those rows: provided_cost_usd_sum / provided_cost_count and
-- routed_from_cost_usd_sum / routed_count (savings_usd is 0 on rows that were not routed).
--
-- SummingMergeTree sums Decimal(38, 12) exactly (verified on 18.16: sum(Decimal(38, 12)) is
-- Decimal(38, 12) and merges add the raw i128 values). Rows are collapsed by background merges
-- only, so readers must always aggregate again: SELECT ..., sum(cost_usd) ... GROUP BY ...
-- A row never has every counter zero (request_count >= 1), so merges never drop a row.
--
-- Months: the day rollup serves monthly questions (GROUP BY toStartOfMonth(bucket)); at most 31
-- rows per key and month, and no fourth table to keep consistent.
--
-- Portability notes (found on 18.16, kept valid on current releases):
--   * toStartOfMinute/Hour/Day, not toStartOfInterval;
--   * ifNull(x, toDecimal128(0, 12)): 18.16 rejects ifNull(Decimal, 0);
--   * no subquery in a view (18.16 loses the subquery's last column when pushing to the view:
--     "Unknown identifier"), and no output alias equal to a ledger column that another expression
--     reads (the alias would be substituted: "aggregate function found inside another"); hence the
--     *_sum names of the Nullable costs;
--   * a view must output every column of its target (18.16 does not fill defaults there).

CREATE TABLE IF NOT EXISTS {database}.usage_rollup_minute
(
    bucket DateTime('UTC'),
    tenant_id String,
    team String,
    project String,
    provider String,
    model String,
    request_count UInt64,
    input_tokens UInt64,
    cache_read_input_tokens UInt64,
    cache_creation_input_tokens UInt64,
    cache_creation_1h_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_output_tokens UInt64,
    input_cost_usd Decimal(38, 12),
    cache_read_cost_usd Decimal(38, 12),
    cache_write_cost_usd Decimal(38, 12),
    cache_write_1h_cost_usd Decimal(38, 12),
    output_cost_usd Decimal(38, 12),
    reasoning_cost_usd Decimal(38, 12),
    cost_usd Decimal(38, 12),
    savings_usd Decimal(38, 12),
    provided_cost_usd_sum Decimal(38, 12),
    provided_cost_count UInt64,
    routed_from_cost_usd_sum Decimal(38, 12),
    routed_count UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket, team, project, provider, model);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_rollup_minute_mv TO {database}.usage_rollup_minute
AS SELECT
    toStartOfMinute(event_time) AS bucket,
    tenant_id,
    team,
    project,
    provider,
    model,
    count() AS request_count,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cache_creation_1h_input_tokens) AS cache_creation_1h_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_output_tokens) AS reasoning_output_tokens,
    sum(input_cost_usd) AS input_cost_usd,
    sum(cache_read_cost_usd) AS cache_read_cost_usd,
    sum(cache_write_cost_usd) AS cache_write_cost_usd,
    sum(cache_write_1h_cost_usd) AS cache_write_1h_cost_usd,
    sum(output_cost_usd) AS output_cost_usd,
    sum(reasoning_cost_usd) AS reasoning_cost_usd,
    sum(cost_usd) AS cost_usd,
    sum(savings_usd) AS savings_usd,
    sum(ifNull(provided_cost_usd, toDecimal128(0, 12))) AS provided_cost_usd_sum,
    count(provided_cost_usd) AS provided_cost_count,
    sum(ifNull(routed_from_cost_usd, toDecimal128(0, 12))) AS routed_from_cost_usd_sum,
    countIf(routed_from_model != '') AS routed_count
FROM {database}.usage_ledger
GROUP BY bucket, tenant_id, team, project, provider, model;

CREATE TABLE IF NOT EXISTS {database}.usage_rollup_hour
(
    bucket DateTime('UTC'),
    tenant_id String,
    team String,
    project String,
    provider String,
    model String,
    request_count UInt64,
    input_tokens UInt64,
    cache_read_input_tokens UInt64,
    cache_creation_input_tokens UInt64,
    cache_creation_1h_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_output_tokens UInt64,
    input_cost_usd Decimal(38, 12),
    cache_read_cost_usd Decimal(38, 12),
    cache_write_cost_usd Decimal(38, 12),
    cache_write_1h_cost_usd Decimal(38, 12),
    output_cost_usd Decimal(38, 12),
    reasoning_cost_usd Decimal(38, 12),
    cost_usd Decimal(38, 12),
    savings_usd Decimal(38, 12),
    provided_cost_usd_sum Decimal(38, 12),
    provided_cost_count UInt64,
    routed_from_cost_usd_sum Decimal(38, 12),
    routed_count UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket, team, project, provider, model);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_rollup_hour_mv TO {database}.usage_rollup_hour
AS SELECT
    toStartOfHour(event_time) AS bucket,
    tenant_id,
    team,
    project,
    provider,
    model,
    count() AS request_count,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cache_creation_1h_input_tokens) AS cache_creation_1h_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_output_tokens) AS reasoning_output_tokens,
    sum(input_cost_usd) AS input_cost_usd,
    sum(cache_read_cost_usd) AS cache_read_cost_usd,
    sum(cache_write_cost_usd) AS cache_write_cost_usd,
    sum(cache_write_1h_cost_usd) AS cache_write_1h_cost_usd,
    sum(output_cost_usd) AS output_cost_usd,
    sum(reasoning_cost_usd) AS reasoning_cost_usd,
    sum(cost_usd) AS cost_usd,
    sum(savings_usd) AS savings_usd,
    sum(ifNull(provided_cost_usd, toDecimal128(0, 12))) AS provided_cost_usd_sum,
    count(provided_cost_usd) AS provided_cost_count,
    sum(ifNull(routed_from_cost_usd, toDecimal128(0, 12))) AS routed_from_cost_usd_sum,
    countIf(routed_from_model != '') AS routed_count
FROM {database}.usage_ledger
GROUP BY bucket, tenant_id, team, project, provider, model;

CREATE TABLE IF NOT EXISTS {database}.usage_rollup_day
(
    bucket DateTime('UTC'),
    tenant_id String,
    team String,
    project String,
    provider String,
    model String,
    request_count UInt64,
    input_tokens UInt64,
    cache_read_input_tokens UInt64,
    cache_creation_input_tokens UInt64,
    cache_creation_1h_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_output_tokens UInt64,
    input_cost_usd Decimal(38, 12),
    cache_read_cost_usd Decimal(38, 12),
    cache_write_cost_usd Decimal(38, 12),
    cache_write_1h_cost_usd Decimal(38, 12),
    output_cost_usd Decimal(38, 12),
    reasoning_cost_usd Decimal(38, 12),
    cost_usd Decimal(38, 12),
    savings_usd Decimal(38, 12),
    provided_cost_usd_sum Decimal(38, 12),
    provided_cost_count UInt64,
    routed_from_cost_usd_sum Decimal(38, 12),
    routed_count UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket, team, project, provider, model);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_rollup_day_mv TO {database}.usage_rollup_day
AS SELECT
    toStartOfDay(event_time) AS bucket,
    tenant_id,
    team,
    project,
    provider,
    model,
    count() AS request_count,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cache_creation_1h_input_tokens) AS cache_creation_1h_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_output_tokens) AS reasoning_output_tokens,
    sum(input_cost_usd) AS input_cost_usd,
    sum(cache_read_cost_usd) AS cache_read_cost_usd,
    sum(cache_write_cost_usd) AS cache_write_cost_usd,
    sum(cache_write_1h_cost_usd) AS cache_write_1h_cost_usd,
    sum(output_cost_usd) AS output_cost_usd,
    sum(reasoning_cost_usd) AS reasoning_cost_usd,
    sum(cost_usd) AS cost_usd,
    sum(savings_usd) AS savings_usd,
    sum(ifNull(provided_cost_usd, toDecimal128(0, 12))) AS provided_cost_usd_sum,
    count(provided_cost_usd) AS provided_cost_count,
    sum(ifNull(routed_from_cost_usd, toDecimal128(0, 12))) AS routed_from_cost_usd_sum,
    countIf(routed_from_model != '') AS routed_count
FROM {database}.usage_ledger
GROUP BY bucket, tenant_id, team, project, provider, model;
