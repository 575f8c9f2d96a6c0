-- Slowest edges: median and 95th-percentile latency of the calls on each
-- caller -> target edge that were answered (completed, failed, canceled,
-- rejected or timed out) since a day.
--
-- Parameters:
--   {since:Date}  first day to count (UTC)
--   {top:UInt32}  how many edges to list
SELECT
    caller,
    target,
    count() AS answered,
    quantile(0.5)(latency_ms) AS p50_ms,
    quantile(0.95)(latency_ms) AS p95_ms,
    max(latency_ms) AS max_ms
FROM
(
    SELECT caller, target, status, latency_ms
    FROM hops FINAL
    WHERE kind = 'invoke' AND decision = 'allowed' AND day >= {since:Date}
)
WHERE status != 'open'
GROUP BY caller, target
ORDER BY p95_ms DESC, caller, target
LIMIT {top:UInt32}
