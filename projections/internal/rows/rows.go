// Package rows turns ledger records into the rows of the ClickHouse
// projection tables. It does no I/O of its own: a Folder keeps the state of
// recent runs and asks a Loader for a run's earlier events when it has not
// seen them.
//
// Every row is a pure function of one event and the run's events before it,
// and carries the run's ledger seq as its version. Projecting an event twice
// therefore yields the very same rows, which is what makes the projection
// idempotent under ReplacingMergeTree.
package rows

import (
	"time"
)

// Event is a row of the events table: one ledger event as stored.
type Event struct {
	RunID     string
	Seq       uint64
	StreamSeq uint64
	Type      string
	At        time.Time
	HopID     string
	// Rejected marks an event of a ledger entry that belongs to no run (a
	// submission rejected before its run could be known).
	Rejected bool
	// Data is the event's type-specific payload as JSON, without the
	// submission's wire form (the envelope or raw bytes a decision or
	// completion records): message content stays in the ledger.
	Data     string
	PrevHash string
	Hash     string
}

// Hop is a row of the hops table: one decided submission (hop.allowed or
// hop.denied), updated by the events that close it. Its key is the run and
// the ledger seq of the decision (HopSeq): hop ids repeat within a run (a
// denied reply names the hop it replies to), decision seqs do not.
type Hop struct {
	RunID       string
	HopSeq      uint64
	HopID       string
	ParentHopID string
	Kind        string
	Caller      string
	CallerTeam  string
	Target      string
	TargetTeam  string
	Action      string
	Depth       uint32
	Ancestry    []string
	Cycle       bool
	// Decision is ledger.DecisionAllowed or ledger.DecisionDenied.
	Decision  string
	Reason    string
	Message   string
	PolicyIDs []string
	// Status is open, denied, timed_out, or the task state that closed the
	// hop (completed, failed, canceled, rejected).
	Status       string
	ClosedBy     string
	Error        string
	OpenedAt     time.Time
	ClosedAt     time.Time
	LatencyMS    int64
	InputTokens  int64
	OutputTokens int64
	CostUSD      float64
	// Workflow and Principal are the run's (run.started workflow, and the
	// on_behalf_of the gateway derived).
	Workflow  string
	Principal string
	Rejected  bool
	// Tainted and TaintSources are the hop's taint as of this version;
	// GuardrailVerdict and GuardrailRules what the guardrails found in its
	// message, ReplyGuardrail* in its reply.
	Tainted               bool
	TaintSources          []string
	GuardrailVerdict      string
	GuardrailRules        []string
	ReplyGuardrailVerdict string
	ReplyGuardrailRules   []string
	// Version is the ledger seq of the event that last changed the row.
	Version uint64
}

// Key returns the hop's key in its table.
func (h *Hop) Key() HopKey { return HopKey{RunID: h.RunID, HopSeq: h.HopSeq} }

// HopKey identifies a hop row.
type HopKey struct {
	RunID  string
	HopSeq uint64
}

// Run is a row of the runs table: one run as its ledger stands at Version.
type Run struct {
	RunID           string
	Caller          string
	CallerType      string
	Principal       string
	Workflow        string
	RootHopID       string
	StartedAt       time.Time
	EndedAt         time.Time
	DepthLimit      uint32
	EdgeRepeatLimit uint32
	// Status is running, halted, or the run's completion state.
	Status     string
	Halted     bool
	HaltedBy   string
	HaltReason string
	HaltLimit  string
	// Events is the number of ledger events so far (the seq of the last).
	Events     uint64
	Hops       uint32
	Denials    uint32
	Breaches   uint32
	OpenHops   uint32
	Tokens     int64
	CostUSD    float64
	DurationMS int64
	Version    uint64
}

// Breach is a row of the breaches table: one run.limit_breached event.
type Breach struct {
	RunID  string
	Seq    uint64
	At     time.Time
	Limit  string
	Value  float64
	Bound  float64
	Reason string
	Caller string
	Target string
	Action string
	// HopID is the hop whose admission or reply tripped the limit.
	HopID     string
	Workflow  string
	Principal string
}

// Batch collects the rows of a run of events. Hop and run rows are
// coalesced: only the latest version of each key is kept, since that is all
// a ReplacingMergeTree keeps.
type Batch struct {
	Events   []Event
	Breaches []Breach
	Hops     map[HopKey]*Hop
	Runs     map[string]*Run
}

// NewBatch returns an empty batch.
func NewBatch() *Batch {
	return &Batch{Hops: map[HopKey]*Hop{}, Runs: map[string]*Run{}}
}

// Empty reports whether the batch holds no rows.
func (b *Batch) Empty() bool {
	return len(b.Events) == 0 && len(b.Breaches) == 0 && len(b.Hops) == 0 && len(b.Runs) == 0
}

func (b *Batch) putHop(h *Hop) {
	if old := b.Hops[h.Key()]; old == nil || h.Version >= old.Version {
		b.Hops[h.Key()] = h
	}
}
