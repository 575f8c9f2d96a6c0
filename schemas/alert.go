package schemas

import "time"

// Alert is what the gateway publishes on tg.alert.<run> when a run is
// halted (by a tripped limit or by an operator), and on
// tg.alert.<run>.approval.<hop> when a hop waits for a human's approval.
type Alert struct {
	// Version is the schema version, always 1.
	Version int       `json:"v"`
	RunID   string    `json:"run_id"`
	At      time.Time `json:"at"`
	// Kind is AlertHalt (empty in alerts written before approvals) or
	// AlertApproval.
	Kind string `json:"kind,omitempty"`
	// Reason is the denial reason of the breach ("loop", "budget", ...) or
	// "operator" for a kill switch.
	Reason Reason `json:"reason,omitempty"`
	// Limit, Value and Bound describe the tripped limit.
	Limit string  `json:"limit,omitempty"`
	Value float64 `json:"value,omitempty"`
	Bound float64 `json:"bound,omitempty"`
	// Agent is the caller whose hop tripped the limit; From and To the edge.
	Agent string `json:"agent,omitempty"`
	From  string `json:"from,omitempty"`
	To    string `json:"to,omitempty"`
	// HopID is the hop that tripped it.
	HopID      string `json:"hop_id,omitempty"`
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
	Workflow   string `json:"workflow,omitempty"`
	// By is GatewayActor or the operator who halted the run.
	By string `json:"by"`
	// Message explains the halt.
	Message string `json:"message"`
	// OpenHops were cancelled by the halt.
	OpenHops []string `json:"open_hops,omitempty"`
	// LedgerSeq is the seq of the run.halted (or hop.pending) event.
	LedgerSeq uint64 `json:"ledger_seq"`
	// Approvers and Deadline are those of the hop an approval alert asks
	// about: the operator groups that may approve it (any operator when
	// empty), and when it is rejected unless approved.
	Approvers []string  `json:"approvers,omitempty"`
	Deadline  time.Time `json:"deadline,omitzero"`
	// Circuit is the new state of a target's circuit breaker (closed,
	// open, half_open) in an AlertCircuit; Agent is the target.
	Circuit string `json:"circuit,omitempty"`
	// In an AlertSpendSpike: Scope (agent or team) and Agent or Team say
	// whose spend spiked; Rate is its cost per minute over the short
	// window, Baseline the trailing one, Factor their ratio; TopRuns and
	// TopEdges drive it, costliest first.
	Scope    string      `json:"scope,omitempty"`
	Team     string      `json:"team,omitempty"`
	Rate     float64     `json:"rate,omitempty"`
	Baseline float64     `json:"baseline,omitempty"`
	Factor   float64     `json:"factor,omitempty"`
	TopRuns  []SpendItem `json:"top_runs,omitempty"`
	TopEdges []SpendItem `json:"top_edges,omitempty"`
}

// SpendItem is a run or an edge ("caller->target") and what it spent in
// a spend-spike alert's window.
type SpendItem struct {
	Key     string  `json:"key"`
	CostUSD float64 `json:"cost_usd"`
	Hops    int     `json:"hops"`
}

// Alert kinds.
const (
	AlertHalt     = "halt"
	AlertApproval = "approval"
	// AlertCircuit reports a target's circuit breaker changing state; it
	// is published on tg.alert.fleet.circuit.<target>.
	AlertCircuit = "circuit"
	// AlertSpendSpike reports an agent's or a team's cost rate spiking
	// past its trailing baseline; published on
	// tg.alert.fleet.spend_spike.<agent or team>. It denies nothing.
	AlertSpendSpike = "spend_spike"
)
