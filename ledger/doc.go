// Package ledger is the append-only, hash-chained event log of a run, kept
// on JetStream: one subject per run (tg.ledger.<run>) in a stream that denies
// deletes, purges and rollups.
//
// Appends use optimistic concurrency: each one names the stream sequence of
// the run's last event (0 for a new run, which makes run creation atomic),
// so two writers can never interleave a run. Each event's hash covers the
// previous hash and the event's compact JSON, so editing, dropping or
// reordering any event is detected by Verify, which also checks the
// signature of every envelope a run admitted, on every CPU.
//
// State is the one fold of a run's events: it alone decides which hops a
// run has opened and closed and what it has spent. The enforcer keeps it in
// memory and rebuilds it from here whenever it needs to; the projection and
// the run tree (ledger/runtree) build their views from the Change each
// event makes to it.
package ledger
