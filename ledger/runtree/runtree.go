// Package runtree turns a run's ledger into what people read: a tree of
// hops in time order, each with its caller, target, depth, decision and
// reason, status, latency and spend, plus the spend per agent. The demo,
// replay and reports render it as text or JSON.
package runtree

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Run is a run as a tree.
type Run struct {
	RunID      string                     `json:"run_id"`
	Caller     string                     `json:"caller,omitempty"`
	OnBehalfOf string                     `json:"on_behalf_of,omitempty"`
	Workflow   string                     `json:"workflow,omitempty"`
	Status     string                     `json:"status"`
	Halted     bool                       `json:"halted"`
	StartedAt  time.Time                  `json:"started_at,omitzero"`
	Events     int                        `json:"events"`
	Hops       []*Hop                     `json:"hops"`
	Roots      []*Hop                     `json:"-"`
	Breaches   []schemas.RunLimitBreached `json:"breaches,omitempty"`
	// CostByAgent is the spend each agent reported in its replies.
	CostByAgent map[string]AgentCost `json:"cost_by_agent"`
	Tokens      int64                `json:"tokens"`
	CostUSD     float64              `json:"cost_usd"`
	// HeadHash is the hash of the run's last event.
	HeadHash string `json:"head_hash"`
}

// Hop is one hop (or denied attempt) of the run.
type Hop struct {
	HopID     string         `json:"hop_id"`
	ParentID  string         `json:"parent_hop_id,omitempty"`
	From      string         `json:"from"`
	To        string         `json:"to"`
	Action    schemas.Action `json:"action,omitempty"`
	Depth     int            `json:"depth"`
	Decision  string         `json:"decision"`
	Reason    schemas.Reason `json:"reason,omitempty"`
	Message   string         `json:"message,omitempty"`
	PolicyIDs []string       `json:"policy_ids,omitempty"`
	Cycle     bool           `json:"cycle,omitempty"`
	Status    string         `json:"status"`
	LatencyMS int64          `json:"latency_ms,omitempty"`
	Tokens    int64          `json:"tokens"`
	CostUSD   float64        `json:"cost_usd"`
	Seq       uint64         `json:"seq"`
	At        time.Time      `json:"at"`
	Children  []*Hop         `json:"-"`
}

// AgentCost is what one agent reported spending.
type AgentCost struct {
	Agent   string  `json:"-"`
	Hops    int     `json:"hops"`
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
}

// Build folds a run's records into its tree.
func Build(run string, recs []ledger.Record) (*Run, error) {
	st, err := ledger.Fold(run, recs)
	if err != nil {
		return nil, err
	}
	r := &Run{RunID: run, Caller: st.Caller, OnBehalfOf: st.OnBehalfOf, Workflow: st.Workflow, StartedAt: st.StartedAt,
		Events: len(recs), Halted: st.Halted, Breaches: st.Breaches, Tokens: st.Spent.Tokens, CostUSD: st.Spent.CostUSD,
		HeadHash: st.Head.Hash}
	switch {
	case st.Halted:
		r.Status = "halted"
	case st.Completed:
		r.Status = string(st.Status)
	default:
		r.Status = "running"
	}
	byID := map[string]*Hop{}
	costs := map[string]*AgentCost{}
	for _, rec := range recs {
		ev := rec.Event
		data, err := ev.DecodeData()
		if err != nil {
			return nil, err
		}
		switch d := data.(type) {
		case *schemas.HopDecision:
			if ev.Type == schemas.EventHopDenied && d.Kind != schemas.KindInvoke && d.Kind != "" {
				continue // a refused reply or cancel: not a hop of its own
			}
			h := &Hop{HopID: ev.HopID, ParentID: d.ParentHopID, From: d.From, To: d.To, Action: d.Action, Depth: d.Depth,
				Reason: d.Reason, Message: d.Message, PolicyIDs: d.PolicyIDs, Cycle: d.Cycle, Seq: ev.Seq, At: ev.At}
			if ev.Type == schemas.EventHopAllowed {
				h.Decision, h.Status = "allowed", "open"
				if len(d.Audit) > 0 {
					h.Decision = "allowed (audit: would deny)"
				}
			} else {
				h.Decision, h.Status = "denied", "denied"
			}
			if h.HopID == "" || byID[h.HopID] != nil {
				h.HopID = fmt.Sprintf("%s#%d", h.HopID, ev.Seq) // a replayed or unreadable id
			}
			byID[h.HopID] = h
			r.Hops = append(r.Hops, h)
		case *schemas.HopCompleted:
			if h := byID[ev.HopID]; h != nil && h.Status == "open" {
				h.Status, h.LatencyMS = string(d.Status), d.LatencyMS
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
			}
		case *schemas.HopTimedOut:
			if h := byID[ev.HopID]; h != nil {
				h.Status, h.LatencyMS = "timed_out", d.LatencyMS
			}
		case *schemas.RunHalted:
			for _, id := range d.OpenHops {
				if h := byID[id]; h != nil && h.Status == "open" {
					h.Status = "canceled"
				}
			}
		}
	}
	for _, h := range r.Hops {
		if p := byID[h.ParentID]; p != nil && h.ParentID != "" {
			p.Children = append(p.Children, h)
		} else {
			r.Roots = append(r.Roots, h)
		}
	}
	r.CostByAgent = make(map[string]AgentCost, len(costs))
	for _, c := range costs {
		r.CostByAgent[c.Agent] = *c
	}
	return r, nil
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
