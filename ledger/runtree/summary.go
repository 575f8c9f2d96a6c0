package runtree

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Summary is one run in a listing of runs (tollgate runs list): when it
// started, its status, who started it, its hops, denials and spend, and the
// first limit it tripped. It is a view of ledger.State, as the tree is.
type Summary struct {
	RunID      string    `json:"run_id"`
	Status     string    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	LastAt     time.Time `json:"last_at"`
	Caller     string    `json:"caller,omitempty"`
	OnBehalfOf string    `json:"on_behalf_of,omitempty"`
	Workflow   string    `json:"workflow,omitempty"`
	// RootAgent is the target of the run's first hop: the agent the run
	// was started at.
	RootAgent string `json:"root_agent,omitempty"`
	Events    int    `json:"events"`
	Hops      int    `json:"hops"`
	// Denied counts the denied invokes: the denied attempts the tree shows.
	Denied int `json:"denied"`
	// Cycles counts the invokes, allowed or denied, whose target already
	// was in the hop's ancestry: the run tried to loop.
	Cycles  int     `json:"cycles,omitempty"`
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
	// Agents are every identity that called or was called in the run.
	Agents []string `json:"agents"`
	// Breach is the first limit the run tripped.
	Breach   string `json:"breach,omitempty"`
	HaltedBy string `json:"halted_by,omitempty"`
	// Pending are the hops held for a human's approval, in ledger order.
	Pending  []string `json:"pending_approval,omitempty"`
	TraceID  string   `json:"trace_id,omitempty"`
	HeadHash string   `json:"head_hash"`
	// Rejected marks the entry of a rejected submission that belonged to
	// no run (ledger.RejectedPrefix); Reason is why it was rejected.
	Rejected bool           `json:"rejected_submission,omitempty"`
	Reason   schemas.Reason `json:"reason,omitempty"`

	st *ledger.State
}

// NewSummary starts the summary of a run with no events yet. Its fields
// are up to date after every Add.
func NewSummary(run string) *Summary {
	return &Summary{RunID: run, Rejected: strings.HasPrefix(run, ledger.RejectedPrefix), st: ledger.NewViewState(run), Agents: []string{}}
}

// Add folds the run's next event into the summary. It reads the event as
// recorded; it does not verify it (ledger.Verify does). An event that does
// not decode, or does not follow the events before it, is an error and
// changes nothing.
func (s *Summary) Add(ev *schemas.Event, streamSeq uint64) error {
	data, err := ev.DecodeData()
	if err != nil {
		return err
	}
	c, err := s.st.ApplyDecoded(ev, data, streamSeq)
	if err != nil {
		return err
	}
	s.Events++
	if d, ok := data.(*schemas.HopDecision); ok && (c.Kind != ledger.ChangeDenial || d.Kind == schemas.KindInvoke || d.Kind == "") {
		// A hop, or a denied attempt at one; not a refused reply or cancel.
		if s.Rejected {
			s.StartedAt, s.Caller, s.Reason = ev.At, d.From, d.Reason
		}
		if ev.Type == schemas.EventHopDenied {
			s.Denied++
		}
		if d.Cycle {
			s.Cycles++
		}
		if s.RootAgent == "" && d.ParentHopID == "" && !s.Rejected {
			s.RootAgent = d.To
		}
		for _, id := range []string{d.From, d.To} {
			if i, found := slices.BinarySearch(s.Agents, id); !found && id != "" {
				s.Agents = slices.Insert(s.Agents, i, id)
			}
		}
	}
	s.fill()
	return nil
}

// fill copies what the state decided into the summary.
func (s *Summary) fill() {
	st := s.st
	if !s.Rejected {
		s.StartedAt, s.Caller = st.StartedAt, st.Caller
	}
	s.OnBehalfOf, s.Workflow, s.TraceID = st.OnBehalfOf, st.Workflow, st.TraceID
	s.LastAt, s.HeadHash = st.LastAt, st.Head.Hash
	s.Hops, s.Tokens, s.CostUSD, s.HaltedBy = st.Allowed, st.Spent.Tokens, st.Spent.CostUSD, st.HaltedBy
	if len(st.Breaches) > 0 {
		s.Breach = st.Breaches[0].Limit
	}
	s.Status = st.RunStatus()
	s.Pending = s.Pending[:0]
	for _, h := range st.OpenHops() {
		if h.Pending() {
			s.Pending = append(s.Pending, h.ID)
		}
	}
	if len(s.Pending) == 0 {
		s.Pending = nil
	}
	if s.Rejected {
		s.Status = string(schemas.StateRejected)
	}
}

// Involves reports whether id called or was called in the run, denied
// attempts included.
func (s *Summary) Involves(id string) bool {
	_, found := slices.BinarySearch(s.Agents, id)
	return found
}

// Listing summarizes many runs from their events as the ledger stream
// holds them: runs interleaved, each run's events in order. A run whose
// first event seen is not its first (it started before the listing's
// start) is left out.
type Listing struct {
	runs map[string]*Summary
	skip map[string]bool
	// Unreadable counts the events that could not be read (or, after one
	// that could not, folded) and were skipped.
	Unreadable int
}

// NewListing returns an empty listing.
func NewListing() *Listing {
	return &Listing{runs: map[string]*Summary{}, skip: map[string]bool{}}
}

// Add folds one stored event of run into its summary.
func (l *Listing) Add(run string, raw []byte, streamSeq uint64) {
	if l.skip[run] {
		return
	}
	ev, err := schemas.DecodeEvent(raw)
	if err != nil {
		l.Unreadable++
		return
	}
	s := l.runs[run]
	if s == nil {
		if ev.Seq != 1 {
			l.skip[run] = true // started before the listing's start
			return
		}
		s = NewSummary(run)
		l.runs[run] = s
	}
	if err := s.Add(ev, streamSeq); err != nil {
		l.Unreadable++
	}
}

// Summaries returns the summary of every run listed, in no particular
// order.
func (l *Listing) Summaries() []*Summary {
	out := make([]*Summary, 0, len(l.runs))
	for _, s := range l.runs {
		out = append(out, s)
	}
	return out
}

// Statuses lists every status a Summary can have.
func Statuses() []string {
	return []string{ledger.RunRunning, string(schemas.StateCompleted), string(schemas.StateFailed),
		string(schemas.StateCanceled), string(schemas.StateRejected), ledger.RunHalted}
}

// Selection narrows a listing of runs.
type Selection struct {
	// Agent, when set, keeps the runs in which it called or was called.
	Agent string
	// Statuses, when set, keeps the runs with one of them (see Statuses).
	Statuses []string
	// Rejects keeps the entries of rejected submissions that belonged to
	// no run; they are left out otherwise.
	Rejects bool
}

// Select returns the runs sel keeps, newest first (by start, then by run
// id, descending).
func Select(runs []*Summary, sel Selection) []*Summary {
	var out []*Summary
	for _, r := range runs {
		switch {
		case r.Rejected && !sel.Rejects,
			sel.Agent != "" && !r.Involves(sel.Agent),
			len(sel.Statuses) > 0 && !slices.Contains(sel.Statuses, r.Status):
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Summary) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.RunID, a.RunID)
	})
	return out
}

// List reads the ledger stream once and summarizes every run that started
// since since (all of them when since is zero). The stream's clock (when
// the server stored an event) starts the read, a margin early for clock
// skew; the run's own start time (run.started) decides. It also returns
// how many events could not be read and were skipped.
func List(ctx context.Context, l *ledger.Ledger, since time.Time) ([]*Summary, int, error) {
	var from time.Time
	if !since.IsZero() {
		from = since.Add(-5 * time.Minute)
	}
	listing := NewListing()
	err := l.ScanAll(ctx, from, func(run string, raw []byte, streamSeq uint64) error {
		listing.Add(run, raw, streamSeq)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	var out []*Summary
	for _, s := range listing.Summaries() {
		if !s.StartedAt.Before(since) {
			out = append(out, s)
		}
	}
	return out, listing.Unreadable, nil
}
