-- Halted runs and the limits they breached: every run the gateway (or an
-- operator) halted since a point in time, who halted it and why, with each
-- recorded breach (limit, the value that tripped it, its bound, the edge).
--
-- Parameters:
--   {since:DateTime}  runs started at or after this time (UTC)
SELECT
    r.run_id AS run_id,
    r.workflow AS workflow,
    r.principal AS principal,
    r.halted_by AS halted_by,
    r.halt_limit AS halt_limit,
    r.hops AS hops,
    r.denials AS denials,
    b.limit_name AS breached_limit,
    b.value AS value,
    b.bound AS bound,
    b.caller AS caller,
    b.target AS target,
    b.action AS action
FROM
(
    -- FINAL collapses each run to its latest version first; the mutable
    -- halted column is filtered after that, outside.
    SELECT run_id, workflow, principal, halted, halted_by, halt_limit, hops, denials
    FROM
    (
        SELECT run_id, workflow, principal, halted, halted_by, halt_limit, hops, denials
        FROM runs FINAL
        WHERE started_at >= {since:DateTime}
    )
    WHERE halted = 1
) AS r
ALL LEFT JOIN
(
    SELECT run_id, seq, limit_name, value, bound, caller, target, action
    FROM breaches FINAL
) AS b USING run_id
ORDER BY run_id, b.seq
