// Package ledger is the append-only, hash-chained event log of a run, kept
// on JetStream: one subject per run (tg.ledger.<run>) in a stream that denies
// deletes, purges and rollups.
//
// Appends use optimistic concurrency: each one names the stream sequence of
// the run's last event (0 for a new run, which makes run creation atomic),
// so two writers can never interleave a run. Each event's hash covers the
// previous hash and the event's compact JSON, so editing, dropping or
// reordering any event is detected by Verify. Fold turns a run's events into
// its State; the enforcer keeps that state in memory and rebuilds it from
// here whenever it needs to.
package ledger
