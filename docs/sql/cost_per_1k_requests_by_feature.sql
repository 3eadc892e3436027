-- Cost per 1,000 requests by feature (the event's `feature` attribution field: the use case
-- that made the call), with tenant and environment, last 30 days.
--
-- cost_per_1k_requests_usd = sum(cost_usd) * 1000 / count(): exact Decimal arithmetic,
-- multiplied before dividing and truncated to 12 fractional digits. Events without a feature
-- show as '(no feature)'. Source: usage_ledger (the rollups do not keep the feature).
SELECT
    tenant_id,
    if(feature = '', '(no feature)', feature) AS feature_name,
    if(environment = '', '(no environment)', environment) AS environment_name,
    count() AS requests,
    sum(cost_usd) AS spend_usd,
    sum(cost_usd) * 1000 / count() AS cost_per_1k_requests_usd,
    sum(input_tokens) AS total_input_tokens,
    sum(output_tokens) AS total_output_tokens
FROM usage_ledger
WHERE event_time >= toStartOfDay(now()) - INTERVAL 30 DAY
GROUP BY tenant_id, feature_name, environment_name
ORDER BY cost_per_1k_requests_usd DESC, tenant_id, feature_name, environment_name
