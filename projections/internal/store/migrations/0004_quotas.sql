-- 0004: spend as the quotas count it (issue 15, docs/limits.md). A quota
-- charges a hop's spend to its caller (and the caller's team, the run's
-- workflow and principal), in the window in which the reply settled it;
-- these views sum the same per hour of the decision, with the denials the
-- quotas made. Calendar days and months in another time zone are sums of
-- these hours. Like the other views they read the deduplicated tables, so a
-- replayed event never counts twice.
CREATE VIEW IF NOT EXISTS {db}.quota_spend_hourly AS
SELECT
    hour,
    caller,
    caller_team,
    workflow,
    principal,
    count() AS hops,
    countIf(decision = 'allowed') AS allowed,
    countIf(reason = 'quota') AS quota_denials,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM
(
    SELECT run_id, toStartOfHour(opened_at) AS hour, caller, caller_team, decision, reason, input_tokens + output_tokens AS tokens, cost_usd
    FROM {db}.hops FINAL
    WHERE kind = 'invoke'
)
ANY LEFT JOIN
(
    SELECT run_id, workflow, principal
    FROM {db}.runs FINAL
) USING (run_id)
GROUP BY hour, caller, caller_team, workflow, principal;
