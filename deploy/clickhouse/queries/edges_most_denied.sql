-- Edges with the most denials: the caller -> target pairs the gateway
-- refused most often since a day, with the reasons and policies behind the
-- refusals. A denial here is a refused call; refused replies and cancels are
-- in hops (kind reply / cancel) but are not edges.
--
-- Parameters:
--   {since:Date}   first day to count (UTC)
--   {top:UInt32}   how many edges to list
SELECT
    caller,
    target,
    calls,
    denials,
    reasons,
    policies
FROM
(
    SELECT
        caller,
        target,
        count() AS calls,
        countIf(decision = 'denied') AS denials,
        arraySort(groupUniqArrayIf(reason, decision = 'denied')) AS reasons,
        arraySort(groupUniqArrayArrayIf(policy_ids, decision = 'denied')) AS policies
    FROM hops FINAL
    WHERE kind = 'invoke' AND day >= {since:Date}
    GROUP BY caller, target
)
WHERE denials > 0
ORDER BY denials DESC, caller, target
LIMIT {top:UInt32}
