// Package a2ahttp is the A2A HTTP binding of the gateway: the ingress that
// makes unmodified A2A clients governed callers, and the bridge that puts
// unmodified A2A servers behind the gateway.
//
// Ingress (Server): for every registered agent it serves, under
// /<agent-id>/, the agent card at /.well-known/agent-card.json (the
// agent's own card, rewritten so its interfaces point at the gateway and
// its security scheme is the gateway's bearer token) and the A2A
// operations: v1.0 JSON-RPC at /<agent-id>/ (A2A-Version: 1.0), v1.0
// HTTP+JSON under /<agent-id>/rest, and v0.3 JSON-RPC at /<agent-id>/ when
// A2A-Version is absent or 0.3. The protocol work is a2a-go/v2's (a2asrv,
// a2acompat/a2av0); this package supplies the request handler, which turns
// each call into a governed hop through broker/ingress.
//
// Bridge: consumes an agent's deliveries and calls its A2A server (v1.0 or
// v0.3, discovered from its card), then replies with the result and the
// usage the server reported (see UsageMetadataKey).
//
// Tasks and runs: a task id at the ingress is "<run>.<hop>", its context
// id the run. A call made while serving a task names that task in the
// message metadata under ParentTaskKey; the bridge gives the server the
// task it serves under TaskKey. GetTask and ListTasks answer from the
// ledger; ListTasks without a context id from the task list, an index of
// each caller's tasks at each agent that every ingress instance derives
// from the ledger (Server.Start rebuilds it and keeps it following; see
// TaskListConfig for its bounds).
package a2ahttp

// The Tollgate A2A extension: how a call names the task it is made for,
// so that delegation depth, ancestry and principal continue.
const (
	// ExtensionURI is declared in the cards the ingress serves.
	ExtensionURI = "https://tollgate.dev/a2a/ext/governance/v1"
	// ParentTaskKey is the message (or request) metadata member naming the
	// task ("<run>.<hop>") the caller is working on when it delegates.
	ParentTaskKey = "tollgate.parent_task"
	// TaskKey is the message metadata member the bridge sets on the
	// message it sends an A2A server: the task ("<run>.<hop>") it serves,
	// to be named as ParentTaskKey in the server's onward calls.
	TaskKey = "tollgate.task"
	// UsageMetadataKey is the member of a task's or message's metadata
	// where an A2A server reports what it spent: {"input_tokens": n,
	// "output_tokens": n, "cost_usd": x}. The bridge takes it into the
	// reply's usage, and the ingress reports a hop's usage there.
	UsageMetadataKey = "tollgate.usage"
	// NATSBindingURI names the native NATS transport as an A2A custom
	// protocol binding (docs/a2a-nats-binding.md).
	NATSBindingURI = "https://tollgate.dev/a2a/bindings/nats/v1"
)
