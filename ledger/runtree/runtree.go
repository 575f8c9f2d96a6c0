// Package runtree turns a run's ledger into what people read: a tree of
// hops in time order, each with its caller, target, depth, decision and
// reason, status, latency and spend, the limit a denial tripped and who
// halted the run, plus the spend per agent and the call graph. The demo,
// replay and reports render it as text, JSON, DOT or Mermaid.
//
// Verify checks a run's records before they are shown: the hash chain as
// ledger.Verify does and the envelope signatures as
// ledger.VerifySignatures does, spread over every CPU, and it keeps what it
// decoded so that the tree is built from exactly the bytes it verified.
package runtree

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Run statuses besides the terminal A2A states a completed run reports.
const (
	StatusRunning = "running"
	StatusHalted  = "halted"
)

// Hop statuses that are not A2A task states.
const (
	statusOpen     = string(ledger.HopOpen)
	statusDenied   = string(ledger.HopDenied)
	statusTimedOut = string(ledger.HopTimedOut)
)

// Hop decisions.
const (
	DecisionAllowed      = "allowed"
	DecisionAllowedAudit = "allowed (audit: would deny)"
	DecisionDenied       = "denied"
)

// Run is a run as a tree.
type Run struct {
	RunID      string                `json:"run_id"`
	Caller     string                `json:"caller,omitempty"`
	CallerType schemas.PrincipalType `json:"caller_type,omitempty"`
	OnBehalfOf string                `json:"on_behalf_of,omitempty"`
	Workflow   string                `json:"workflow,omitempty"`
	// TraceID is the OpenTelemetry trace of the run (run.started), to open
	// it in a tracing backend.
	TraceID string `json:"trace_id,omitempty"`
	// Status is running, halted, or the terminal state run.completed
	// recorded (completed, failed, canceled, rejected).
	Status    string             `json:"status"`
	Halted    bool               `json:"halted"`
	StartedAt time.Time          `json:"started_at,omitzero"`
	LastAt    time.Time          `json:"last_at,omitzero"`
	Limits    *schemas.RunLimits `json:"limits,omitempty"`
	// Events is the number of ledger events the tree folds.
	Events int `json:"events"`
	// AsOf is set when the tree shows the run as of an earlier event: the
	// seq of the last event folded.
	AsOf uint64 `json:"as_of,omitempty"`
	// Hops are every hop and denied attempt, in ledger order.
	Hops []*Hop `json:"hops"`
	// Roots are the hops without a parent in the run; the rest hang below
	// them through Hop.Children.
	Roots    []*Hop                     `json:"-"`
	Breaches []schemas.RunLimitBreached `json:"breaches,omitempty"`
	// Halt says who halted the run, why, and which hops it cancelled.
	Halt *Halt `json:"halt,omitempty"`
	// CostByAgent is the spend each agent reported in its replies.
	CostByAgent map[string]AgentCost `json:"cost_by_agent"`
	Tokens      int64                `json:"tokens"`
	CostUSD     float64              `json:"cost_usd"`
	// ReservedTokens and ReservedCostUSD are what the estimates of open
	// hops hold against the run's budget.
	ReservedTokens  int64   `json:"reserved_tokens,omitempty"`
	ReservedCostUSD float64 `json:"reserved_cost_usd,omitempty"`
	// OpenHops are the hops allowed and not closed yet.
	OpenHops []string `json:"open_hops,omitempty"`
	// HeadHash is the hash of the last event folded.
	HeadHash string `json:"head_hash"`
}

// Hop is one hop (or denied attempt) of the run.
type Hop struct {
	HopID    string                `json:"hop_id"`
	ParentID string                `json:"parent_hop_id,omitempty"`
	From     string                `json:"from"`
	FromType schemas.PrincipalType `json:"from_type,omitempty"`
	To       string                `json:"to"`
	ToType   schemas.PrincipalType `json:"to_type,omitempty"`
	Action   schemas.Action        `json:"action,omitempty"`
	Depth    int                   `json:"depth"`
	Decision string                `json:"decision"`
	Reason   schemas.Reason        `json:"reason,omitempty"`
	Message  string                `json:"message,omitempty"`
	// PolicyIDs are the Cedar policies that decided: the forbids of a
	// policy denial, the permits otherwise.
	PolicyIDs []string          `json:"policy_ids,omitempty"`
	Audit     []schemas.Finding `json:"audit,omitempty"`
	// Cycle is set when the target already was in the hop's ancestry.
	Cycle bool `json:"cycle,omitempty"`
	// Breach is the run limit this denial tripped; BreachAction is what
	// the gateway did about it (halt or deny) and BreachSeq the seq of the
	// run.limit_breached event that recorded it.
	Breach       *schemas.Breach `json:"breach,omitempty"`
	BreachAction string          `json:"breach_action,omitempty"`
	BreachSeq    uint64          `json:"breach_seq,omitempty"`
	// Status is open, denied, timed_out, or the terminal A2A state the hop
	// was closed with.
	Status string `json:"status"`
	// ClosedBy is who closed the hop: the callee (reply), the caller
	// (cancel), or "gateway" (halt).
	ClosedBy  string    `json:"closed_by,omitempty"`
	Error     string    `json:"error,omitempty"`
	LatencyMS int64     `json:"latency_ms,omitempty"`
	Tokens    int64     `json:"tokens"`
	CostUSD   float64   `json:"cost_usd"`
	Seq       uint64    `json:"seq"`
	ClosedSeq uint64    `json:"closed_seq,omitempty"`
	At        time.Time `json:"at"`
	// SpanID locates the hop's span in the run's trace (TraceID when it
	// differs from the run's).
	TraceID      string `json:"trace_id,omitempty"`
	SpanID       string `json:"span_id,omitempty"`
	ParentSpanID string `json:"parent_span_id,omitempty"`
	// Input and Output are the A2A message in and the result out, filled
	// by Run.LoadPayloads.
	Input  string `json:"input,omitempty"`
	Output string `json:"output,omitempty"`

	Children []*Hop `json:"-"`

	invoke, reply json.RawMessage
	estimate      *schemas.Usage
}

// Halt is a recorded run.halted.
type Halt struct {
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	Limit  string    `json:"limit,omitempty"`
	// Cancelled are the hops the halt cancelled.
	Cancelled []string `json:"cancelled,omitempty"`
}

// AgentCost is what one agent reported spending.
type AgentCost struct {
	Agent   string  `json:"-"`
	Hops    int     `json:"hops"`
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
}

// event is a record with its data decoded.
type event struct {
	ev        schemas.Event
	data      any
	streamSeq uint64
}

// Build folds a run's records into its tree. The records must be the run's
// events in order from the first (seq 1, 2, ...); Build does not check
// hashes or signatures: Verify does, and builds the same tree with
// Verified.Tree.
func Build(run string, recs []ledger.Record) (*Run, error) {
	evs := make([]event, len(recs))
	for i := range recs {
		data, err := recs[i].Event.DecodeData()
		if err != nil {
			return nil, fmt.Errorf("run %s event %d: %w", run, recs[i].Event.Seq, err)
		}
		evs[i] = event{ev: recs[i].Event, data: data, streamSeq: recs[i].StreamSeq}
	}
	return build(run, evs)
}

// AsOf returns the tree of the run as of its event seq: only the first seq
// events folded, as the run stood when that event was recorded.
func AsOf(run string, recs []ledger.Record, seq uint64) (*Run, error) {
	if seq < 1 || seq > uint64(len(recs)) {
		return nil, fmt.Errorf("run %s has events 1 to %d; there is no event %d", run, len(recs), seq)
	}
	r, err := Build(run, recs[:seq])
	if err != nil {
		return nil, err
	}
	r.AsOf = seq
	return r, nil
}

func build(run string, evs []event) (*Run, error) {
	r := &Run{RunID: run, Events: len(evs), Hops: []*Hop{}, HeadHash: schemas.GenesisHash}
	byID := map[string]*Hop{}
	costs := map[string]*AgentCost{}
	completed := false
	var completedStatus schemas.TaskState
	for i := range evs {
		e := &evs[i]
		ev := &e.ev
		if ev.Seq != uint64(i+1) {
			return nil, fmt.Errorf("run %s: event seq %d does not follow %d", run, ev.Seq, i)
		}
		switch d := e.data.(type) {
		case *schemas.RunStarted:
			r.Caller, r.CallerType, r.OnBehalfOf, r.Workflow = d.Caller, d.CallerType, d.OnBehalfOf, d.Workflow
			r.Limits, r.TraceID, r.StartedAt = d.Limits, d.TraceID, ev.At
		case *schemas.HopDecision:
			if ev.Type == schemas.EventHopDenied && d.Kind != schemas.KindInvoke && d.Kind != "" {
				continue // a refused reply or cancel: not a hop of its own
			}
			h := newHop(ev, d)
			if h.HopID == "" || byID[h.HopID] != nil {
				h.HopID = fmt.Sprintf("%s#%d", h.HopID, ev.Seq) // a replayed or unreadable id
			}
			if h.TraceID == r.TraceID {
				h.TraceID = ""
			}
			byID[h.HopID] = h
			r.Hops = append(r.Hops, h)
		case *schemas.HopCompleted:
			h := byID[ev.HopID]
			if h == nil {
				continue
			}
			if d.Usage != nil {
				r.Tokens += d.Usage.Tokens()
				r.CostUSD += d.Usage.Cost()
			}
			if h.Status != statusOpen {
				continue
			}
			h.Status, h.ClosedBy, h.Error, h.LatencyMS, h.ClosedSeq = string(d.Status), d.By, d.Error, d.LatencyMS, ev.Seq
			h.reply = d.Envelope
			if d.Usage != nil {
				h.Tokens, h.CostUSD = d.Usage.Tokens(), d.Usage.Cost()
				c := costs[h.To]
				if c == nil {
					c = &AgentCost{Agent: h.To}
					costs[h.To] = c
				}
				c.Hops++
				c.Tokens += h.Tokens
				c.CostUSD += h.CostUSD
			}
		case *schemas.HopTimedOut:
			if h := byID[ev.HopID]; h != nil && h.Status == statusOpen {
				h.Status, h.LatencyMS, h.ClosedSeq = statusTimedOut, d.LatencyMS, ev.Seq
			}
		case *schemas.RunLimitBreached:
			r.Breaches = append(r.Breaches, *d)
			if h := byID[d.HopID]; h != nil && d.HopID != "" {
				h.BreachAction, h.BreachSeq = d.Action, ev.Seq
				if h.Breach == nil {
					h.Breach = &schemas.Breach{Limit: d.Limit, Value: d.Value, Bound: d.Bound}
				}
			}
		case *schemas.RunHalted:
			r.Halted = true
			r.Halt = &Halt{Seq: ev.Seq, At: ev.At, By: d.By, Reason: d.Reason, Limit: d.Limit}
			for _, id := range d.OpenHops {
				if h := byID[id]; h != nil && h.Status == statusOpen {
					h.Status, h.ClosedBy, h.ClosedSeq = string(schemas.StateCanceled), "gateway", ev.Seq
					h.LatencyMS = ev.At.Sub(h.At).Milliseconds()
					r.Halt.Cancelled = append(r.Halt.Cancelled, id)
				}
			}
		case *schemas.RunCompleted:
			completed, completedStatus = true, d.Status
		}
		r.HeadHash, r.LastAt = ev.Hash, ev.At
	}
	switch {
	case r.Halted:
		r.Status = StatusHalted
	case completed:
		r.Status = string(completedStatus)
	default:
		r.Status = StatusRunning
	}
	for _, h := range r.Hops {
		// A parent precedes its children in the ledger; linking only to an
		// earlier hop keeps even a doctored ledger a tree.
		if p := byID[h.ParentID]; p != nil && h.ParentID != "" && p.Seq < h.Seq {
			p.Children = append(p.Children, h)
		} else {
			r.Roots = append(r.Roots, h)
		}
		if h.Status == statusOpen {
			r.OpenHops = append(r.OpenHops, h.HopID)
			r.ReservedTokens += h.estimate.Tokens()
			r.ReservedCostUSD += h.estimate.Cost()
		}
	}
	r.CostByAgent = make(map[string]AgentCost, len(costs))
	for _, c := range costs {
		r.CostByAgent[c.Agent] = *c
	}
	return r, nil
}

func newHop(ev *schemas.Event, d *schemas.HopDecision) *Hop {
	h := &Hop{HopID: ev.HopID, ParentID: d.ParentHopID, From: d.From, FromType: d.FromType, To: d.To, ToType: d.ToType,
		Action: d.Action, Depth: d.Depth, Reason: d.Reason, Message: d.Message, PolicyIDs: d.PolicyIDs, Audit: d.Audit,
		Cycle: d.Cycle, Breach: d.Breach, Seq: ev.Seq, At: ev.At, TraceID: d.TraceID, SpanID: d.SpanID,
		ParentSpanID: d.ParentSpanID, invoke: d.Envelope, estimate: d.Estimate}
	if ev.Type == schemas.EventHopAllowed {
		h.Decision, h.Status = DecisionAllowed, statusOpen
		if len(d.Audit) > 0 {
			h.Decision = DecisionAllowedAudit
		}
	} else {
		h.Decision, h.Status = DecisionDenied, statusDenied
	}
	return h
}

// Denied reports whether the hop was denied.
func (h *Hop) Denied() bool { return h.Decision == DecisionDenied }

// Allowed counts the hops that were allowed.
func (r *Run) Allowed() int {
	n := 0
	for _, h := range r.Hops {
		if !h.Denied() {
			n++
		}
	}
	return n
}

// AgentCosts returns the spend per agent, most expensive first.
func (r *Run) AgentCosts() []AgentCost {
	out := make([]AgentCost, 0, len(r.CostByAgent))
	for agent, c := range r.CostByAgent {
		c.Agent = agent
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b AgentCost) int {
		if c := cmp.Compare(b.CostUSD, a.CostUSD); c != 0 {
			return c
		}
		return cmp.Compare(a.Agent, b.Agent)
	})
	return out
}
