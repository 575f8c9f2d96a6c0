-- 0001: the projection tables.
--
-- Every table is a ReplacingMergeTree keyed by the ledger position of what it
-- holds, so projecting an event twice (a redelivery, a crash before the ack,
-- a replay) stores a row that the engine collapses with its twin. Rows that
-- change as a run goes on (hops, runs) carry the ledger seq of the event that
-- last changed them as their version. Read them with FINAL (or argMax over
-- version): before a background merge, older versions are still on disk.
--
-- The partition key is the day a row was created (a hop's decision, a run's
-- start), never a column that changes between versions: a ReplacingMergeTree
-- only collapses rows within one partition.
--
-- ClickHouse 18.16 and current releases: no DateTime64 (time is DateTime plus
-- an integer nanosecond column), no Map/JSON/LowCardinality, no TTL/CODEC.

-- One row per ledger event, as recorded (data is the event's JSON payload).
CREATE TABLE IF NOT EXISTS {db}.events
(
    run_id     String,
    seq        UInt64,
    stream_seq UInt64,
    type       String,
    at         DateTime('UTC'),
    at_ns      UInt32,
    day        Date,
    hop_id     String,
    rejected   UInt8,
    data       String,
    prev_hash  String,
    hash       String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (run_id, seq);

-- One row per decided submission (hop.allowed / hop.denied), updated when the
-- hop is closed (hop.completed, hop.timed_out). hop_seq is the ledger seq of
-- the decision: unique in a run, where hop ids are not (a denied reply names
-- the hop it replies to). Cost and tokens are what the callee reported in its
-- reply, so they belong to the target.
CREATE TABLE IF NOT EXISTS {db}.hops
(
    run_id        String,
    hop_seq       UInt64,
    hop_id        String,
    parent_hop_id String,
    kind          String,
    caller        String,
    caller_team   String,
    target        String,
    target_team   String,
    action        String,
    depth         UInt32,
    ancestry      Array(String),
    cycle         UInt8,
    decision      String,
    reason        String,
    message       String,
    policy_ids    Array(String),
    status        String,
    closed_by     String,
    error         String,
    opened_at     DateTime('UTC'),
    opened_at_ns  UInt32,
    closed_at     DateTime('UTC'),
    closed_at_ns  UInt32,
    latency_ms    Int64,
    input_tokens  Int64,
    output_tokens Int64,
    tokens        Int64 ALIAS input_tokens + output_tokens,
    cost_usd      Decimal(18, 9),
    workflow      String,
    principal     String,
    rejected      UInt8,
    day           Date,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (run_id, hop_seq);

-- One row per run (not for rejected submissions that belong to no run), as
-- its ledger stands after its latest event.
CREATE TABLE IF NOT EXISTS {db}.runs
(
    run_id            String,
    caller            String,
    caller_type       String,
    principal         String,
    workflow          String,
    root_hop_id       String,
    started_at        DateTime('UTC'),
    started_at_ns     UInt32,
    ended_at          DateTime('UTC'),
    ended_at_ns       UInt32,
    depth_limit       UInt32,
    edge_repeat_limit UInt32,
    status            String,
    halted            UInt8,
    halted_by         String,
    halt_reason       String,
    halt_limit        String,
    events            UInt64,
    hops              UInt32,
    denials           UInt32,
    breaches          UInt32,
    open_hops         UInt32,
    tokens            Int64,
    cost_usd          Decimal(18, 9),
    duration_ms       Int64,
    day               Date,
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY run_id;

-- One row per run.limit_breached event.
CREATE TABLE IF NOT EXISTS {db}.breaches
(
    run_id     String,
    seq        UInt64,
    at         DateTime('UTC'),
    at_ns      UInt32,
    limit_name String,
    value      Float64,
    bound      Float64,
    reason     String,
    caller     String,
    target     String,
    action     String,
    hop_id     String,
    workflow   String,
    principal  String,
    day        Date
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (run_id, seq);
