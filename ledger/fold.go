package ledger

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"math"
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
	// HopPending is a hop held for a human's approval: admitted, counted
	// and reserved, not delivered. Approved it is open; rejected, denied
	// with reason approval.
	HopPending HopStatus = "pending"
)

// Run statuses: a run is running until it is halted, or until
// run.completed records the terminal A2A state it ended in (completed,
// failed, canceled, rejected). See State.RunStatus.
const (
	RunRunning = "running"
	RunHalted  = "halted"
)

// Hop decisions: what hop.allowed and hop.denied record.
const (
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
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
	CloseStreamSeq                uint64
	TraceID, SpanID, ParentSpanID string
	// Tainted is set when the hop's content may come from an untrusted
	// source, TaintSources says which: recorded when it was decided, and
	// added to when a tainted reply answered one of its delegations.
	Tainted      bool
	TaintSources []string
	// Approvers are the operator groups that may release a hop held for
	// approval; its Deadline is then the approval's. DecisionStreamSeq is
	// where the event that decided the hop is stored, ApprovedStreamSeq
	// where hop.approved released it (0 for a hop never held).
	Approvers                            []string
	DecisionStreamSeq, ApprovedStreamSeq uint64
	// Attempt is the hop's current delivery attempt (0 or 1 for the first;
	// hop.retried raises it) and RetryAt when that attempt is delivered.
	Attempt int
	RetryAt time.Time
	// Rerouted lists the targets the hop was re-routed away from, in order
	// (hop.rerouted): To is where it goes now.
	Rerouted []string
	// Progress counts the progress the hop's target sent and the gateway
	// forwarded (hop.progress).
	Progress int
	// CutByHalt is set when the run's halt closed the hop while it was
	// open (delivered, its target maybe working): its target may still
	// settle what it used (hop.completed with Settles), once; Settled is
	// set when it did, and Usage is then what it reported.
	CutByHalt, Settled bool
}

// CurrentAttempt is the hop's attempt number, 1 for the first.
func (h *Hop) CurrentAttempt() int { return max(h.Attempt, 1) }

// Open reports whether the hop was delivered and is not closed yet.
func (h *Hop) Open() bool { return h.Status == HopOpen }

// Pending reports whether the hop is held for approval.
func (h *Hop) Pending() bool { return h.Status == HopPending }

// Live reports whether the hop is open or held: its caller waits for it.
func (h *Hop) Live() bool { return h.Status == HopOpen || h.Status == HopPending }

// Spend is what a run has used.
type Spend struct {
	Tokens  int64
	CostUSD float64
}

func (s *Spend) add(u *schemas.Usage, sign int) {
	if u == nil {
		return
	}
	// Each usage is bounded (schemas.MaxTokens, MaxCostUSD); the sums
	// saturate instead of wrapping, so no number of hops makes spend
	// negative or lets it dodge a budget.
	s.Tokens = saturatingAdd(s.Tokens, int64(sign)*u.Tokens())
	s.CostUSD += float64(sign) * u.Cost()
}

func saturatingAdd(a, b int64) int64 {
	c := a + b
	switch {
	case b > 0 && c < a:
		return math.MaxInt64
	case b < 0 && c > a:
		return math.MinInt64
	}
	return c
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
	// SpawnedFrom is the hop of another run this run was started from.
	SpawnedFrom *schemas.SpawnRef
	Limits      *schemas.RunLimits
	TraceID     string
	StartedAt   time.Time
	LastAt      time.Time

	Hops map[string]*Hop
	// Allowed counts allowed hops, Denied denied submissions.
	Allowed, Denied int
	// Spent is the usage replies reported; Reserved the estimates of open
	// hops that have not replied yet.
	Spent, Reserved Spend
	// Open holds the ids of live hops: open, or held for approval.
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

	// decided lists, in ledger order, the digest of every decided
	// submission with the stream sequence of the event that decided it, so
	// that a redelivered submission is recognised and not decided twice.
	// Decided moves them into index when it is asked: readers that never
	// ask (the projection, the run tree) build no map. The index is keyed
	// by the digests' bytes: it holds no pointer, so the garbage collector
	// has nothing to scan in it however long the run.
	decided []decidedAt
	index   map[digestKey]uint64
	// ancestry counts the ancestry and policy-id entries the hops hold,
	// for Bytes.
	ancestry int
	// view is set for a state that never answers Decided (NewViewState).
	view bool
}

// decidedAt is a decided submission's digest and the stream sequence of
// the event that decided it.
type decidedAt struct {
	digest    string
	streamSeq uint64
}

// digestKey is a submission digest as a key: the 32 bytes a digest as
// Digest writes it (64 lowercase hex digits) stands for, or the SHA-256 of
// any other string, which no such digest can equal short of a preimage.
type digestKey [sha256.Size]byte

func keyOf(digest string) digestKey {
	var k digestKey
	if len(digest) != 2*len(k) {
		return sha256.Sum256([]byte(digest))
	}
	bad := byte(0)
	for i := range k {
		hi, lo := unhex[digest[2*i]], unhex[digest[2*i+1]]
		bad |= hi | lo
		k[i] = hi<<4 | lo&0x0f
	}
	if bad&0xf0 != 0 {
		return sha256.Sum256([]byte(digest))
	}
	return k
}

// unhex maps a lowercase hex digit to its value, any other byte to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

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
		RunID: run,
		Head:  Head{Hash: schemas.GenesisHash},
		Hops:  make(map[string]*Hop),
		Open:  make(map[string]struct{}),
		Edges: make(map[Edge]int),
	}
}

// NewViewState returns the state of a run with no events, for a reader
// that builds a view of the run (the projection's rows, the run tree, the
// runs listing) and never asks Decided: it does not keep the digests of
// decided submissions, which only the enforcer needs, so Decided always
// reports false. It folds every event as NewState's state does.
func NewViewState(run string) *State {
	s := NewState(run)
	s.view = true
	return s
}

// StartedState returns the state a new run will have once its run.started,
// recorded at at with data d, is applied: what the enforcer decides a new
// run's first hop on before anything is appended. Its Head is still the
// empty run's (the event is not sealed yet), so nothing may be appended on
// it; fold the stored events for that.
func StartedState(run string, at time.Time, d *schemas.RunStarted) *State {
	s := NewState(run)
	s.start(at, d)
	s.LastAt = at
	return s
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
// submission with this digest, if any. A state made with NewViewState
// keeps no digests and reports false.
func (s *State) Decided(digest string) (uint64, bool) {
	if len(s.decided) > 0 {
		if s.index == nil {
			s.index = make(map[digestKey]uint64, len(s.decided))
		}
		for _, d := range s.decided {
			s.index[keyOf(d.digest)] = d.streamSeq
		}
		if cap(s.decided) > 16 {
			s.decided = nil // a run just loaded: do not keep its list twice
		} else {
			clear(s.decided)
			s.decided = s.decided[:0]
		}
	}
	seq, ok := s.index[keyOf(digest)]
	return seq, ok
}

// remember records that the submission with this digest was decided by
// the event at streamSeq.
func (s *State) remember(digest string, streamSeq uint64) {
	if digest == "" || s.view {
		return
	}
	if s.decided == nil {
		s.decided = make([]decidedAt, 0, 16)
	}
	s.decided = append(s.decided, decidedAt{digest, streamSeq})
}

// Closed reports whether the run takes no more hops: completed or halted.
func (s *State) Closed() bool { return s.Completed || s.Halted }

// RunStatus is RunHalted for a halted run, the terminal state run.completed
// recorded for a completed one, and RunRunning until then.
func (s *State) RunStatus() string {
	switch {
	case s.Halted:
		return RunHalted
	case s.Completed:
		return string(s.Status)
	}
	return RunRunning
}

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

// Apply folds one record into the state, decoding its data. The record
// must follow the head; Apply does not check hashes (Verify does).
func (s *State) Apply(r Record) error {
	ev := &r.Event
	if ev.Seq != s.Head.Seq+1 {
		return s.errSeq(ev)
	}
	data, err := ev.DecodeData()
	if err != nil {
		return fmt.Errorf("run %s seq %d: %w", s.RunID, ev.Seq, err)
	}
	_, err = s.ApplyDecoded(ev, data, r.StreamSeq)
	return err
}

func (s *State) errSeq(ev *schemas.Event) error {
	return fmt.Errorf("run %s: event seq %d does not follow %d", s.RunID, ev.Seq, s.Head.Seq)
}

// ApplyDecoded folds one event whose data is already decoded (data is what
// ev.DecodeData returns for it: *schemas.RunStarted for run.started,
// *schemas.HopDecision for hop.allowed and hop.denied, and so on) and
// reports what it changed. The event must follow the head; ApplyDecoded
// does not check hashes (Verify does). streamSeq is where the event is
// stored (0 for a copy).
//
// It is the one place that decides what a run's events mean:
//   - hop.allowed opens a hop (ChangeOpened) and reserves its estimate;
//   - hop.denied of an invoke under a hop id the run has not used records a
//     denied hop (ChangeDeniedHop); any other denial (of a reply or cancel,
//     of a submission that did not decode, or reusing a hop id) is counted
//     but records no hop (ChangeDenial);
//   - hop.pending records a hop held for approval (ChangePending), counted
//     and reserved like an open one; hop.approved opens it
//     (ChangeApproved), hop.rejected closes it as denied with reason
//     approval (ChangeRejected);
//   - hop.completed closes an open hop (ChangeClosed): its usage counts as
//     spent and its estimate is no longer reserved. A hop.completed that
//     settles (Settles) charges the usage of a hop the run's halt closed
//     while it was open, the first time only (ChangeSettled), and closes
//     nothing; any other is ignored. hop.completed and
//     hop.timed_out for a hop that is not open change nothing
//     (ChangeIgnored), nor do hop.approved and hop.rejected for a hop
//     that is not held;
//   - hop.retried starts another attempt of an open hop (ChangeRetried):
//     its deadline moves, and the attempt counts as a hop and an edge use;
//   - hop.rerouted sends an open hop to a fallback target
//     (ChangeRerouted), counted the same;
//   - hop.progress counts a progress of an open hop (ChangeProgress); it
//     closes nothing;
//   - run.halted cancels the open and held hops it lists (ChangeHalted).
//
// An event whose data does not fit its type is an error wrapping
// schemas.ErrMalformed; the state is then unchanged.
func (s *State) ApplyDecoded(ev *schemas.Event, data any, streamSeq uint64) (Change, error) {
	if ev.Seq != s.Head.Seq+1 {
		return Change{}, s.errSeq(ev)
	}
	if !dataFits(ev.Type, data) {
		return Change{}, fmt.Errorf("run %s seq %d: %w: %s event with %T data", s.RunID, ev.Seq, schemas.ErrMalformed, ev.Type, data)
	}
	var c Change
	switch d := data.(type) {
	case *schemas.RunStarted:
		s.start(ev.At, d)
		c.Kind = ChangeStarted
	case *schemas.HopDecision:
		c = s.applyDecision(ev, d, streamSeq)
	case *schemas.HopCompleted:
		s.remember(d.Digest, streamSeq)
		if h := s.Hops[ev.HopID]; d.Settles {
			if h != nil && h.CutByHalt && !h.Settled {
				h.Usage, h.Settled = d.Usage, true
				s.Spent.add(d.Usage, 1)
				c = Change{Kind: ChangeSettled, Hop: h}
			}
		} else if h != nil && h.Open() {
			h.Status, h.ClosedAt, h.Usage, h.CloseStreamSeq = HopStatus(d.Status), ev.At, d.Usage, streamSeq
			s.close(h)
			s.Spent.add(d.Usage, 1)
			c = Change{Kind: ChangeClosed, Hop: h}
			// A tainted reply taints the task of the caller it answers:
			// what the caller does next may carry what it was told.
			if p := s.Hops[h.ParentID]; d.Tainted && p != nil {
				s.taint(p, d.TaintSources)
			}
		}
	case *schemas.HopTimedOut:
		if h := s.Hops[ev.HopID]; h != nil && h.Open() {
			h.Status, h.ClosedAt, h.CloseStreamSeq = HopTimedOut, ev.At, streamSeq
			s.close(h)
			c = Change{Kind: ChangeTimedOut, Hop: h}
		}
	case *schemas.HopRetried:
		s.remember(d.Digest, streamSeq)
		if h := s.Hops[ev.HopID]; h != nil && h.Open() {
			h.Attempt, h.RetryAt, h.Deadline = d.Attempt, d.RetryAt, d.Deadline
			s.Spent.add(d.Usage, 1)
			// Each attempt counts as a hop and a use of its edge.
			s.Allowed++
			s.Edges[Edge{h.From, h.To}]++
			c = Change{Kind: ChangeRetried, Hop: h}
		}
	case *schemas.HopRerouted:
		if h := s.Hops[ev.HopID]; h != nil && h.Open() && h.To == d.From {
			h.Rerouted = append(h.Rerouted, h.To)
			h.To, h.Deadline, h.Attempt, h.RetryAt = d.To, d.Deadline, 1, time.Time{}
			s.Allowed++
			s.Edges[Edge{h.From, h.To}]++
			c = Change{Kind: ChangeRerouted, Hop: h}
		}
	case *schemas.HopProgress:
		s.remember(d.Digest, streamSeq)
		if h := s.Hops[ev.HopID]; h != nil && h.Open() && d.N == h.Progress+1 {
			h.Progress = d.N
			c = Change{Kind: ChangeProgress, Hop: h}
		}
	case *schemas.RunLimitBreached:
		s.Breaches = append(s.Breaches, *d)
		s.Unrecorded = nil
		c.Kind = ChangeBreach
	case *schemas.HopApproved:
		if h := s.Hops[ev.HopID]; h != nil && h.Pending() {
			h.Status, h.Deadline, h.ApprovedStreamSeq = HopOpen, d.Deadline, streamSeq
			c = Change{Kind: ChangeApproved, Hop: h}
		}
	case *schemas.HopRejected:
		if h := s.Hops[ev.HopID]; h != nil && h.Pending() {
			h.Status, h.Reason, h.ClosedAt, h.CloseStreamSeq = HopDenied, schemas.ReasonApproval, ev.At, streamSeq
			s.close(h)
			c = Change{Kind: ChangeRejected, Hop: h}
		}
	case *schemas.RunHalted:
		s.Halted, s.HaltedBy, s.HaltedStreamSeq = true, d.By, streamSeq
		c.Kind = ChangeHalted
		for _, id := range d.OpenHops {
			if h := s.Hops[id]; h != nil && h.Live() {
				h.CutByHalt = h.Open()
				h.Status, h.ClosedAt, h.CloseStreamSeq = HopStatus(schemas.StateCanceled), ev.At, streamSeq
				s.close(h)
				c.Cancelled = append(c.Cancelled, h)
			}
		}
	case *schemas.RunCompleted:
		s.Completed, s.Status = true, d.Status
		c.Kind = ChangeCompleted
	}
	s.Head = Head{Seq: ev.Seq, Hash: ev.Hash, StreamSeq: streamSeq}
	s.LastAt = ev.At
	return c, nil
}

// dataFits reports whether data is a non-nil value of the type events of
// type t carry.
func dataFits(t schemas.EventType, data any) bool {
	switch d := data.(type) {
	case *schemas.RunStarted:
		return d != nil && t == schemas.EventRunStarted
	case *schemas.HopDecision:
		return d != nil && (t == schemas.EventHopAllowed || t == schemas.EventHopDenied || t == schemas.EventHopPending && d.Approval != nil)
	case *schemas.HopApproved:
		return d != nil && t == schemas.EventHopApproved
	case *schemas.HopRejected:
		return d != nil && t == schemas.EventHopRejected
	case *schemas.HopCompleted:
		return d != nil && t == schemas.EventHopCompleted
	case *schemas.HopTimedOut:
		return d != nil && t == schemas.EventHopTimedOut
	case *schemas.HopRetried:
		return d != nil && t == schemas.EventHopRetried
	case *schemas.HopRerouted:
		return d != nil && t == schemas.EventHopRerouted
	case *schemas.HopProgress:
		return d != nil && t == schemas.EventHopProgress
	case *schemas.RunLimitBreached:
		return d != nil && t == schemas.EventRunLimitBreached
	case *schemas.RunHalted:
		return d != nil && t == schemas.EventRunHalted
	case *schemas.RunCompleted:
		return d != nil && t == schemas.EventRunCompleted
	}
	return false
}

func (s *State) start(at time.Time, d *schemas.RunStarted) {
	s.Started = true
	s.RootHopID, s.Caller, s.CallerType = d.RootHopID, d.Caller, d.CallerType
	s.OnBehalfOf, s.Workflow, s.Limits, s.TraceID = d.OnBehalfOf, d.Workflow, d.Limits, d.TraceID
	s.SpawnedFrom, s.StartedAt = d.SpawnedFrom, at
}

func (s *State) applyDecision(ev *schemas.Event, d *schemas.HopDecision, streamSeq uint64) Change {
	s.remember(d.Digest, streamSeq)
	denied := ev.Type == schemas.EventHopDenied
	if denied {
		s.Denied++
		if d.Breach != nil {
			s.Unrecorded = &BreachFact{Breach: *d.Breach, Reason: d.Reason, From: d.From, To: d.To, HopID: ev.HopID}
		}
		if d.Kind != schemas.KindInvoke || s.Hops[ev.HopID] != nil {
			return Change{Kind: ChangeDenial} // a denied reply or cancel, or a replayed hop id
		}
	}
	h := &Hop{
		ID: ev.HopID, ParentID: d.ParentHopID, From: d.From, To: d.To, Action: d.Action,
		Depth: d.Depth, Ancestry: d.Ancestry, PolicyIDs: d.PolicyIDs, Deadline: d.Deadline,
		OpenedAt: ev.At, Estimate: d.Estimate, Seq: ev.Seq, DecisionStreamSeq: streamSeq,
		TraceID: d.TraceID, SpanID: d.SpanID, ParentSpanID: d.ParentSpanID,
	}
	s.Hops[h.ID] = h
	if d.Tainted {
		s.taint(h, d.TaintSources)
	}
	s.ancestry += len(h.Ancestry) + len(h.PolicyIDs)
	if denied {
		h.Status, h.Reason, h.ClosedAt = HopDenied, d.Reason, ev.At
		return Change{Kind: ChangeDeniedHop, Hop: h}
	}
	h.Status = HopOpen
	s.Allowed++
	s.Open[h.ID] = struct{}{}
	s.Edges[Edge{d.From, d.To}]++
	s.Reserved.add(d.Estimate, 1)
	if a := d.Approval; ev.Type == schemas.EventHopPending {
		h.Status, h.Approvers, h.Deadline = HopPending, a.Approvers, a.Deadline
		s.ancestry += len(a.Approvers)
		return Change{Kind: ChangePending, Hop: h}
	}
	return Change{Kind: ChangeOpened, Hop: h}
}

// taint marks a hop as carrying content from untrusted sources.
func (s *State) taint(h *Hop, sources []string) {
	h.Tainted = true
	for _, src := range sources {
		if !slices.Contains(h.TaintSources, src) {
			h.TaintSources = append(h.TaintSources, src)
			s.ancestry++
		}
	}
}

func (s *State) close(h *Hop) {
	if _, open := s.Open[h.ID]; !open {
		return
	}
	delete(s.Open, h.ID)
	s.Reserved.add(h.Estimate, -1)
}

// Approximate sizes, in bytes, of what a State holds: a hop with its ids,
// times and map entry; one entry of an ancestry or of policy ids; a
// decided submission (its 64-character digest, and its index entry); an
// edge; an open hop; a breach; the rest of the state.
const (
	hopBytes     = 560
	entryBytes   = 16
	decidedBytes = 96
	indexBytes   = 64
	edgeBytes    = 80
	openBytes    = 48
	breachBytes  = 200
	stateBytes   = 1200
)

// Bytes estimates the memory the state holds, so that a cache of states
// can be bounded by bytes rather than by count. It costs nothing to call:
// it counts, it does not walk.
func (s *State) Bytes() int {
	return stateBytes + len(s.Hops)*hopBytes + s.ancestry*entryBytes + len(s.decided)*decidedBytes +
		len(s.index)*indexBytes + len(s.Edges)*edgeBytes + len(s.Open)*openBytes + len(s.Breaches)*breachBytes
}

// ChildContext returns the depth and ancestry a hop delegated from parent
// gets: one deeper, with the parent's target appended to its ancestry.
func ChildContext(parent *Hop) (depth int, ancestry []string) {
	ancestry = make([]string, 0, len(parent.Ancestry)+1)
	ancestry = append(ancestry, parent.Ancestry...)
	return parent.Depth + 1, append(ancestry, parent.To)
}
