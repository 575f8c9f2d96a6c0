-- The call graph of one run: every caller -> target edge with its calls,
-- denials, cycle hops, tokens and cost, in the order the edges first
-- appeared.
--
-- Parameters:
--   {run_id:String}  the run
SELECT
    caller,
    target,
    calls,
    allowed,
    denials,
    cycles,
    tokens,
    cost_usd
FROM edges_by_run
WHERE run_id = {run_id:String}
ORDER BY first_seq
