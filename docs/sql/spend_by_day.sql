-- Spend by tenant, team, project, model and day (UTC), last 30 days, newest day first.
--
-- Source: the day rollup (usage_rollup_day, a SummingMergeTree): always sum() with GROUP BY,
-- background merges may not have collapsed the rows yet. Drop a column from SELECT and GROUP BY
-- to roll it up (e.g. only tenant and day). Costs are exact Decimal(38, 12) US dollars.
-- Change the window by editing the two INTERVAL lines (or use literal dates:
-- bucket >= toDateTime('2026-11-01 00:00:00', 'UTC')).
SELECT
    toDate(bucket) AS day,
    tenant_id,
    if(team = '', '(no team)', team) AS team_name,
    if(project = '', '(no project)', project) AS project_name,
    model,
    sum(request_count) AS requests,
    sum(input_tokens) AS total_input_tokens,
    sum(output_tokens) AS total_output_tokens,
    sum(cost_usd) AS spend_usd
FROM usage_rollup_day
WHERE bucket >= toStartOfDay(now()) - INTERVAL 30 DAY
  AND bucket < toStartOfDay(now()) + INTERVAL 1 DAY
GROUP BY day, tenant_id, team_name, project_name, model
ORDER BY day DESC, spend_usd DESC
