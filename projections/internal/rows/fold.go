package rows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// ErrData marks an event that cannot be projected however often it is
// retried: it does not decode, or it does not follow its run's earlier
// events in the ledger.
var ErrData = errors.New("ledger event cannot be projected")

// Loader calls fn with every event of a run in order, as ledger.Ledger.Scan
// does, and stops at the first error fn returns.
type Loader func(ctx context.Context, run string, fn func(ledger.Record) error) error

// Folder keeps the folded state of recently seen runs (a bounded LRU) so
// that a hop.completed row can carry the caller, target, teams, depth,
// workflow and principal its decision recorded. It is not safe for
// concurrent use.
type Folder struct {
	load  Loader
	runs  *simplelru.LRU[string, *runFold]
	loads uint64
}

// NewFolder returns a folder that remembers up to maxRuns runs and loads
// the others through load.
func NewFolder(load Loader, maxRuns int) (*Folder, error) {
	runs, err := simplelru.NewLRU[string, *runFold](maxRuns, nil)
	if err != nil {
		return nil, fmt.Errorf("run cache: %w", err)
	}
	return &Folder{load: load, runs: runs}, nil
}

// Loads returns how many times a run had to be read from the ledger
// because its earlier events were not in memory.
func (f *Folder) Loads() uint64 { return f.loads }

// Project folds an event into its run and adds the rows it yields to b.
// The rows depend only on the event and the run's events before it: when
// the folder does not hold exactly those (a first sight after a restart,
// an evicted run, a redelivered event), it reads them from the ledger
// first.
//
// An error wrapping ErrData means the event can never be projected; any
// other error (reading the ledger) is worth retrying.
func (f *Folder) Project(ctx context.Context, d Decoded, b *Batch) error {
	ev := &d.Event
	if ev.Seq == 0 || ev.RunID == "" {
		return fmt.Errorf("%w: event at stream seq %d has no run or seq", ErrData, d.StreamSeq)
	}
	rf, err := f.before(ctx, ev.RunID, ev.Seq)
	if err != nil {
		return err
	}
	if err := rf.step(d, b); err != nil {
		f.runs.Remove(ev.RunID)
		return err
	}
	return nil
}

// errStop ends a ledger scan once the wanted prefix is folded.
var errStop = errors.New("stop")

// before returns the run folded as far as seq-1.
func (f *Folder) before(ctx context.Context, run string, seq uint64) (*runFold, error) {
	if rf, ok := f.runs.Get(run); ok && rf.head == seq-1 {
		return rf, nil
	}
	f.runs.Remove(run)
	rf := newRunFold(run)
	if seq > 1 {
		f.loads++
		err := f.load(ctx, run, func(r ledger.Record) error {
			if r.Event.Seq >= seq {
				return errStop
			}
			data, err := decodeData(&r.Event)
			if err != nil {
				return err
			}
			return rf.step(Decoded{Record: r, Data: data}, nil)
		})
		switch {
		case errors.Is(err, errStop) || err == nil:
		case errors.Is(err, ErrData) || errors.Is(err, schemas.ErrMalformed) ||
			errors.Is(err, schemas.ErrVersion) || errors.Is(err, ledger.ErrNoRun):
			return nil, fmt.Errorf("%w: run %s before seq %d: %w", ErrData, run, seq, err)
		default:
			return nil, fmt.Errorf("load run %s before seq %d: %w", run, seq, err)
		}
		if rf.head != seq-1 {
			return nil, fmt.Errorf("%w: run %s has %d events before seq %d in the ledger", ErrData, run, rf.head, seq)
		}
	}
	f.runs.Add(run, rf)
	return rf, nil
}

// runFold is what the rows need to know of a run's events so far. It
// follows the rules of ledger.State (which hop ids a decision opens, what
// closes a hop, what spend counts), tested against it, but keeps only
// what the rows use and takes events already decoded.
type runFold struct {
	run  string
	head uint64 // seq of the last event folded

	started                                         bool
	caller, callerType, principal, workflow, rootID string
	startedAt                                       time.Time
	limits                                          *schemas.RunLimits

	// hops holds the current row of every hop the run tracks by hop id: an
	// allowed hop, or a denied invoke under a fresh id.
	hops            map[string]*Hop
	open            map[string]struct{}
	allowed, denied int
	breaches        int
	tokens          int64
	cost            float64

	halted                        bool
	haltedBy, haltReason, haltLim string
	completed                     bool
	status                        string
	endedAt                       time.Time
	durationMS                    int64
}

func newRunFold(run string) *runFold {
	return &runFold{run: run, hops: map[string]*Hop{}, open: map[string]struct{}{}}
}

// step folds one event and, when b is not nil, adds its rows to b.
func (rf *runFold) step(d Decoded, b *Batch) error {
	ev := &d.Event
	if ev.Seq != rf.head+1 {
		return fmt.Errorf("%w: run %s: event seq %d does not follow %d", ErrData, ev.RunID, ev.Seq, rf.head)
	}
	var hops []*Hop
	switch data := d.Data.(type) {
	case *schemas.RunStarted:
		rf.started, rf.caller, rf.callerType, rf.principal = true, data.Caller, string(data.CallerType), data.OnBehalfOf
		rf.workflow, rf.rootID, rf.startedAt, rf.limits = data.Workflow, data.RootHopID, ev.At, data.Limits
	case *schemas.HopDecision:
		hops = append(hops, rf.decision(ev, data))
	case *schemas.HopCompleted:
		hops = rf.close(hops, ev, ev.HopID, func(h *Hop) {
			h.Status, h.ClosedBy, h.Error, h.LatencyMS = string(data.Status), data.By, data.Error, data.LatencyMS
			if u := data.Usage; u != nil {
				h.InputTokens, h.OutputTokens, h.CostUSD = u.InputTokens, u.OutputTokens, u.CostUSD
			}
		})
		if u := data.Usage; u != nil && rf.hops[ev.HopID] != nil {
			rf.tokens, rf.cost = rf.tokens+u.Tokens(), rf.cost+u.Cost()
		}
	case *schemas.HopTimedOut:
		hops = rf.close(hops, ev, ev.HopID, func(h *Hop) {
			h.Status, h.ClosedBy, h.LatencyMS = string(ledger.HopTimedOut), "gateway", data.LatencyMS
		})
	case *schemas.RunLimitBreached:
		rf.breaches++
		if b != nil {
			b.Breaches = append(b.Breaches, Breach{
				RunID: ev.RunID, Seq: ev.Seq, At: ev.At, Limit: data.Limit, Value: data.Value, Bound: data.Bound,
				Reason: string(data.Reason), Caller: data.From, Target: data.To, Action: data.Action, HopID: data.HopID,
				Workflow: rf.workflow, Principal: rf.principal,
			})
		}
	case *schemas.RunHalted:
		rf.halted, rf.haltedBy, rf.haltReason, rf.haltLim, rf.endedAt = true, data.By, data.Reason, data.Limit, ev.At
		// A halt cancels the run's open hops.
		for _, id := range data.OpenHops {
			if h := rf.hops[id]; h != nil && h.Status == string(ledger.HopOpen) {
				hops = rf.close(hops, ev, id, func(h *Hop) {
					h.Status, h.ClosedBy = string(schemas.StateCanceled), "gateway"
					h.LatencyMS = ev.At.Sub(h.OpenedAt).Milliseconds()
				})
			}
		}
	case *schemas.RunCompleted:
		rf.completed, rf.status, rf.endedAt, rf.durationMS = true, string(data.Status), ev.At, data.DurationMS
	default:
		return fmt.Errorf("%w: run %s seq %d: no data for %s", ErrData, ev.RunID, ev.Seq, ev.Type)
	}
	rf.head = ev.Seq
	if b == nil {
		return nil
	}
	b.Events = append(b.Events, Event{
		RunID: ev.RunID, Seq: ev.Seq, StreamSeq: d.StreamSeq, Type: string(ev.Type), At: ev.At, HopID: ev.HopID,
		Rejected: !rf.started, Data: d.Stored, PrevHash: ev.PrevHash, Hash: ev.Hash,
	})
	for _, h := range hops {
		b.putHop(h)
	}
	if rf.started {
		b.putRun(rf.row())
	}
	return nil
}

// decision builds the row of a hop.allowed or hop.denied and tracks it
// when it opens a hop (an allowed hop, or a denied invoke under a fresh
// hop id), so that its closing event can update it.
func (rf *runFold) decision(ev *schemas.Event, d *schemas.HopDecision) *Hop {
	h := &Hop{
		RunID: ev.RunID, HopSeq: ev.Seq, HopID: ev.HopID, ParentHopID: d.ParentHopID, Kind: string(d.Kind),
		Caller: d.From, CallerTeam: d.FromTeam, Target: d.To, TargetTeam: d.ToTeam, Action: string(d.Action),
		Depth: uint32(max(d.Depth, 0)), Ancestry: d.Ancestry, Cycle: d.Cycle, Reason: string(d.Reason), Message: d.Message,
		PolicyIDs: d.PolicyIDs, OpenedAt: ev.At, Workflow: rf.workflow, Principal: d.OnBehalfOf,
		Rejected: !rf.started, Version: ev.Seq,
	}
	if h.Principal == "" {
		h.Principal = rf.principal
	}
	if ev.Type == schemas.EventHopDenied {
		rf.denied++
		h.Decision, h.Status, h.ClosedAt, h.ClosedBy = "denied", string(ledger.HopDenied), ev.At, "gateway"
		if d.Kind == schemas.KindInvoke && rf.hops[ev.HopID] == nil {
			rf.hops[ev.HopID] = h
		}
		return h
	}
	rf.allowed++
	h.Decision, h.Status = "allowed", string(ledger.HopOpen)
	rf.hops[ev.HopID] = h
	rf.open[ev.HopID] = struct{}{}
	return h
}

// close appends to out a new version of the row of hop id, closed by ev and
// changed by set. A hop the run does not track yields nothing.
func (rf *runFold) close(out []*Hop, ev *schemas.Event, id string, set func(*Hop)) []*Hop {
	prev := rf.hops[id]
	if prev == nil {
		return out
	}
	h := *prev
	h.ClosedAt, h.Version = ev.At, ev.Seq
	set(&h)
	rf.hops[id] = &h
	delete(rf.open, id)
	return append(out, &h)
}

// row returns the run's row as of its last folded event.
func (rf *runFold) row() *Run {
	r := &Run{
		RunID: rf.run, Caller: rf.caller, CallerType: rf.callerType, Principal: rf.principal, Workflow: rf.workflow,
		RootHopID: rf.rootID, StartedAt: rf.startedAt, EndedAt: rf.endedAt, Halted: rf.halted, HaltedBy: rf.haltedBy,
		HaltReason: rf.haltReason, HaltLimit: rf.haltLim, Events: rf.head, Hops: uint32(rf.allowed),
		Denials: uint32(rf.denied), Breaches: uint32(rf.breaches), OpenHops: uint32(len(rf.open)),
		Tokens: rf.tokens, CostUSD: rf.cost, DurationMS: rf.durationMS, Version: rf.head,
	}
	if l := rf.limits; l != nil {
		r.DepthLimit, r.EdgeRepeatLimit = uint32(max(l.MaxDelegationDepth, 0)), uint32(max(l.MaxEdgeRepeats, 0))
	}
	switch {
	case rf.halted:
		r.Status = "halted"
	case rf.completed:
		r.Status = rf.status
	default:
		r.Status = "running"
	}
	if r.DurationMS == 0 && !r.EndedAt.IsZero() && !r.StartedAt.IsZero() {
		r.DurationMS = r.EndedAt.Sub(r.StartedAt).Milliseconds()
	}
	return r
}
