-- 0002: the views analysts read: call-graph edges, cost per day, loop signals.
--
-- They are plain views over the deduplicated tables (FINAL), computed when
-- queried. A materialized view that sums on insert would count a replayed
-- event twice; these cannot. Only invoke decisions are edges: a denied reply
-- or cancel is a denial (it is in hops) but not a call.

-- Call-graph edges of each run; first_seq is the ledger seq of the edge's
-- first call.
CREATE VIEW IF NOT EXISTS {db}.edges_by_run AS
SELECT
    run_id,
    caller,
    target,
    count() AS calls,
    countIf(decision = 'allowed') AS allowed,
    countIf(decision = 'denied') AS denials,
    countIf(cycle = 1) AS cycles,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd,
    min(hop_seq) AS first_seq,
    min(opened_at) AS first_at,
    max(opened_at) AS last_at
FROM {db}.hops FINAL
WHERE kind = 'invoke'
GROUP BY run_id, caller, target;

-- Call-graph edges aggregated per day (the day of the decision).
CREATE VIEW IF NOT EXISTS {db}.edges_daily AS
SELECT
    day,
    caller,
    target,
    uniqExact(run_id) AS runs,
    count() AS calls,
    countIf(decision = 'allowed') AS allowed,
    countIf(decision = 'denied') AS denials,
    countIf(cycle = 1) AS cycles,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.hops FINAL
WHERE kind = 'invoke'
GROUP BY day, caller, target;

-- Cost per agent per day: what each agent reported spending on the hops it
-- served (the target of the hop).
CREATE VIEW IF NOT EXISTS {db}.cost_by_agent_daily AS
SELECT
    day,
    target AS agent,
    uniqExact(run_id) AS runs,
    count() AS hops,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed'
GROUP BY day, agent;

-- Cost per workflow (run.started's workflow) per day.
CREATE VIEW IF NOT EXISTS {db}.cost_by_workflow_daily AS
SELECT
    day,
    workflow,
    uniqExact(run_id) AS runs,
    count() AS hops,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed'
GROUP BY day, workflow;

-- Cost per team (the team of the agent that spent it) per day.
CREATE VIEW IF NOT EXISTS {db}.cost_by_team_daily AS
SELECT
    day,
    target_team AS team,
    uniqExact(run_id) AS runs,
    count() AS hops,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed'
GROUP BY day, team;

-- Cost per principal (the user a run works for, on_behalf_of) per day.
CREATE VIEW IF NOT EXISTS {db}.cost_by_principal_daily AS
SELECT
    day,
    principal,
    uniqExact(run_id) AS runs,
    count() AS hops,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(tokens) AS tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed'
GROUP BY day, principal;

-- Loop signals per run: cycles (a hop whose target is already in its
-- ancestry), the most repeated caller -> target edge, the deepest allowed
-- hop against the run's depth limit, depth and loop denials, breaches and
-- halts. One row per run (rejected submissions are not runs).
CREATE VIEW IF NOT EXISTS {db}.loop_signals AS
SELECT
    run_id,
    workflow,
    principal,
    started_at,
    status,
    halted,
    halt_reason,
    halt_limit,
    breaches,
    depth_limit,
    edge_repeat_limit,
    invokes,
    cycles,
    first_cycle_seq,
    first_cycle_edge,
    max_depth,
    depth_denials,
    loop_denials,
    max_edge_calls,
    most_called_edge
FROM
(
    SELECT run_id, workflow, principal, started_at, status, halted, halt_reason, halt_limit,
           breaches, depth_limit, edge_repeat_limit
    FROM {db}.runs FINAL
)
ANY LEFT JOIN
(
    SELECT
        run_id,
        sum(calls) AS invokes,
        sum(edge_cycles) AS cycles,
        minIf(edge_first_cycle, edge_cycles > 0) AS first_cycle_seq,
        argMinIf(edge, edge_first_cycle, edge_cycles > 0) AS first_cycle_edge,
        max(edge_max_depth) AS max_depth,
        sum(edge_depth_denials) AS depth_denials,
        sum(edge_loop_denials) AS loop_denials,
        max(calls) AS max_edge_calls,
        argMax(edge, calls) AS most_called_edge
    FROM
    (
        SELECT
            run_id,
            concat(caller, ' -> ', target) AS edge,
            count() AS calls,
            countIf(cycle = 1) AS edge_cycles,
            minIf(hop_seq, cycle = 1) AS edge_first_cycle,
            maxIf(depth, decision = 'allowed') AS edge_max_depth,
            countIf(decision = 'denied' AND reason = 'depth') AS edge_depth_denials,
            countIf(decision = 'denied' AND reason = 'loop') AS edge_loop_denials
        FROM {db}.hops FINAL
        WHERE kind = 'invoke'
        GROUP BY run_id, caller, target
    )
    GROUP BY run_id
)
USING run_id;
