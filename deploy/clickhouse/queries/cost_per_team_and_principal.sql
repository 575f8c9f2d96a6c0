-- Cost per team and per principal: who spends (the team of the agent that
-- reported the spend) on whose behalf (the user a run works for), since a
-- day.
--
-- Parameters:
--   {since:Date}  first day to count (UTC)
SELECT
    target_team AS team,
    principal,
    uniqExact(run_id) AS runs,
    count() AS hops,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed' AND day >= {since:Date}
GROUP BY team, principal
ORDER BY cost_usd DESC, team, principal
