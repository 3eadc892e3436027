-- Spend by month, tenant and team (the inputs of chargeback), last 12 months.
--
-- Source: the day rollup, summed again; a month is toStartOfMonth of the UTC day bucket.
-- `ledger report chargeback --month YYYY-MM` reads the ledger itself and adds the allocation
-- of unattributed spend (rows with team_name = '(no team)').
SELECT
    toStartOfMonth(bucket) AS month,
    tenant_id,
    if(team = '', '(no team)', team) AS team_name,
    sum(request_count) AS requests,
    sum(cost_usd) AS spend_usd
FROM usage_rollup_day
WHERE bucket >= toStartOfMonth(now()) - INTERVAL 11 MONTH
GROUP BY month, tenant_id, team_name
ORDER BY month DESC, tenant_id, spend_usd DESC
