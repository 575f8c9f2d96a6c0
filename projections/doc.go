// Package projections keeps ClickHouse as the analytical read model of the
// run ledger: raw events, one row per hop, runs, limit breaches, and views
// for call-graph edges, cost per agent, workflow, team and principal, and
// loop signals. The ledger stays the truth; everything here can be rebuilt
// from it at any time.
//
// A Projector is a durable JetStream consumer of the LEDGER stream, which it
// reads through a *ledger.Ledger (this package does not import the broker:
// the caller names the consumer in Config.Consumer). It folds
// each run's events in stream order (so a hop.completed row carries the
// caller, target, teams, depth, workflow and principal of its decision),
// batches rows by size and time, inserts them with explicit column lists,
// and acks the events only after ClickHouse accepted every row they yield.
//
// Projection is idempotent. Every table is a ReplacingMergeTree keyed by a
// ledger position (run and seq), rows that change carry the seq of the event
// that last changed them as their version, and each row is a pure function
// of its event and the run's events before it. A redelivered, replayed or
// rebuilt event therefore writes a row identical to one already stored, and
// every view reads the tables with FINAL: no total can change.
//
// Migrate applies the versioned DDL (the projector does so at start),
// Rebuild re-projects the whole ledger into fresh tables and swaps them in,
// Status reports the projection's lag, and Reader answers the cost, call
// graph and loop reports. The SQL works on ClickHouse 18.16 (Debian's
// package) and on current releases: native protocol, explicit INSERT column
// lists, no Map/JSON/DateTime64 types, no window functions.
package projections
