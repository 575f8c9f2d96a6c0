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
}

// Alert kinds.
const (
	AlertHalt     = "halt"
	AlertApproval = "approval"
)
