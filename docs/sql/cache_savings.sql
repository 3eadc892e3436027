-- What prompt caching saved, by tenant and model, last 30 days.
--
-- docs/pricing.md: savings = what the cache reads would have cost at the input price minus what they
-- cost. The ledger keeps the cost terms, not the prices, but the input price of a row is exact:
-- input_cost_usd = uncached_tokens * input price, with
-- uncached_tokens = input_tokens - cache_read - cache_creation - cache_creation_1h,
-- and a price has 12 fractional digits, so input_cost_usd / uncached_tokens is the price (the
-- request's own tier: service tier and long-context price included). Rows whose whole prompt
-- came from caches (uncached_tokens = 0) do not reveal the input price: they are counted in
-- rows_price_unknown and left out of the savings (never guessed).
-- Note the greatest(..., 1): sumIf evaluates its argument on every row, and a Decimal division
-- by zero throws.
-- Source: usage_ledger (one row per request; the rollups do not keep the per-row price).
SELECT
    tenant_id,
    model,
    countIf(cache_read_input_tokens > 0) AS requests_with_cache_reads,
    sum(cache_read_input_tokens) AS cache_read_tokens,
    sum(cache_read_cost_usd) AS cache_read_cost,
    sumIf(
        cache_read_input_tokens * (input_cost_usd / greatest(input_tokens - cache_read_input_tokens - cache_creation_input_tokens - cache_creation_1h_input_tokens, 1)),
        input_tokens > cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens
    ) AS cache_reads_at_input_price,
    sumIf(
        cache_read_input_tokens * (input_cost_usd / greatest(input_tokens - cache_read_input_tokens - cache_creation_input_tokens - cache_creation_1h_input_tokens, 1)) - cache_read_cost_usd,
        input_tokens > cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens
    ) AS saved_usd,
    countIf(cache_read_input_tokens > 0 AND input_tokens <= cache_read_input_tokens + cache_creation_input_tokens + cache_creation_1h_input_tokens) AS rows_price_unknown
FROM usage_ledger
WHERE event_time >= toStartOfDay(now()) - INTERVAL 30 DAY
GROUP BY tenant_id, model
HAVING requests_with_cache_reads > 0
ORDER BY saved_usd DESC, tenant_id, model
