package ledger_test

import (
	"errors"
	"fmt"
	"log"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sealed seals events into a run's records, one second apart, as a reader
// gets them: decoded from their stored bytes.
func sealed(t *testing.T, run string, evs ...schemas.Event) []ledger.Record {
	t.Helper()
	var head ledger.Head
	out := make([]ledger.Record, len(evs))
	for i, ev := range evs {
		ev.At = t0.Add(time.Duration(i) * time.Second)
		raw, err := ledger.Seal(&ev, head)
		if err != nil {
			t.Fatal(err)
		}
		head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash, StreamSeq: uint64(100 + i)}
		stored, err := schemas.DecodeEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = ledger.Record{Event: *stored, Raw: raw, StreamSeq: head.StreamSeq}
	}
	return out
}

// TestApplyDecodedChanges: what each event does to a run, and what it
// counts, as the one fold decides it.
func TestApplyDecodedChanges(t *testing.T) {
	const run = "r1"
	ev := func(typ schemas.EventType, hop string, data any) schemas.Event { return event(t, run, typ, hop, data) }
	invoke := func(parent, from, to string, est *schemas.Usage) *schemas.HopDecision {
		return &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: parent, From: from, To: to, Estimate: est, Digest: "d-" + to}
	}
	reply := func(by string, u *schemas.Usage) *schemas.HopCompleted {
		return &schemas.HopCompleted{Status: schemas.StateCompleted, By: by, Usage: u}
	}
	recs := sealed(t, run,
		ev(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"}),
		ev(schemas.EventHopAllowed, "a", invoke("", "tomas", "orchestrator", &schemas.Usage{CostUSD: 1})),
		ev(schemas.EventHopAllowed, "b", invoke("a", "orchestrator", "research", &schemas.Usage{InputTokens: 10})),
		ev(schemas.EventHopDenied, "c", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "b", From: "research", To: "orchestrator",
			Reason: schemas.ReasonLoop, Breach: &schemas.Breach{Limit: "cycle", Value: 1}}),
		ev(schemas.EventHopDenied, "b", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "a", From: "orchestrator", To: "research",
			Reason: schemas.ReasonReplay}),
		ev(schemas.EventHopDenied, "a", &schemas.HopDecision{Kind: schemas.KindReply, From: "writer", Reason: schemas.ReasonHop}),
		ev(schemas.EventHopCompleted, "b", reply("research", &schemas.Usage{InputTokens: 100, OutputTokens: 50, CostUSD: 0.25})),
		ev(schemas.EventHopCompleted, "b", reply("research", &schemas.Usage{InputTokens: 1000})), // b is closed
		ev(schemas.EventHopCompleted, "zz", reply("x", &schemas.Usage{InputTokens: 99})),         // no such hop
		ev(schemas.EventHopCompleted, "c", reply("x", &schemas.Usage{InputTokens: 7})),           // a denied hop
		ev(schemas.EventHopTimedOut, "b", &schemas.HopTimedOut{LatencyMS: 30000}),                // closed already
		ev(schemas.EventRunLimitBreached, "c", &schemas.RunLimitBreached{Limit: "cycle", Value: 1, Action: "halt", HopID: "c"}),
		ev(schemas.EventHopAllowed, "d", invoke("a", "orchestrator", "writer", nil)),
		ev(schemas.EventHopAllowed, "e", invoke("a", "orchestrator", "critic", nil)),
		ev(schemas.EventHopTimedOut, "e", &schemas.HopTimedOut{LatencyMS: 30000}),
		ev(schemas.EventRunHalted, "", &schemas.RunHalted{Reason: "cycle", By: "gateway", OpenHops: []string{"d", "a", "e", "zz"}}),
	)
	want := []struct {
		kind ledger.ChangeKind
		hop  string
	}{
		{ledger.ChangeStarted, ""}, {ledger.ChangeOpened, "a"}, {ledger.ChangeOpened, "b"}, {ledger.ChangeDeniedHop, "c"},
		{ledger.ChangeDenial, ""}, {ledger.ChangeDenial, ""}, {ledger.ChangeClosed, "b"}, {ledger.ChangeIgnored, ""},
		{ledger.ChangeIgnored, ""}, {ledger.ChangeIgnored, ""}, {ledger.ChangeIgnored, ""}, {ledger.ChangeBreach, ""},
		{ledger.ChangeOpened, "d"}, {ledger.ChangeOpened, "e"}, {ledger.ChangeTimedOut, "e"}, {ledger.ChangeHalted, ""},
	}
	st := ledger.NewState(run)
	var last ledger.Change
	for i, r := range recs {
		data, err := r.Event.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.ApplyDecoded(&r.Event, data, r.StreamSeq)
		if err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
		hop := ""
		if c.Hop != nil {
			hop = c.Hop.ID
		}
		if c.Kind != want[i].kind || hop != want[i].hop {
			t.Errorf("event %d (%s %s): change %s of hop %q, want %s of %q", i+1, r.Event.Type, r.Event.HopID, c.Kind, hop, want[i].kind, want[i].hop)
		}
		last = c
	}
	var cancelled []string
	for _, h := range last.Cancelled {
		cancelled = append(cancelled, h.ID)
	}
	if strings.Join(cancelled, ",") != "d,a" {
		t.Errorf("the halt cancelled %v, want d and a (e timed out, zz does not exist)", cancelled)
	}
	// Only the reply that closed an open hop counts.
	if st.Spent != (ledger.Spend{Tokens: 150, CostUSD: 0.25}) || st.Reserved != (ledger.Spend{}) {
		t.Errorf("spent %+v reserved %+v; want 150 tokens, $0.25, nothing reserved", st.Spent, st.Reserved)
	}
	if st.Allowed != 4 || st.Denied != 3 || len(st.Open) != 0 || len(st.Hops) != 5 || !st.Halted || st.Unrecorded != nil {
		t.Errorf("allowed %d denied %d open %d hops %d halted %v unrecorded %v", st.Allowed, st.Denied, len(st.Open), len(st.Hops), st.Halted, st.Unrecorded)
	}
	for id, status := range map[string]ledger.HopStatus{"a": "canceled", "b": "completed", "c": ledger.HopDenied, "d": "canceled", "e": ledger.HopTimedOut} {
		if h := st.Hops[id]; h.Status != status {
			t.Errorf("hop %s is %s, want %s", id, h.Status, status)
		}
	}
	if u := st.Hops["b"].Usage; u == nil || u.InputTokens != 100 || st.Hops["b"].CloseStreamSeq != 106 {
		t.Errorf("hop b closed with %+v at stream seq %d, want the first reply's", u, st.Hops["b"].CloseStreamSeq)
	}
	if st.Head.Seq != 16 || st.Head.StreamSeq != 115 || st.Head.Hash != recs[15].Event.Hash || !st.LastAt.Equal(recs[15].Event.At) {
		t.Errorf("head %+v, last at %s", st.Head, st.LastAt)
	}

	// Apply, which decodes, folds the same.
	folded, err := ledger.Fold(run, recs)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(folded, st) {
		t.Errorf("Fold and ApplyDecoded disagree:\n%+v\n%+v", folded, st)
	}
}

// TestSettleAfterHalt: a hop the halt closed while it was open may be
// settled once by a hop.completed that settles: its usage counts as spent
// and the hop stays canceled. A second settle, a settle of a hop the halt
// did not cut (one that was closed before, or never delivered), and a
// plain hop.completed after the halt count nothing.
func TestSettleAfterHalt(t *testing.T) {
	const run = "r2"
	ev := func(typ schemas.EventType, hop string, data any) schemas.Event { return event(t, run, typ, hop, data) }
	invoke := func(parent, from, to string, est *schemas.Usage) *schemas.HopDecision {
		return &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: parent, From: from, To: to, Estimate: est}
	}
	settle := func(u *schemas.Usage) *schemas.HopCompleted {
		return &schemas.HopCompleted{Status: schemas.StateCanceled, By: "gpt", Usage: u, Settles: true}
	}
	recs := sealed(t, run,
		ev(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"}),
		ev(schemas.EventHopAllowed, "a", invoke("", "tomas", "research", nil)),
		ev(schemas.EventHopAllowed, "m", invoke("a", "research", "gpt", &schemas.Usage{OutputTokens: 1000})),
		ev(schemas.EventHopAllowed, "t", invoke("a", "research", "web", nil)),
		ev(schemas.EventHopCompleted, "t", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "web", Usage: &schemas.Usage{CostUSD: 0.5}}),
		ev(schemas.EventHopPending, "p", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "a", From: "research", To: "payments",
			Approval: &schemas.Approval{Approvers: []string{"finance"}, PolicyIDs: []string{"p"}, Deadline: t0.Add(time.Hour)}}),
		ev(schemas.EventHopCompleted, "m", settle(&schemas.Usage{InputTokens: 1})), // not halted yet: m is open
		ev(schemas.EventRunHalted, "", &schemas.RunHalted{Reason: "stop", By: "oncall", OpenHops: []string{"a", "m", "p"}}),
		ev(schemas.EventHopCompleted, "m", settle(&schemas.Usage{InputTokens: 12, OutputTokens: 30, CostUSD: 0.01})),
		ev(schemas.EventHopCompleted, "m", settle(&schemas.Usage{InputTokens: 500})), // settled already
		ev(schemas.EventHopCompleted, "t", settle(&schemas.Usage{InputTokens: 500})), // closed before the halt
		ev(schemas.EventHopCompleted, "p", settle(&schemas.Usage{InputTokens: 500})), // held, never delivered
		ev(schemas.EventHopCompleted, "a", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "research", Usage: &schemas.Usage{InputTokens: 500}}),
	)
	want := []ledger.ChangeKind{ledger.ChangeStarted, ledger.ChangeOpened, ledger.ChangeOpened, ledger.ChangeOpened, ledger.ChangeClosed,
		ledger.ChangePending, ledger.ChangeIgnored, ledger.ChangeHalted, ledger.ChangeSettled, ledger.ChangeIgnored, ledger.ChangeIgnored,
		ledger.ChangeIgnored, ledger.ChangeIgnored}
	st := ledger.NewState(run)
	for i, r := range recs {
		data, err := r.Event.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.ApplyDecoded(&r.Event, data, r.StreamSeq)
		if err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
		if c.Kind != want[i] {
			t.Errorf("event %d (%s %s): change %s, want %s", i+1, r.Event.Type, r.Event.HopID, c.Kind, want[i])
		}
	}
	m := st.Hops["m"]
	if m.Status != "canceled" || !m.CutByHalt || !m.Settled || m.Usage == nil || m.Usage.OutputTokens != 30 {
		t.Errorf("hop m %s cut %v settled %v usage %+v, want canceled, settled with 30 output tokens", m.Status, m.CutByHalt, m.Settled, m.Usage)
	}
	if st.Hops["p"].CutByHalt || st.Hops["t"].CutByHalt {
		t.Error("a held hop, or one closed before the halt, is marked cut by it")
	}
	if st.Spent.Tokens != 42 || st.Spent.CostUSD < 0.5099 || st.Spent.CostUSD > 0.5101 || st.Reserved != (ledger.Spend{}) {
		t.Errorf("spent %+v reserved %+v; want 42 tokens, $0.51, nothing reserved", st.Spent, st.Reserved)
	}
}

func TestApplyDecodedRefuses(t *testing.T) {
	recs := sealed(t, "r1",
		event(t, "r1", schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas"}),
		event(t, "r1", schemas.EventHopAllowed, "a", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator"}))
	st := ledger.NewState("r1")
	for name, data := range map[string]any{
		"no data":          nil,
		"a nil pointer":    (*schemas.RunStarted)(nil),
		"another type's":   &schemas.HopDecision{Kind: schemas.KindInvoke},
		"not a data value": "run.started",
	} {
		if _, err := st.ApplyDecoded(&recs[0].Event, data, 1); !errors.Is(err, schemas.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if !reflect.DeepEqual(st, ledger.NewState("r1")) {
		t.Fatalf("a refused event changed the state: %+v", st)
	}
	data, _ := recs[1].Event.DecodeData()
	if _, err := st.ApplyDecoded(&recs[1].Event, data, 2); err == nil || !strings.Contains(err.Error(), "does not follow") {
		t.Fatalf("an event out of order: %v", err)
	}
}

// TestStartedState: the state a new run has before its run.started is
// stored is the state folding it gives, but for the head.
func TestStartedState(t *testing.T) {
	d := &schemas.RunStarted{RootHopID: "a", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas", Workflow: "brief",
		Limits: &schemas.RunLimits{MaxHops: 3}, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	recs := sealed(t, "r1", event(t, "r1", schemas.EventRunStarted, "", d))
	folded, err := ledger.Fold("r1", recs)
	if err != nil {
		t.Fatal(err)
	}
	got := ledger.StartedState("r1", recs[0].Event.At, d)
	if !got.Head.Empty() || got.Head.Hash != schemas.GenesisHash {
		t.Fatalf("head %+v, want the empty run's", got.Head)
	}
	got.Head = folded.Head
	if !reflect.DeepEqual(got, folded) {
		t.Fatalf("started state\n%+v\nwant\n%+v", got, folded)
	}
}

// ExampleState_ApplyDecoded folds a run's events and prints what each did.
func ExampleState_ApplyDecoded() {
	st := ledger.NewState("r1")
	var head ledger.Head
	for _, e := range []struct {
		typ  schemas.EventType
		hop  string
		data any
	}{
		{schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "h1", Caller: "tomas", OnBehalfOf: "tomas"}},
		{schemas.EventHopAllowed, "h1", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator"}},
		{schemas.EventHopCompleted, "h1", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "orchestrator",
			Usage: &schemas.Usage{InputTokens: 120, OutputTokens: 30, CostUSD: 0.002}}},
		{schemas.EventHopCompleted, "h1", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "orchestrator",
			Usage: &schemas.Usage{InputTokens: 999}}},
		{schemas.EventRunCompleted, "", &schemas.RunCompleted{Status: schemas.StateCompleted}},
	} {
		ev, err := schemas.NewEvent("r1", e.typ, e.hop, time.Unix(0, 0), e.data)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := ledger.Seal(&ev, head); err != nil {
			log.Fatal(err)
		}
		head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash}
		c, err := st.ApplyDecoded(&ev, e.data, 0)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %s\n", ev.Type, c.Kind)
	}
	fmt.Printf("spent %d tokens, $%.3f\n", st.Spent.Tokens, st.Spent.CostUSD)
	// Output:
	// run.started: started
	// hop.allowed: opened
	// hop.completed: closed
	// hop.completed: ignored
	// run.completed: completed
	// spent 150 tokens, $0.002
}

// TestDecided: every decided submission is found by its digest, however
// the digest is written, and before and after the index is built.
func TestDecided(t *testing.T) {
	hexDigest := ledger.Digest([]byte("an envelope"))
	recs := sealed(t, "r1",
		event(t, "r1", schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas"}),
		event(t, "r1", schemas.EventHopAllowed, "a", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "o", Digest: hexDigest}),
		event(t, "r1", schemas.EventHopDenied, "b", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "o", To: "x", Digest: "not hex"}),
		event(t, "r1", schemas.EventHopCompleted, "a", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "o", Digest: strings.Repeat("f", 64)}))
	st := ledger.NewState("r1")
	check := func(when string, want map[string]uint64) {
		t.Helper()
		for digest, seq := range want {
			got, ok := st.Decided(digest)
			if ok != (seq != 0) || got != seq {
				t.Errorf("%s: Decided(%q) = %d, %v; want %d", when, digest, got, ok, seq)
			}
		}
	}
	for i, r := range recs[:3] {
		if err := st.Apply(r); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			check("after the first decision", map[string]uint64{hexDigest: 101})
		}
	}
	if err := st.Apply(recs[3]); err != nil {
		t.Fatal(err)
	}
	check("at the end", map[string]uint64{hexDigest: 101, "not hex": 102, strings.Repeat("f", 64): 103,
		strings.ToUpper(hexDigest): 0, "": 0, strings.Repeat("0", 64): 0, hexDigest[:63]: 0})
}

// TestViewState: a view state folds as a state does, but keeps no digests.
func TestViewState(t *testing.T) {
	recs := sealed(t, "r1",
		event(t, "r1", schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas"}),
		event(t, "r1", schemas.EventHopAllowed, "a", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "o", Digest: "d1",
			Estimate: &schemas.Usage{CostUSD: 1}}))
	st, view := ledger.NewState("r1"), ledger.NewViewState("r1")
	for _, r := range recs {
		if err := st.Apply(r); err != nil {
			t.Fatal(err)
		}
		if err := view.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := view.Decided("d1"); ok {
		t.Error("a view state answers Decided")
	}
	if _, ok := st.Decided("d1"); !ok {
		t.Error("a state does not answer Decided")
	}
	if view.Head != st.Head || view.Allowed != 1 || view.Reserved != st.Reserved || len(view.Open) != 1 || view.Hops["a"].To != "o" {
		t.Errorf("view %+v\nstate %+v", view, st)
	}
}

// TestBytesEstimatesTheHeap: State.Bytes, which caches bound themselves
// by, is within a factor of two of what states really hold on the heap,
// for runs shaped like the enforcer's (a root and 20 delegations, every
// decision a submission to remember, signed-envelope-sized ids).
func TestBytesEstimatesTheHeap(t *testing.T) {
	const runs, hops = 300, 20
	build := func(i int) []ledger.Record {
		run := fmt.Sprintf("01J%023d", i)
		root := schemas.DeriveHopID(schemas.RunScope(run), "0")
		evs := []schemas.Event{
			event(t, run, schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: root, Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas", Workflow: "default", Limits: &schemas.RunLimits{MaxHops: 1000}, TraceID: strings.Repeat("a", 32)}),
			event(t, run, schemas.EventHopAllowed, root, &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator", Ancestry: []string{"tomas"},
				PolicyIDs: []string{"users-start-runs"}, Digest: ledger.Digest([]byte(root)), TraceID: strings.Repeat("a", 32), SpanID: strings.Repeat("b", 16)}),
		}
		for h := range hops {
			id := schemas.DeriveHopID(root, fmt.Sprint(h))
			evs = append(evs, event(t, run, schemas.EventHopAllowed, id, &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: root,
				From: "orchestrator", To: "research", Depth: 1, Ancestry: []string{"tomas", "orchestrator"}, PolicyIDs: []string{"agents-delegate"},
				Digest: ledger.Digest([]byte(id)), TraceID: strings.Repeat("a", 32), SpanID: strings.Repeat("c", 16), ParentSpanID: strings.Repeat("b", 16)}))
		}
		return sealed(t, run, evs...)
	}
	recs := make([][]ledger.Record, runs)
	for i := range recs {
		recs[i] = build(i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	states := make([]*ledger.State, runs)
	estimate := 0
	for i, rr := range recs {
		st, err := ledger.Fold(rr[0].Event.RunID, rr)
		if err != nil {
			t.Fatal(err)
		}
		states[i] = st
		estimate += st.Bytes()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	runtime.KeepAlive(states)
	runtime.KeepAlive(recs)
	ratio := float64(estimate) / held
	t.Logf("%d runs of %d hops: estimate %d bytes, heap %d bytes (ratio %.2f)", runs, hops+1, estimate, int(held), ratio)
	if ratio < 0.5 || ratio > 2 {
		t.Fatalf("State.Bytes estimates %d bytes for states that hold %d on the heap (ratio %.2f, want 0.5 to 2)", estimate, int(held), ratio)
	}
}
