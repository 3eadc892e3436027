-- Top 20 cost drivers of the last 30 days: the (tenant, team, project, model) combinations
-- that spent most, with their share of the window's total spend in percent.
--
-- Source: the day rollup, summed again (SummingMergeTree). share_pct is exact Decimal
-- arithmetic (truncated to 12 fractional digits), no floats. The window total comes from a
-- CROSS JOIN, not a scalar subquery: 18.16 cannot compare a Decimal scalar subquery's type.
-- Both subqueries are aliased: current releases require it (joined_subquery_requires_alias).
-- The divisor is never 0 (`if` evaluates both branches, and a Decimal division by 0 throws).
SELECT
    tenant_id,
    team_name,
    project_name,
    model,
    requests,
    spend_usd,
    spend_usd * 100 / if(window_spend_usd = toDecimal128(0, 12), toDecimal128(1, 12), window_spend_usd) AS share_pct
FROM
(
    SELECT
        tenant_id,
        if(team = '', '(no team)', team) AS team_name,
        if(project = '', '(no project)', project) AS project_name,
        model,
        sum(request_count) AS requests,
        sum(cost_usd) AS spend_usd
    FROM usage_rollup_day
    WHERE bucket >= toStartOfDay(now()) - INTERVAL 30 DAY
    GROUP BY tenant_id, team_name, project_name, model
) AS drivers
CROSS JOIN
(
    SELECT sum(cost_usd) AS window_spend_usd
    FROM usage_rollup_day
    WHERE bucket >= toStartOfDay(now()) - INTERVAL 30 DAY
) AS window_total
ORDER BY spend_usd DESC, tenant_id, team_name, project_name, model
LIMIT 20
