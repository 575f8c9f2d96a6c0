-- Denials by reason: how often the gateway refused a submission, by reason
-- code (policy, depth, loop, budget, rate, identity, malformed ...) and kind
-- (invoke, reply, cancel; empty when the submission could not be read),
-- with how many of them belonged to no run (rejected before a run was
-- known).
--
-- Parameters:
--   {since:Date}  first day to count (UTC)
SELECT
    reason,
    kind,
    count() AS denials,
    countIf(rejected = 1) AS without_run,
    uniqExact(caller) AS callers
FROM hops FINAL
WHERE decision = 'denied' AND day >= {since:Date}
GROUP BY reason, kind
ORDER BY denials DESC, reason, kind
