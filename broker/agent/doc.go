// Package agent is the Go client for agents (and users) on a Tollgate bus.
// An agent connects with its own nkey, receives the tasks delivered to it,
// replies to them, and delegates to other agents from inside a task, with
// the parent hop carried automatically. Every envelope it sends is signed
// with its key. Messages are A2A v1.0 messages (github.com/a2aproject/a2a-go/v2), in v2 envelopes.
//
// The client never asserts governance context: run, depth, ancestry and
// principal arrive with each delivery, stamped by the gateway from the
// ledger.
package agent
