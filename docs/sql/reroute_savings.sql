-- What rerouting saved, by tenant and route (the model asked for -> the model that served it),
-- last 30 days.
--
-- A rerouted row has routed_from_model set (the model the application asked for before a
-- router sent the request elsewhere); the ledger prices the same tokens at the original model
-- (routed_from_cost_usd) and keeps the difference in savings_usd = routed_from_cost_usd -
-- cost_usd (docs/pricing.md, "Routing savings"). savings_usd can be negative when a route was more
-- expensive. Source: usage_ledger (the rollups keep the totals, not the route).
SELECT
    tenant_id,
    routed_from_model,
    model AS served_by_model,
    count() AS rerouted_requests,
    sum(ifNull(routed_from_cost_usd, toDecimal128(0, 12))) AS would_have_cost_usd,
    sum(cost_usd) AS actual_cost_usd,
    sum(savings_usd) AS saved_usd
FROM usage_ledger
WHERE routed_from_model != ''
  AND event_time >= toStartOfDay(now()) - INTERVAL 30 DAY
GROUP BY tenant_id, routed_from_model, served_by_model
ORDER BY saved_usd DESC, tenant_id, routed_from_model, served_by_model
