package rows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
	if rf, ok := f.runs.Get(run); ok && rf.st.Head.Seq == seq-1 {
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
		if rf.st.Head.Seq != seq-1 {
			return nil, fmt.Errorf("%w: run %s has %d events before seq %d in the ledger", ErrData, run, rf.st.Head.Seq, seq)
		}
	}
	f.runs.Add(run, rf)
	return rf, nil
}

// runFold is a run folded by ledger.State, which decides which hops a
// decision opens, what closes them and what spend counts. What the rows
// show beyond the state (a hop's teams and principal, who closed it, its
// latency, how the run ended) is taken from each event's data as the
// state's Change says it applies.
type runFold struct {
	st *ledger.State
	// hops holds, for every hop the state tracks (an allowed hop, or a
	// denied invoke under a fresh id), the columns of its row the state's
	// hop does not hold, in ledger order: with the state's hop, enough to
	// write any later version of the row. The projector keeps thousands of
	// runs: one slice per run, not a row and a map entry per hop.
	hops []hopRow

	haltReason, haltLimit string
	endedAt               time.Time
	durationMS            int64
}

// hopRow is what a hop's row holds beyond the state's hop.
type hopRow struct {
	seq                                                                uint64
	kind, callerTeam, targetTeam, reason, message, workflow, principal string
	cycle, rejected                                                    bool
	guardrail                                                          *schemas.Guardrail
}

func newRunFold(run string) *runFold {
	return &runFold{st: ledger.NewViewState(run)}
}

// step folds one event and, when b is not nil, adds its rows to b.
func (rf *runFold) step(d Decoded, b *Batch) error {
	ev := &d.Event
	c, err := rf.st.ApplyDecoded(ev, d.Data, d.StreamSeq)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrData, err)
	}
	st := rf.st
	var decided *Hop // the row of a decision
	switch data := d.Data.(type) {
	case *schemas.HopDecision:
		decided = rf.decision(ev, data, c)
	case *schemas.HopCompleted:
		if c.Kind == ledger.ChangeSettled {
			// The halt closed the hop; its late reply adds what it used.
			if h := rf.closed(b, ev, c.Hop); h != nil {
				h.ClosedAt, h.ClosedBy = c.Hop.ClosedAt, schemas.GatewayActor
				h.LatencyMS = c.Hop.ClosedAt.Sub(h.OpenedAt).Milliseconds()
				if u := c.Hop.Usage; u != nil {
					h.InputTokens, h.OutputTokens, h.CostUSD = u.InputTokens, u.OutputTokens, u.CostUSD
				}
			}
			break
		}
		if c.Kind != ledger.ChangeClosed {
			break
		}
		if h := rf.closed(b, ev, c.Hop); h != nil {
			h.ClosedBy, h.Error, h.LatencyMS = data.By, data.Error, data.LatencyMS
			if g := data.Guardrail; g != nil {
				h.ReplyGuardrailVerdict, h.ReplyGuardrailRules = g.Verdict, g.Rules
			}
			if u := c.Hop.Usage; u != nil {
				h.InputTokens, h.OutputTokens, h.CostUSD = u.InputTokens, u.OutputTokens, u.CostUSD
			}
		}
	case *schemas.HopApproved:
		if c.Kind != ledger.ChangeApproved {
			break
		}
		if h := rf.closed(b, ev, c.Hop); h != nil {
			h.ClosedAt = time.Time{} // released, open now
		}
	case *schemas.HopRejected:
		if c.Kind != ledger.ChangeRejected {
			break
		}
		if h := rf.closed(b, ev, c.Hop); h != nil {
			h.ClosedBy, h.Reason, h.Message = data.By, string(schemas.ReasonApproval), data.Message
			h.LatencyMS = ev.At.Sub(h.OpenedAt).Milliseconds()
		}
	case *schemas.HopRerouted:
		// The hop's row follows it to its fallback target.
		if c.Kind == ledger.ChangeRerouted {
			if h := rf.closed(b, ev, c.Hop); h != nil {
				h.ClosedAt = time.Time{}
				h.Target = data.To
			}
		}
	case *schemas.HopTimedOut:
		if c.Kind != ledger.ChangeTimedOut {
			break
		}
		if h := rf.closed(b, ev, c.Hop); h != nil {
			h.ClosedBy, h.LatencyMS = schemas.GatewayActor, data.LatencyMS
		}
	case *schemas.RunLimitBreached:
		if b != nil {
			b.Breaches = append(b.Breaches, Breach{
				RunID: ev.RunID, Seq: ev.Seq, At: ev.At, Limit: data.Limit, Value: data.Value, Bound: data.Bound,
				Reason: string(data.Reason), Caller: data.From, Target: data.To, Action: data.Action, HopID: data.HopID,
				Workflow: st.Workflow, Principal: st.OnBehalfOf,
			})
		}
	case *schemas.RunHalted:
		rf.haltReason, rf.haltLimit, rf.endedAt = data.Reason, data.Limit, ev.At
		for _, sh := range c.Cancelled {
			if h := rf.closed(b, ev, sh); h != nil {
				h.ClosedBy, h.LatencyMS = schemas.GatewayActor, ev.At.Sub(h.OpenedAt).Milliseconds()
			}
		}
	case *schemas.RunCompleted:
		rf.endedAt, rf.durationMS = ev.At, data.DurationMS
	}
	if b == nil {
		return nil
	}
	b.Events = append(b.Events, Event{
		RunID: ev.RunID, Seq: ev.Seq, StreamSeq: d.StreamSeq, Type: string(ev.Type), At: ev.At, HopID: ev.HopID,
		Rejected: !st.Started, Data: d.Stored, PrevHash: ev.PrevHash, Hash: ev.Hash,
	})
	if decided != nil {
		b.putHop(decided)
	}
	if st.Started {
		rf.putRun(b)
	}
	return nil
}

// decision builds the row of a hop.allowed or hop.denied, and keeps it as
// the row of the hop the state recorded, if any, so that the event closing
// that hop can update it.
func (rf *runFold) decision(ev *schemas.Event, d *schemas.HopDecision, c ledger.Change) *Hop {
	st := rf.st
	h := &Hop{
		RunID: ev.RunID, HopSeq: ev.Seq, HopID: ev.HopID, ParentHopID: d.ParentHopID, Kind: string(d.Kind),
		Caller: d.From, CallerTeam: d.FromTeam, Target: d.To, TargetTeam: d.ToTeam, Action: string(d.Action),
		Depth: uint32(max(d.Depth, 0)), Ancestry: d.Ancestry, Cycle: d.Cycle, Reason: string(d.Reason), Message: d.Message,
		PolicyIDs: d.PolicyIDs, OpenedAt: ev.At, Workflow: st.Workflow, Principal: d.OnBehalfOf,
		Rejected: !st.Started, Version: ev.Seq, Tainted: d.Tainted, TaintSources: d.TaintSources,
	}
	if g := d.Guardrail; g != nil {
		h.GuardrailVerdict, h.GuardrailRules = g.Verdict, g.Rules
	}
	if h.Principal == "" {
		h.Principal = st.OnBehalfOf
	}
	if ev.Type == schemas.EventHopDenied {
		h.Decision, h.Status, h.ClosedAt, h.ClosedBy = ledger.DecisionDenied, string(ledger.HopDenied), ev.At, schemas.GatewayActor
	} else {
		h.Decision, h.Status = ledger.DecisionAllowed, string(ledger.HopOpen)
		if c.Hop != nil {
			h.Status = string(c.Hop.Status) // open, or pending approval
		}
	}
	if c.Hop != nil {
		if rf.hops == nil {
			rf.hops = make([]hopRow, 0, 8)
		}
		rf.hops = append(rf.hops, hopRow{seq: ev.Seq, kind: h.Kind, callerTeam: h.CallerTeam, targetTeam: h.TargetTeam,
			reason: h.Reason, message: h.Message, workflow: h.Workflow, principal: h.Principal, cycle: h.Cycle, rejected: h.Rejected,
			guardrail: d.Guardrail})
	}
	return h
}

// closed puts in b the row of the state's hop sh as ev closed it, and
// returns it for the caller to set what the closing event says (who closed
// the hop, its latency, its usage). The hop was open (only open hops
// close), so the row is that of an allowed hop. A version of the row that b
// already holds is overwritten in place: the batch owns its rows (the fold
// keeps none) until it is handed over, full. It returns nil, and puts
// nothing, when b is nil (a run's earlier events being folded), when b
// holds a later version, or when sh has no row (every hop the state
// records has one).
func (rf *runFold) closed(b *Batch, ev *schemas.Event, sh *ledger.Hop) *Hop {
	if b == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(rf.hops, sh.Seq, func(x hopRow, seq uint64) int { return cmp.Compare(x.seq, seq) })
	if !ok {
		return nil
	}
	key := HopKey{RunID: rf.st.RunID, HopSeq: sh.Seq}
	h := b.Hops[key]
	switch {
	case h == nil:
		h = new(Hop)
		b.Hops[key] = h
	case h.Version > ev.Seq:
		return nil
	}
	x := &rf.hops[i]
	*h = Hop{
		RunID: rf.st.RunID, HopSeq: sh.Seq, HopID: sh.ID, ParentHopID: sh.ParentID, Kind: x.kind,
		Caller: sh.From, CallerTeam: x.callerTeam, Target: sh.To, TargetTeam: x.targetTeam, Action: string(sh.Action),
		Depth: uint32(max(sh.Depth, 0)), Ancestry: sh.Ancestry, Cycle: x.cycle, Decision: ledger.DecisionAllowed, Reason: x.reason,
		Message: x.message, PolicyIDs: sh.PolicyIDs, Status: string(sh.Status), OpenedAt: sh.OpenedAt, ClosedAt: ev.At,
		Workflow: x.workflow, Principal: x.principal, Rejected: x.rejected, Version: ev.Seq,
		Tainted: sh.Tainted, TaintSources: sh.TaintSources,
	}
	if g := x.guardrail; g != nil {
		h.GuardrailVerdict, h.GuardrailRules = g.Verdict, g.Rules
	}
	return h
}

// putRun sets the run's row in b to the run as of its last folded event,
// unless b holds a later version. The batch keeps one row per run, and
// later versions overwrite it in place: a batch is filled by one goroutine
// and handed over only when full, and a row per event would be the fold's
// largest allocation.
func (rf *runFold) putRun(b *Batch) {
	r := b.Runs[rf.st.RunID]
	switch {
	case r == nil:
		r = new(Run)
		b.Runs[rf.st.RunID] = r
	case r.Version > rf.st.Head.Seq:
		return
	}
	rf.row(r)
}

// row sets r to the run's row as of its last folded event.
func (rf *runFold) row(r *Run) {
	st := rf.st
	*r = Run{
		RunID: st.RunID, Caller: st.Caller, CallerType: string(st.CallerType), Principal: st.OnBehalfOf, Workflow: st.Workflow,
		RootHopID: st.RootHopID, StartedAt: st.StartedAt, EndedAt: rf.endedAt, Halted: st.Halted, HaltedBy: st.HaltedBy,
		HaltReason: rf.haltReason, HaltLimit: rf.haltLimit, Events: st.Head.Seq, Hops: uint32(st.Allowed),
		Denials: uint32(st.Denied), Breaches: uint32(len(st.Breaches)), OpenHops: uint32(len(st.Open)),
		Tokens: st.Spent.Tokens, CostUSD: st.Spent.CostUSD, DurationMS: rf.durationMS, Version: st.Head.Seq,
	}
	if l := st.Limits; l != nil {
		r.DepthLimit, r.EdgeRepeatLimit = uint32(max(l.MaxDelegationDepth, 0)), uint32(max(l.MaxEdgeRepeats, 0))
	}
	r.Status = st.RunStatus()
	if r.DurationMS == 0 && !r.EndedAt.IsZero() && !r.StartedAt.IsZero() {
		r.DurationMS = r.EndedAt.Sub(r.StartedAt).Milliseconds()
	}
}
