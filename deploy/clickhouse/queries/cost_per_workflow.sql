-- Cost per workflow per day: what the runs of each workflow (the workflow of
-- the agent a run entered at) spent, day by day.
--
-- Parameters:
--   {since:Date}  first day to report (UTC)
SELECT
    day,
    workflow,
    runs,
    hops,
    tokens,
    cost_usd
FROM cost_by_workflow_daily
WHERE day >= {since:Date}
ORDER BY day, cost_usd DESC, workflow
