-- Runs that looped, and where the cycle formed: for every run with a hop
-- whose target was already in its ancestry, the first such hop (ledger seq,
-- caller -> target, depth, the ancestry it closed, and whether the gateway
-- allowed it), with how many cycle hops the run had in all and whether it
-- was halted.
--
-- Parameters:
--   {since:DateTime}  runs started at or after this time (UTC)
SELECT
    c.run_id AS run_id,
    c.hop_seq AS first_cycle_seq,
    c.caller AS caller,
    c.target AS target,
    c.depth AS depth,
    c.ancestry AS ancestry,
    c.decision AS decision,
    c.reason AS reason,
    c.cycles AS cycle_hops,
    r.status AS run_status,
    r.halt_reason AS halt_reason
FROM
(
    SELECT run_id, hop_seq, caller, target, depth, ancestry, decision, reason, cycles
    FROM
    (
        SELECT run_id, hop_seq, caller, target, depth, ancestry, decision, reason
        FROM hops FINAL
        WHERE kind = 'invoke' AND cycle = 1 AND opened_at >= {since:DateTime}
        ORDER BY run_id, hop_seq
        LIMIT 1 BY run_id
    )
    ANY LEFT JOIN
    (
        SELECT run_id, count() AS cycles
        FROM hops FINAL
        WHERE kind = 'invoke' AND cycle = 1
        GROUP BY run_id
    ) USING run_id
) AS c
ANY LEFT JOIN
(
    SELECT run_id, status, halt_reason
    FROM runs FINAL
) AS r USING run_id
ORDER BY run_id
