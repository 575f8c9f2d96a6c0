package rows

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// fakeLedger holds sealed runs in memory and counts the reads.
type fakeLedger struct {
	runs  map[string][]ledger.Record
	reads int
}

func (f *fakeLedger) scan(_ context.Context, run string, fn func(ledger.Record) error) error {
	f.reads++
	recs, ok := f.runs[run]
	if !ok {
		return ledger.ErrNoRun
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

var t0 = time.Date(2026, 3, 4, 23, 59, 59, 500_000_000, time.UTC)

// record seals the next event of a run.
type runBuilder struct {
	t    testing.TB
	run  string
	head ledger.Head
	recs []ledger.Record
	at   time.Time
}

func (b *runBuilder) add(typ schemas.EventType, hop string, data any) ledger.Record {
	b.t.Helper()
	b.at = b.at.Add(time.Second)
	ev, err := schemas.NewEvent(b.run, typ, hop, b.at, data)
	if err != nil {
		b.t.Fatal(err)
	}
	wire, err := ledger.Seal(&ev, b.head)
	if err != nil {
		b.t.Fatal(err)
	}
	b.head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash, StreamSeq: b.head.StreamSeq + 100}
	r := ledger.Record{Event: ev, Raw: wire, StreamSeq: b.head.StreamSeq}
	b.recs = append(b.recs, r)
	return r
}

// haltedRun: tomas -> orchestrator -> research (replies with usage),
// orchestrator -> writer (still open), a denied reply under the research
// hop's id, a breach, a halt that cancels the open hops.
func haltedRun(t *testing.T) *runBuilder {
	b := &runBuilder{t: t, run: "r1", at: t0}
	b.add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "h0", Caller: "tomas", CallerType: schemas.TypeUser,
		OnBehalfOf: "tomas", Workflow: "brief", Limits: &schemas.RunLimits{MaxDelegationDepth: 3, MaxEdgeRepeats: 2}})
	b.add(schemas.EventHopAllowed, "h0", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator",
		ToTeam: "platform", Action: schemas.ActionInvoke, Ancestry: []string{"tomas"}, OnBehalfOf: "tomas"})
	b.add(schemas.EventHopAllowed, "h1", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "h0", From: "orchestrator",
		FromTeam: "platform", To: "research", ToTeam: "research", Action: schemas.ActionInvoke, Depth: 1,
		Ancestry: []string{"tomas", "orchestrator"}, OnBehalfOf: "tomas"})
	b.add(schemas.EventHopCompleted, "h1", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "research",
		Usage: &schemas.Usage{InputTokens: 10, OutputTokens: 5, CostUSD: 0.25}, LatencyMS: 1000})
	b.add(schemas.EventHopDenied, "h1", &schemas.HopDecision{Kind: schemas.KindReply, From: "writer", To: "orchestrator",
		Reason: schemas.ReasonHop})
	b.add(schemas.EventHopAllowed, "h2", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "h0", From: "orchestrator",
		To: "writer", ToTeam: "content", Action: schemas.ActionInvoke, Depth: 1, Ancestry: []string{"tomas", "orchestrator"},
		OnBehalfOf: "tomas"})
	b.add(schemas.EventRunLimitBreached, "", &schemas.RunLimitBreached{Limit: "max_cost_usd", Value: 0.25, Bound: 0.2,
		Reason: schemas.ReasonBudget, From: "research", To: "orchestrator", Action: "halt", HopID: "h1"})
	b.add(schemas.EventRunHalted, "", &schemas.RunHalted{Reason: "budget", By: "gateway", Limit: "max_cost_usd",
		OpenHops: []string{"h0", "h2"}})
	return b
}

// decoded decodes a record as the projector does.
func decoded(t *testing.T, r ledger.Record) Decoded {
	t.Helper()
	d, err := NewDecoder().Decode(r.Raw, r.StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func projectAll(t *testing.T, f *Folder, recs []ledger.Record) *Batch {
	t.Helper()
	b := NewBatch()
	for _, r := range recs {
		if err := f.Project(context.Background(), decoded(t, r), b); err != nil {
			t.Fatalf("project seq %d: %v", r.Event.Seq, err)
		}
	}
	return b
}

func TestFoldHaltedRun(t *testing.T) {
	run := haltedRun(t)
	lg := &fakeLedger{runs: map[string][]ledger.Record{"r1": run.recs}}
	f, err := NewFolder(lg.scan, 10)
	if err != nil {
		t.Fatal(err)
	}
	b := projectAll(t, f, run.recs)
	if len(b.Events) != 8 || lg.reads != 0 {
		t.Fatalf("%d event rows, %d ledger reads; want 8 and none", len(b.Events), lg.reads)
	}
	if ev := b.Events[0]; ev.StreamSeq != 100 || ev.Rejected || ev.Type != "run.started" || ev.At != t0.Add(time.Second) {
		t.Fatalf("first event row %+v", ev)
	}
	// One row per decision, at its latest version.
	if len(b.Hops) != 4 {
		t.Fatalf("%d hop rows, want 4: %v", len(b.Hops), b.Hops)
	}
	h1 := b.Hops[HopKey{"r1", 3}]
	if h1.Status != "completed" || h1.Caller != "orchestrator" || h1.TargetTeam != "research" || h1.Workflow != "brief" ||
		h1.Principal != "tomas" || h1.InputTokens != 10 || h1.CostUSD != 0.25 || h1.LatencyMS != 1000 || h1.Version != 4 {
		t.Fatalf("research hop %+v", h1)
	}
	if d := b.Hops[HopKey{"r1", 5}]; d.Decision != "denied" || d.Kind != "reply" || d.HopID != "h1" || d.Status != "denied" || d.Version != 5 {
		t.Fatalf("denied reply %+v", d)
	}
	for _, seq := range []uint64{2, 6} { // h0 and h2, open at the halt
		h := b.Hops[HopKey{"r1", seq}]
		if h.Status != "canceled" || h.ClosedBy != "gateway" || h.Version != 8 || !h.ClosedAt.Equal(t0.Add(8*time.Second)) {
			t.Fatalf("hop at seq %d after the halt: %+v", seq, h)
		}
	}
	r := b.Runs["r1"]
	want := &Run{RunID: "r1", Caller: "tomas", CallerType: "User", Principal: "tomas", Workflow: "brief", RootHopID: "h0",
		StartedAt: t0.Add(time.Second), EndedAt: t0.Add(8 * time.Second), DepthLimit: 3, EdgeRepeatLimit: 2, Status: "halted",
		Halted: true, HaltedBy: "gateway", HaltReason: "budget", HaltLimit: "max_cost_usd", Events: 8, Hops: 3, Denials: 1,
		Breaches: 1, Tokens: 15, CostUSD: 0.25, DurationMS: 7000, Version: 8}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("run row\n got %+v\nwant %+v", r, want)
	}
	if len(b.Breaches) != 1 || b.Breaches[0].HopID != "h1" || b.Breaches[0].Workflow != "brief" || b.Breaches[0].Seq != 7 {
		t.Fatalf("breaches %+v", b.Breaches)
	}
}

// TestFoldSettleAfterHalt: the late reply of a hop the halt cut settles
// it: the hop's row keeps its halt (canceled, closed by the gateway at
// the halt) and gains the usage, and the run's row counts it.
func TestFoldSettleAfterHalt(t *testing.T) {
	run := haltedRun(t)
	run.add(schemas.EventHopCompleted, "h2", &schemas.HopCompleted{Status: schemas.StateCanceled, By: "writer",
		Usage: &schemas.Usage{InputTokens: 100, OutputTokens: 40, CostUSD: 0.5}, LatencyMS: 9000, Settles: true})
	lg := &fakeLedger{runs: map[string][]ledger.Record{"r1": run.recs}}
	f, err := NewFolder(lg.scan, 10)
	if err != nil {
		t.Fatal(err)
	}
	b := projectAll(t, f, run.recs)
	h2 := b.Hops[HopKey{"r1", 6}]
	if h2.Status != "canceled" || h2.ClosedBy != "gateway" || !h2.ClosedAt.Equal(t0.Add(8*time.Second)) || h2.Version != 9 ||
		h2.InputTokens != 100 || h2.OutputTokens != 40 || h2.CostUSD != 0.5 {
		t.Fatalf("the settled hop's row %+v", h2)
	}
	if r := b.Runs["r1"]; r.Tokens != 155 || r.CostUSD != 0.75 || !r.Halted || r.Version != 9 {
		t.Fatalf("run row %+v, want the settle counted (155 tokens, $0.75)", r)
	}
}

// TestRedeliveredEventYieldsTheSameRows: an event seen again after later
// ones (a redelivery) is projected from the ledger's prefix, not from the
// state in memory, so its rows are those of its first projection.
func TestRedeliveredEventYieldsTheSameRows(t *testing.T) {
	run := haltedRun(t)
	lg := &fakeLedger{runs: map[string][]ledger.Record{"r1": run.recs}}
	f, err := NewFolder(lg.scan, 10)
	if err != nil {
		t.Fatal(err)
	}
	first := NewBatch()
	for _, r := range run.recs {
		one := NewBatch()
		if err := f.Project(context.Background(), decoded(t, r), one); err != nil {
			t.Fatal(err)
		}
		if r.Event.Seq == 4 {
			first = one
		}
	}
	again := NewBatch()
	if err := f.Project(context.Background(), decoded(t, run.recs[3]), again); err != nil {
		t.Fatal(err)
	}
	if lg.reads != 1 {
		t.Fatalf("%d ledger reads, want 1 (the prefix of seq 4)", lg.reads)
	}
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("rows differ on redelivery\nfirst %+v\nagain %+v", first, again)
	}
	// The run goes on from there: the next event follows the state again.
	if err := f.Project(context.Background(), decoded(t, run.recs[4]), NewBatch()); err != nil || lg.reads != 1 {
		t.Fatalf("next event: %v after %d reads", err, lg.reads)
	}
}

func TestRejectedSubmissionIsADenialNotARun(t *testing.T) {
	b := &runBuilder{t: t, run: ledger.RejectedPrefix + "7-0123456789ab", at: t0}
	b.add(schemas.EventHopDenied, "", &schemas.HopDecision{From: "research", Reason: schemas.ReasonMalformed})
	f, err := NewFolder((&fakeLedger{}).scan, 10)
	if err != nil {
		t.Fatal(err)
	}
	out := projectAll(t, f, b.recs)
	if len(out.Runs) != 0 || len(out.Events) != 1 || !out.Events[0].Rejected || len(out.Hops) != 1 {
		t.Fatalf("batch %+v", out)
	}
	for _, h := range out.Hops {
		if !h.Rejected || h.Decision != "denied" || h.Reason != "malformed" || h.Caller != "research" {
			t.Fatalf("hop %+v", h)
		}
	}
}

func TestUnprojectableEvents(t *testing.T) {
	run := haltedRun(t)
	f, err := NewFolder((&fakeLedger{runs: map[string][]ledger.Record{"r1": run.recs[:2]}}).scan, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Seq 5 whose ledger prefix stops at seq 2: the ledger contradicts it.
	if err := f.Project(context.Background(), decoded(t, run.recs[4]), NewBatch()); !errors.Is(err, ErrData) {
		t.Fatalf("gap: %v, want ErrData", err)
	}
	// An event of a run the ledger does not have.
	orphan := decoded(t, run.recs[2])
	orphan.Event.RunID = "nosuch"
	if err := f.Project(context.Background(), orphan, NewBatch()); !errors.Is(err, ErrData) {
		t.Fatalf("orphan: %v, want ErrData", err)
	}
	// Data that does not decode.
	bad := []byte(`{"v":1,"run_id":"r9","seq":1,"type":"run.started","at":"2026-01-01T00:00:00Z","data":{"root_hop_id":7},"prev_hash":"","hash":""}`)
	if _, err := NewDecoder().Decode(bad, 1); !errors.Is(err, schemas.ErrMalformed) {
		t.Fatalf("bad data: %v, want ErrMalformed", err)
	}
	if _, err := NewDecoder().Decode([]byte(`{"v":2,"run_id":"r9","seq":1,"type":"run.started","data":{}}`), 1); !errors.Is(err, schemas.ErrVersion) {
		t.Fatalf("version 2: %v, want ErrVersion", err)
	}
	// A ledger that cannot be read is not a data error: it is retried.
	boom := errors.New("nats down")
	f, err = NewFolder(func(context.Context, string, func(ledger.Record) error) error { return boom }, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Project(context.Background(), decoded(t, run.recs[3]), NewBatch()); !errors.Is(err, boom) || errors.Is(err, ErrData) {
		t.Fatalf("unreadable ledger: %v", err)
	}
}

// TestFoldAgreesWithLedgerState: the fold follows ledger.State's rules on
// every kind of event (which decisions open hops, what closes them, what
// spend counts, what a halt cancels).
func TestFoldAgreesWithLedgerState(t *testing.T) {
	other := &runBuilder{t: t, run: "r2", at: t0}
	other.add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"})
	other.add(schemas.EventHopAllowed, "a", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator"})
	other.add(schemas.EventHopAllowed, "b", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "a", From: "orchestrator", To: "research", Depth: 1})
	other.add(schemas.EventHopDenied, "c", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "a", From: "orchestrator", To: "ghost", Reason: schemas.ReasonTarget})
	other.add(schemas.EventHopDenied, "b", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "a", From: "orchestrator", To: "research", Reason: schemas.ReasonReplay})
	other.add(schemas.EventHopTimedOut, "b", &schemas.HopTimedOut{LatencyMS: 30000})
	other.add(schemas.EventHopCompleted, "zz", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "x", Usage: &schemas.Usage{InputTokens: 99}})
	other.add(schemas.EventHopCompleted, "a", &schemas.HopCompleted{Status: schemas.StateFailed, By: "orchestrator", Usage: &schemas.Usage{OutputTokens: 7, CostUSD: 0.5}})
	other.add(schemas.EventRunCompleted, "", &schemas.RunCompleted{Status: schemas.StateFailed, DurationMS: 123})

	for _, run := range []*runBuilder{haltedRun(t), other} {
		st, err := ledger.Fold(run.run, run.recs)
		if err != nil {
			t.Fatal(err)
		}
		f, err := NewFolder((&fakeLedger{}).scan, 10)
		if err != nil {
			t.Fatal(err)
		}
		b := projectAll(t, f, run.recs)
		r := b.Runs[run.run]
		if r.Hops != uint32(st.Allowed) || r.Denials != uint32(st.Denied) || r.OpenHops != uint32(len(st.Open)) ||
			r.Tokens != st.Spent.Tokens || r.CostUSD != st.Spent.CostUSD || r.Halted != st.Halted || r.Breaches != uint32(len(st.Breaches)) ||
			r.Events != st.Head.Seq {
			t.Errorf("run %s: row %+v, ledger state allowed %d denied %d open %d spent %+v halted %v", run.run, r,
				st.Allowed, st.Denied, len(st.Open), st.Spent, st.Halted)
		}
		tracked := 0
		for id, h := range st.Hops {
			row := b.Hops[HopKey{run.run, h.Seq}]
			if row == nil || row.HopID != id || row.Status != string(h.Status) {
				t.Errorf("run %s hop %s: row %+v, ledger state status %s", run.run, id, row, h.Status)
			}
			tracked++
		}
		if tracked != len(f.runsFold(run.run).hops) {
			t.Errorf("run %s: fold tracks %d hops, ledger state %d", run.run, len(f.runsFold(run.run).hops), tracked)
		}
	}
}

func (f *Folder) runsFold(run string) *runFold {
	rf, _ := f.runs.Peek(run)
	return rf
}
