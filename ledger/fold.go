package ledger

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// HopStatus is where a hop stands.
type HopStatus string

// Hop statuses: open, denied, timed_out, or the terminal A2A state a reply,
// cancel or halt closed it with.
const (
	HopOpen     HopStatus = "open"
	HopDenied   HopStatus = "denied"
	HopTimedOut HopStatus = "timed_out"
)

// Hop is one hop of a run as the ledger tells it.
type Hop struct {
	ID, ParentID, From, To string
	Action                 schemas.Action
	Depth                  int
	// Ancestry lists the ids on the path to the caller, root caller first.
	Ancestry []string
	Status   HopStatus
	// Reason is the denial reason of a denied hop.
	Reason    schemas.Reason
	PolicyIDs []string
	Deadline  time.Time
	OpenedAt  time.Time
	ClosedAt  time.Time
	Usage     *schemas.Usage
	Estimate  *schemas.Usage
	// Seq is the ledger seq of the hop's decision.
	Seq uint64
	// CloseStreamSeq is the stream sequence of the event that closed the
	// hop (hop.completed, hop.timed_out or run.halted).
	CloseStreamSeq uint64
	// Digest names the invoke that opened the hop.
	Digest                        string
	TraceID, SpanID, ParentSpanID string
}

// Open reports whether the hop was allowed and is not closed yet.
func (h *Hop) Open() bool { return h.Status == HopOpen }

// Spend is what a run has used.
type Spend struct {
	Tokens  int64
	CostUSD float64
}

func (s *Spend) add(u *schemas.Usage, sign int) {
	if u == nil {
		return
	}
	s.Tokens += int64(sign) * u.Tokens()
	s.CostUSD += float64(sign) * u.Cost()
}

// State is a run folded from its ledger: everything the enforcer decides
// on. It is not safe for concurrent use; the enforcer gives each run to one
// goroutine.
type State struct {
	RunID      string
	Head       Head
	Started    bool
	RootHopID  string
	Caller     string
	CallerType schemas.PrincipalType
	OnBehalfOf string
	Workflow   string
	Limits     *schemas.RunLimits
	TraceID    string
	StartedAt  time.Time
	LastAt     time.Time

	Hops map[string]*Hop
	// Allowed counts allowed hops, Denied denied submissions.
	Allowed, Denied int
	// Spent is the usage replies reported; Reserved the estimates of open
	// hops that have not replied yet.
	Spent, Reserved Spend
	// Open holds the ids of open hops.
	Open map[string]struct{}
	// Edges counts allowed hops per caller->target edge.
	Edges map[Edge]int

	Breaches []schemas.RunLimitBreached
	// Unrecorded is a breach a denial tripped that no run.limit_breached
	// has followed yet: the enforcer records it (and halts) next.
	Unrecorded *BreachFact
	Halted     bool
	HaltedBy   string
	// HaltedStreamSeq is the stream sequence of run.halted.
	HaltedStreamSeq uint64
	Completed       bool
	Status          schemas.TaskState

	// submissions maps the digest of every decided submission to the stream
	// sequence of the event that decided it, so a redelivered submission is
	// recognised and not decided twice.
	submissions map[string]uint64
}

// BreachFact is a breach as a denial recorded it.
type BreachFact struct {
	schemas.Breach
	Reason   schemas.Reason
	From, To string
	HopID    string
}

// Breached reports whether a breach of limit is recorded in the run.
func (s *State) Breached(limit string) bool {
	for _, b := range s.Breaches {
		if b.Limit == limit {
			return true
		}
	}
	return false
}

// Edge is a caller->target pair.
type Edge struct{ From, To string }

// NewState returns the state of a run with no events.
func NewState(run string) *State {
	return &State{
		RunID:       run,
		Head:        Head{Hash: schemas.GenesisHash},
		Hops:        make(map[string]*Hop),
		Open:        make(map[string]struct{}),
		Edges:       make(map[Edge]int),
		submissions: make(map[string]uint64),
	}
}

// Fold builds a run's state from its records, in order.
func Fold(run string, recs []Record) (*State, error) {
	st := NewState(run)
	for _, r := range recs {
		if err := st.Apply(r); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Decided returns the stream sequence of the event that decided the
// submission with this digest, if any.
func (s *State) Decided(digest string) (uint64, bool) {
	seq, ok := s.submissions[digest]
	return seq, ok
}

// Closed reports whether the run takes no more hops: completed or halted.
func (s *State) Closed() bool { return s.Completed || s.Halted }

// Total is spent plus reserved: what the budget is checked against.
func (s *State) Total() Spend {
	return Spend{Tokens: s.Spent.Tokens + s.Reserved.Tokens, CostUSD: s.Spent.CostUSD + s.Reserved.CostUSD}
}

// OpenHops returns the open hops ordered by ledger seq.
func (s *State) OpenHops() []*Hop {
	out := make([]*Hop, 0, len(s.Open))
	for id := range s.Open {
		out = append(out, s.Hops[id])
	}
	slices.SortFunc(out, func(a, b *Hop) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// Apply folds one record into the state. The record must follow the head;
// Apply does not check hashes (Verify does).
func (s *State) Apply(r Record) error {
	ev := &r.Event
	if ev.Seq != s.Head.Seq+1 {
		return fmt.Errorf("run %s: event seq %d does not follow %d", s.RunID, ev.Seq, s.Head.Seq)
	}
	data, err := ev.DecodeData()
	if err != nil {
		return fmt.Errorf("run %s seq %d: %w", s.RunID, ev.Seq, err)
	}
	switch d := data.(type) {
	case *schemas.RunStarted:
		s.Started = true
		s.RootHopID, s.Caller, s.CallerType = d.RootHopID, d.Caller, d.CallerType
		s.OnBehalfOf, s.Workflow, s.Limits, s.TraceID = d.OnBehalfOf, d.Workflow, d.Limits, d.TraceID
		s.StartedAt = ev.At
	case *schemas.HopDecision:
		s.applyDecision(ev, d, r.StreamSeq)
	case *schemas.HopCompleted:
		if h := s.Hops[ev.HopID]; h != nil {
			h.Status, h.ClosedAt, h.Usage, h.CloseStreamSeq = HopStatus(d.Status), ev.At, d.Usage, r.StreamSeq
			s.close(h)
			s.Spent.add(d.Usage, 1)
		}
		if d.Digest != "" {
			s.submissions[d.Digest] = r.StreamSeq
		}
	case *schemas.HopTimedOut:
		if h := s.Hops[ev.HopID]; h != nil {
			h.Status, h.ClosedAt, h.CloseStreamSeq = HopTimedOut, ev.At, r.StreamSeq
			s.close(h)
		}
	case *schemas.RunLimitBreached:
		s.Breaches = append(s.Breaches, *d)
		s.Unrecorded = nil
	case *schemas.RunHalted:
		s.Halted, s.HaltedBy, s.HaltedStreamSeq = true, d.By, r.StreamSeq
		for _, id := range d.OpenHops {
			if h := s.Hops[id]; h != nil && h.Open() {
				h.Status, h.ClosedAt, h.CloseStreamSeq = HopStatus(schemas.StateCanceled), ev.At, r.StreamSeq
				s.close(h)
			}
		}
	case *schemas.RunCompleted:
		s.Completed, s.Status = true, d.Status
	}
	s.Head = Head{Seq: ev.Seq, Hash: ev.Hash, StreamSeq: r.StreamSeq}
	s.LastAt = ev.At
	return nil
}

func (s *State) applyDecision(ev *schemas.Event, d *schemas.HopDecision, streamSeq uint64) {
	if d.Digest != "" {
		s.submissions[d.Digest] = streamSeq
	}
	if ev.Type == schemas.EventHopDenied {
		s.Denied++
		if d.Breach != nil {
			s.Unrecorded = &BreachFact{Breach: *d.Breach, Reason: d.Reason, From: d.From, To: d.To, HopID: ev.HopID}
		}
		if d.Kind != schemas.KindInvoke || s.Hops[ev.HopID] != nil {
			return // a denied reply or cancel, or a replayed hop id
		}
	}
	h := &Hop{
		ID: ev.HopID, ParentID: d.ParentHopID, From: d.From, To: d.To, Action: d.Action,
		Depth: d.Depth, Ancestry: d.Ancestry, PolicyIDs: d.PolicyIDs, Deadline: d.Deadline,
		OpenedAt: ev.At, Estimate: d.Estimate, Seq: ev.Seq, Digest: d.Digest,
		TraceID: d.TraceID, SpanID: d.SpanID, ParentSpanID: d.ParentSpanID,
	}
	s.Hops[h.ID] = h
	if ev.Type == schemas.EventHopDenied {
		h.Status, h.Reason, h.ClosedAt = HopDenied, d.Reason, ev.At
		return
	}
	h.Status = HopOpen
	s.Allowed++
	s.Open[h.ID] = struct{}{}
	s.Edges[Edge{d.From, d.To}]++
	s.Reserved.add(d.Estimate, 1)
}

func (s *State) close(h *Hop) {
	if _, open := s.Open[h.ID]; !open {
		return
	}
	delete(s.Open, h.ID)
	s.Reserved.add(h.Estimate, -1)
}

// ChildContext returns the depth and ancestry a hop delegated from parent
// gets: one deeper, with the parent's target appended to its ancestry.
func ChildContext(parent *Hop) (depth int, ancestry []string) {
	ancestry = make([]string, 0, len(parent.Ancestry)+1)
	ancestry = append(ancestry, parent.Ancestry...)
	return parent.Depth + 1, append(ancestry, parent.To)
}
