-- Top spenders: which agents cost the most since a point in time.
-- Spend is what each agent reported in its replies, on the hops it served
-- (the hop's target); hops counts the calls it accepted.
--
-- Parameters:
--   {since:DateTime}  count hops decided at or after this time (UTC)
--   {top:UInt32}      how many agents to list
SELECT
    target AS agent,
    uniqExact(run_id) AS runs,
    count() AS hops,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed' AND opened_at >= {since:DateTime}
GROUP BY agent
ORDER BY cost_usd DESC, tokens DESC, agent
LIMIT {top:UInt32}
