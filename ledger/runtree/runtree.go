// Package runtree turns a run's ledger into what people read: a tree of
// hops in time order, each with its caller, target, depth, decision and
// reason, status, latency and spend, the limit a denial tripped and who
// halted the run, plus the spend per agent and the call graph. The demo,
// replay and reports render it as text, JSON, DOT or Mermaid.
//
// The tree is a view of ledger.State: the state decides which hops opened
// and closed and what the run spent, and the tree shows each change. Verify
// a run with ledger.Verify first and build its tree with FromVerified, so
// that the tree is built from exactly the bytes that were verified.
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

// statusDenied is the status of a denial that records no hop.
const statusDenied = string(ledger.HopDenied)

// Hop decisions: ledger.DecisionAllowed, ledger.DecisionDenied, and an
// allowed hop the audit policies would have denied.
const (
	DecisionAllowed      = ledger.DecisionAllowed
	DecisionAllowedAudit = "allowed (audit: would deny)"
	DecisionDenied       = ledger.DecisionDenied
	// DecisionHeld is a hop a policy held for a human's approval
	// (hop.pending); Hop.Approval says what became of it.
	DecisionHeld = "held for approval"
)

// Approval is what happened to a hop held for approval.
type Approval struct {
	Approvers []string  `json:"approvers,omitempty"`
	PolicyIDs []string  `json:"policy_ids"`
	Deadline  time.Time `json:"deadline"`
	// Outcome is "pending", "approved" or "rejected"; By, Note and Seq say
	// who answered, why, and in which event.
	Outcome string `json:"outcome"`
	By      string `json:"by,omitempty"`
	Note    string `json:"note,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
}

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
// Retry is one attempt the gateway made again (hop.retried): Attempt is
// the new attempt's number at To, the target both went to.
type Retry struct {
	Attempt    int       `json:"attempt"`
	To         string    `json:"to"`
	Cause      string    `json:"cause"`
	ErrorClass string    `json:"error_class,omitempty"`
	Error      string    `json:"error,omitempty"`
	RetryAt    time.Time `json:"retry_at"`
	Seq        uint64    `json:"seq"`
}

// Reroute is a hop sent to a fallback target (hop.rerouted).
type Reroute struct {
	From    string                `json:"from"`
	To      string                `json:"to"`
	ToType  schemas.PrincipalType `json:"to_type,omitempty"`
	Cause   string                `json:"cause"`
	Skipped []string              `json:"skipped,omitempty"`
	Seq     uint64                `json:"seq"`
}

// Attempt is one delivery (or, re-routed at admission, one target tried)
// of a hop that was retried or re-routed, with its outcome.
type Attempt struct {
	// N is the attempt's number at To (1 for the first; 0 for a target
	// the hop was re-routed away from before anything was delivered).
	N  int    `json:"n"`
	To string `json:"to"`
	// Outcome is failed or timed_out (the gateway tried again),
	// unavailable (re-routed away: no consumer, circuit open), or for the
	// last attempt the hop's status (open, completed, failed, ...).
	Outcome    string `json:"outcome"`
	Cause      string `json:"cause,omitempty"`
	ErrorClass string `json:"error_class,omitempty"`
	Error      string `json:"error,omitempty"`
	// Tokens and CostUSD are what the attempt reported.
	Tokens  int64   `json:"tokens,omitempty"`
	CostUSD float64 `json:"cost_usd,omitempty"`
	// Seq is the event that ended the attempt (hop.retried, hop.rerouted,
	// or the hop's close); 0 while it is open.
	Seq uint64 `json:"seq,omitempty"`
}

// Hop is one decided submission of the run.
type Hop struct {
	// Retries are the attempts the gateway made again (hop.retried), and
	// Reroutes the fallbacks the hop was sent to (hop.rerouted), in order.
	Retries  []Retry   `json:"retries,omitempty"`
	Reroutes []Reroute `json:"reroutes,omitempty"`
	// Attempts lists, for a hop retried or re-routed, every attempt with
	// its target and outcome, the last one included; empty otherwise.
	Attempts []Attempt             `json:"attempts,omitempty"`
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
	// (cancel), or schemas.GatewayActor (halt).
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
	// Approval is set for a hop held for a human's approval.
	Approval *Approval `json:"approval,omitempty"`
	// Guardrail is what the guardrails found in the invoke's message, and
	// ReplyGuardrail in the reply's result.
	Guardrail      *schemas.Guardrail `json:"guardrail,omitempty"`
	ReplyGuardrail *schemas.Guardrail `json:"reply_guardrail,omitempty"`
	// Tainted is set when the hop's content may come from an untrusted
	// source; TaintSources says which (docs/guardrails.md). A tainted
	// reply below the hop adds its sources.
	Tainted      bool     `json:"tainted,omitempty"`
	TaintSources []string `json:"taint_sources,omitempty"`
	// Input and Output are the A2A message in and the result out, filled
	// by Run.LoadPayloads.
	Input  string `json:"input,omitempty"`
	Output string `json:"output,omitempty"`

	Children []*Hop `json:"-"`

	invoke, reply json.RawMessage
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

// Build folds a run's records into its tree. The records must be the run's
// events in order from the first (seq 1, 2, ...); Build does not check
// hashes or signatures: ledger.Verify does, and FromVerified builds the
// same tree from what it verified.
func Build(run string, recs []ledger.Record) (*Run, error) {
	evs := make([]ledger.Entry, len(recs))
	for i := range recs {
		data, err := recs[i].Event.DecodeData()
		if err != nil {
			return nil, fmt.Errorf("run %s event %d: %w", run, recs[i].Event.Seq, err)
		}
		evs[i] = ledger.Entry{Event: recs[i].Event, Data: data, StreamSeq: recs[i].StreamSeq}
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

// FromVerified builds the tree of a verified run's valid events (all of
// them when the run verified), from the events as the verifier decoded
// them: exactly the bytes it verified.
func FromVerified(v *ledger.Verified) (*Run, error) { return build(v.RunID, v.Entries()) }

// FromVerifiedAsOf builds the tree of a verified run as of event seq: the
// first seq events only. It refuses a seq past the valid events.
func FromVerifiedAsOf(v *ledger.Verified, seq uint64) (*Run, error) {
	if seq < 1 || seq > uint64(v.Events) {
		return nil, fmt.Errorf("run %s has events 1 to %d; there is no event %d", v.RunID, v.Events, seq)
	}
	if seq > uint64(v.Valid) {
		return nil, fmt.Errorf("event %d of run %s is past the first broken link (event %d)", seq, v.RunID, v.Valid+1)
	}
	r, err := build(v.RunID, v.Entries()[:seq])
	if err != nil {
		return nil, err
	}
	r.AsOf = seq
	return r, nil
}

// build folds the events with ledger.State, which decides every hop's
// status and the run's spend, and dresses each change with what the tree
// shows: who, what, why, latency, payloads, the per-agent cost.
func build(run string, evs []ledger.Entry) (*Run, error) {
	r := &Run{RunID: run, Events: len(evs), Hops: []*Hop{}}
	st := ledger.NewViewState(run)
	// views are the tree's hops of the state's hops; byID the first hop
	// shown under each id (ids are unique in the tree, and children hang
	// below the hop their parent id names).
	views := map[*ledger.Hop]*Hop{}
	byID := map[string]*Hop{}
	costs := map[string]*AgentCost{}
	for i := range evs {
		e := &evs[i]
		ev := &e.Event
		c, err := st.ApplyDecoded(ev, e.Data, e.StreamSeq)
		if err != nil {
			return nil, err
		}
		switch d := e.Data.(type) {
		case *schemas.HopDecision:
			if c.Kind == ledger.ChangeDenial && d.Kind != schemas.KindInvoke && d.Kind != "" {
				continue // a refused reply or cancel: not a hop of its own
			}
			h := newHop(ev, d, c.Hop)
			if c.Hop != nil {
				views[c.Hop] = h
			}
			if h.HopID == "" || byID[h.HopID] != nil {
				h.HopID = fmt.Sprintf("%s#%d", h.HopID, ev.Seq) // a replayed or unreadable id
			}
			if h.TraceID == st.TraceID {
				h.TraceID = ""
			}
			byID[h.HopID] = h
			r.Hops = append(r.Hops, h)
		case *schemas.HopApproved:
			if h := views[c.Hop]; c.Kind == ledger.ChangeApproved && h != nil && h.Approval != nil {
				h.Status = string(c.Hop.Status)
				h.Approval.Outcome, h.Approval.By, h.Approval.Note, h.Approval.Seq = "approved", d.By, d.Note, ev.Seq
			}
		case *schemas.HopRejected:
			if h := views[c.Hop]; c.Kind == ledger.ChangeRejected && h != nil && h.Approval != nil {
				h.Status, h.Reason, h.Message, h.ClosedBy, h.ClosedSeq = string(c.Hop.Status), schemas.ReasonApproval, d.Message, d.By, ev.Seq
				h.Approval.Outcome, h.Approval.By, h.Approval.Note, h.Approval.Seq = "rejected", d.By, d.Message, ev.Seq
			}
		case *schemas.HopCompleted:
			h := views[c.Hop]
			if c.Kind != ledger.ChangeClosed && c.Kind != ledger.ChangeSettled || h == nil {
				continue
			}
			if c.Kind == ledger.ChangeClosed {
				h.Status, h.ClosedBy, h.Error, h.LatencyMS, h.ClosedSeq = string(c.Hop.Status), d.By, d.Error, d.LatencyMS, ev.Seq
				h.reply, h.ReplyGuardrail = d.Envelope, d.Guardrail
			}
			// A settle (the late reply of a hop the halt closed) adds what
			// the hop used; the hop stays as the halt closed it.
			if u := c.Hop.Usage; u != nil {
				// Added to what failed attempts reported (hop.retried).
				h.Tokens += u.Tokens()
				h.CostUSD += u.Cost()
				spend(costs, h.To, u, true)
			}
		case *schemas.HopRetried:
			if h := views[c.Hop]; c.Kind == ledger.ChangeRetried && h != nil {
				h.Retries = append(h.Retries, Retry{Attempt: d.Attempt, To: h.To, Cause: d.Cause, ErrorClass: d.ErrorClass, Error: d.Error, RetryAt: d.RetryAt, Seq: ev.Seq})
				a := Attempt{N: d.Attempt - 1, To: h.To, Outcome: string(schemas.StateFailed), Cause: d.Cause, ErrorClass: d.ErrorClass, Error: d.Error, Seq: ev.Seq}
				if d.Cause == schemas.RetryTimeout {
					a.Outcome = string(ledger.HopTimedOut)
				}
				if u := d.Usage; u != nil {
					h.Tokens += u.Tokens()
					h.CostUSD += u.Cost()
					a.Tokens, a.CostUSD = u.Tokens(), u.Cost()
					spend(costs, h.To, u, false)
				}
				h.Attempts = append(h.Attempts, a)
			}
		case *schemas.HopRerouted:
			if h := views[c.Hop]; c.Kind == ledger.ChangeRerouted && h != nil {
				h.Reroutes = append(h.Reroutes, Reroute{From: d.From, To: d.To, ToType: d.ToType, Cause: d.Cause, Skipped: d.Skipped, Seq: ev.Seq})
				a := Attempt{N: d.Attempts, To: d.From, Outcome: "unavailable", Cause: d.Cause, Seq: ev.Seq}
				if d.Cause == schemas.RerouteTimeout {
					a.Outcome = string(ledger.HopTimedOut)
				}
				h.Attempts = append(h.Attempts, a)
				h.To = d.To
			}
		case *schemas.HopTimedOut:
			if h := views[c.Hop]; c.Kind == ledger.ChangeTimedOut && h != nil {
				h.Status, h.LatencyMS, h.ClosedSeq = string(c.Hop.Status), d.LatencyMS, ev.Seq
			}
		case *schemas.RunLimitBreached:
			if h := byID[d.HopID]; h != nil && d.HopID != "" {
				h.BreachAction, h.BreachSeq = d.Action, ev.Seq
				if h.Breach == nil {
					h.Breach = &schemas.Breach{Limit: d.Limit, Value: d.Value, Bound: d.Bound}
				}
			}
		case *schemas.RunHalted:
			r.Halt = &Halt{Seq: ev.Seq, At: ev.At, By: d.By, Reason: d.Reason, Limit: d.Limit}
			for _, sh := range c.Cancelled {
				if h := views[sh]; h != nil {
					h.Status, h.ClosedBy, h.ClosedSeq = string(sh.Status), schemas.GatewayActor, ev.Seq
					h.LatencyMS = ev.At.Sub(h.At).Milliseconds()
				}
				r.Halt.Cancelled = append(r.Halt.Cancelled, sh.ID)
			}
		}
	}
	r.Caller, r.CallerType, r.OnBehalfOf, r.Workflow = st.Caller, st.CallerType, st.OnBehalfOf, st.Workflow
	r.Limits, r.TraceID, r.StartedAt = st.Limits, st.TraceID, st.StartedAt
	r.HeadHash, r.LastAt = st.Head.Hash, st.LastAt
	r.Breaches, r.Halted = st.Breaches, st.Halted
	r.Tokens, r.CostUSD = st.Spent.Tokens, st.Spent.CostUSD
	r.Status = st.RunStatus()
	for _, h := range r.Hops {
		// A parent precedes its children in the ledger; linking only to an
		// earlier hop keeps even a doctored ledger a tree.
		if p := byID[h.ParentID]; p != nil && h.ParentID != "" && p.Seq < h.Seq {
			p.Children = append(p.Children, h)
		} else {
			r.Roots = append(r.Roots, h)
		}
	}
	for sh, h := range views {
		h.Tainted, h.TaintSources = sh.Tainted, sh.TaintSources // as tainted replies left it
		// A retried or re-routed hop lists its last attempt (or the one
		// under way) too.
		if len(h.Attempts) > 0 {
			last := Attempt{N: sh.CurrentAttempt(), To: h.To, Outcome: h.Status, Seq: h.ClosedSeq}
			if sh.Open() {
				last.Outcome = string(ledger.HopOpen)
			}
			last.Error = h.Error
			if u := sh.Usage; u != nil && !sh.Open() {
				last.Tokens, last.CostUSD = u.Tokens(), u.Cost()
			}
			h.Attempts = append(h.Attempts, last)
		}
	}
	for _, sh := range st.OpenHops() {
		id := sh.ID
		if h := views[sh]; h != nil { // every hop of the state has its view
			id = h.HopID
		}
		r.OpenHops = append(r.OpenHops, id)
		r.ReservedTokens += sh.Estimate.Tokens()
		r.ReservedCostUSD += sh.Estimate.Cost()
	}
	r.CostByAgent = make(map[string]AgentCost, len(costs))
	for _, c := range costs {
		r.CostByAgent[c.Agent] = *c
	}
	return r, nil
}

// spend adds what an attempt of a hop reported to its target's cost; hop
// counts the hop (once, when it closes).
func spend(costs map[string]*AgentCost, agent string, u *schemas.Usage, hop bool) {
	ac := costs[agent]
	if ac == nil {
		ac = &AgentCost{Agent: agent}
		costs[agent] = ac
	}
	if hop {
		ac.Hops++
	}
	ac.Tokens += u.Tokens()
	ac.CostUSD += u.Cost()
}

// newHop is the tree's hop of a decision; sh is the state's hop it
// recorded, nil for a denial that records none.
func newHop(ev *schemas.Event, d *schemas.HopDecision, sh *ledger.Hop) *Hop {
	h := &Hop{HopID: ev.HopID, ParentID: d.ParentHopID, From: d.From, FromType: d.FromType, To: d.To, ToType: d.ToType,
		Action: d.Action, Depth: d.Depth, Reason: d.Reason, Message: d.Message, PolicyIDs: d.PolicyIDs, Audit: d.Audit,
		Cycle: d.Cycle, Breach: d.Breach, Seq: ev.Seq, At: ev.At, TraceID: d.TraceID, SpanID: d.SpanID,
		ParentSpanID: d.ParentSpanID, invoke: d.Envelope, Status: statusDenied,
		Guardrail: d.Guardrail, Tainted: d.Tainted, TaintSources: d.TaintSources}
	if sh != nil {
		h.Status = string(sh.Status)
	}
	switch ev.Type {
	case schemas.EventHopAllowed:
		h.Decision = DecisionAllowed
		if len(d.Audit) > 0 {
			h.Decision = DecisionAllowedAudit
		}
	case schemas.EventHopPending:
		h.Decision = DecisionHeld
		if a := d.Approval; a != nil {
			h.Approval = &Approval{Approvers: a.Approvers, PolicyIDs: a.PolicyIDs, Deadline: a.Deadline, Outcome: "pending"}
		}
	default:
		h.Decision = DecisionDenied
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
