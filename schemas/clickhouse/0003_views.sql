-- 0003: views for analysts and finance: the documented questions of docs/sql as plain views with
-- a `day` column (UTC, by event time), so any SQL client can ask them with a WHERE on day and
-- tenant_id. Costs stay exact Decimal(38, 12) US dollars; nothing goes through Float64.
--
-- Portability (18.16 and current releases): output aliases never equal a column that another
-- expression reads (18.16 would substitute the alias: "aggregate function found inside another"),
-- ifNull(x, toDecimal128(0, 12)) for the Nullable costs, no subqueries.

-- Spend by day, tenant, team, project, provider and model, from the day rollup (summed again:
-- SummingMergeTree collapses rows only eventually).
CREATE VIEW IF NOT EXISTS {database}.spend_by_day AS
SELECT
    toDate(bucket) AS day,
    tenant_id,
    team,
    project,
    provider,
    model,
    sum(request_count) AS requests,
    sum(input_tokens) AS total_input_tokens,
    sum(output_tokens) AS total_output_tokens,
    sum(cost_usd) AS spend_usd
FROM {database}.usage_rollup_day
GROUP BY day, tenant_id, team, project, provider, model;

-- What rerouting saved (PRICING.md): per day, tenant and route (asked-for -> served-by model).
CREATE VIEW IF NOT EXISTS {database}.reroute_savings_by_day AS
SELECT
    toDate(event_time) AS day,
    tenant_id,
    routed_from_model,
    model AS served_by_model,
    count() AS rerouted_requests,
    sum(ifNull(routed_from_cost_usd, toDecimal128(0, 12))) AS would_have_cost_usd,
    sum(cost_usd) AS actual_cost_usd,
    sum(savings_usd) AS saved_usd
FROM {database}.usage_ledger
WHERE routed_from_model != ''
GROUP BY day, tenant_id, routed_from_model, served_by_model;

-- Cost per 1,000 requests by day, tenant, feature and environment.
CREATE VIEW IF NOT EXISTS {database}.cost_by_feature_by_day AS
SELECT
    toDate(event_time) AS day,
    tenant_id,
    feature,
    environment,
    count() AS requests,
    sum(cost_usd) AS spend_usd,
    sum(cost_usd) * 1000 / count() AS cost_per_1k_requests_usd
FROM {database}.usage_ledger
GROUP BY day, tenant_id, feature, environment;

-- What prompt caching saved: cache reads at the request's own input price minus what they cost.
-- The input price of a row is input_cost_usd / uncached input tokens (exact: prices have at most
-- 12 fractional digits); rows whose whole prompt came from caches do not reveal it and are
-- counted in rows_price_unknown, never guessed. See docs/sql/cache_savings.sql.
CREATE VIEW IF NOT EXISTS {database}.cache_savings_by_day AS
SELECT
    toDate(event_time) AS day,
    tenant_id,
    model,
    countIf(cache_read_input_tokens > 0) AS requests_with_cache_reads,
    sum(cache_read_input_tokens) AS cache_read_tokens,
    sum(cache_read_cost_usd) AS cache_read_cost,
    sumIf(
        cache_read_input_tokens * (input_cost_usd / greatest(input_tokens - cache_read_input_tokens - cache_creation_input_tokens - cache_creation_1h_input_tokens, 1)) - cache_read_cost_usd,
        input_tokens > cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens
    ) AS saved_usd,
    countIf(cache_read_input_tokens > 0 AND input_tokens <= cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens) AS rows_price_unknown
FROM {database}.usage_ledger
GROUP BY day, tenant_id, model;
