package runtree_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

func TestGolden(t *testing.T) {
	render := map[string]func(*runtree.Run) ([]byte, error){
		"txt": func(r *runtree.Run) ([]byte, error) {
			var b bytes.Buffer
			err := r.WriteText(&b)
			return b.Bytes(), err
		},
		"payloads.txt": func(r *runtree.Run) ([]byte, error) {
			var b bytes.Buffer
			r.LoadPayloads()
			err := r.WriteTextOptions(&b, runtree.TextOptions{Payloads: true})
			return b.Bytes(), err
		},
		"json": func(r *runtree.Run) ([]byte, error) {
			b, err := json.MarshalIndent(r, "", "  ")
			return append(b, '\n'), err
		},
		"dot": func(r *runtree.Run) ([]byte, error) {
			var b bytes.Buffer
			err := r.WriteDOT(&b)
			return b.Bytes(), err
		},
		"mmd": func(r *runtree.Run) ([]byte, error) {
			var b bytes.Buffer
			err := r.WriteMermaid(&b)
			return b.Bytes(), err
		},
	}
	runs := map[string]func(testing.TB) []ledger.Record{"incident": incident, "loop": loop}
	for name, mk := range runs {
		for ext, f := range render {
			t.Run(name+"."+ext, func(t *testing.T) {
				got, err := f(verifiedTree(t, mk(t)))
				if err != nil {
					t.Fatal(err)
				}
				brokertest.Golden(t, name+"."+ext, got)
			})
		}
	}
	t.Run("incident.at5.txt", func(t *testing.T) {
		recs := incident(t)
		v := ledger.Verify("run-incident", recs, nil)
		r, err := runtree.FromVerifiedAsOf(v, 5)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		brokertest.Golden(t, "incident.at5.txt", b.Bytes())
	})
}

// TestTreeFacts checks what the golden files show, in code: a reviewer of
// an -update must not have to spot a regression in a diff.
func TestTreeFacts(t *testing.T) {
	r := verifiedTree(t, incident(t))
	if r.Status != "completed" || len(r.Hops) != 5 || r.Allowed() != 4 || r.Tokens != 8300 || r.TraceID != traceID {
		t.Fatalf("incident: status %s, %d hops (%d allowed), %d tokens, trace %q", r.Status, len(r.Hops), r.Allowed(), r.Tokens, r.TraceID)
	}
	den := r.Hops[2]
	if den.From != "research" || den.To != "orchestrator" || !den.Denied() || den.Reason != schemas.ReasonPolicy || den.Depth != 2 ||
		den.PolicyIDs[0] != "no-agent-invokes-an-orchestrator" || den.SpanID == "" || den.Seq != 4 {
		t.Fatalf("denied hop %+v", den)
	}
	if len(r.Roots) != 1 || len(r.Roots[0].Children) != 3 || r.Roots[0].Children[0].Children[0] != den {
		t.Fatal("the denied hop does not hang below research below the orchestrator")
	}
	if c := r.CostByAgent["research"]; c.Tokens != 3000 || c.CostUSD != 0.030 {
		t.Fatalf("research cost %+v", c)
	}

	l := verifiedTree(t, loop(t))
	if l.Status != "halted" || l.Halt == nil || l.Halt.By != "gateway" || len(l.Halt.Cancelled) != 2 {
		t.Fatalf("loop: status %s, halt %+v", l.Status, l.Halt)
	}
	cyc := l.Hops[2]
	if !cyc.Cycle || cyc.Breach == nil || cyc.Breach.Limit != "cycle" || cyc.BreachAction != "halt" || cyc.BreachSeq != 5 {
		t.Fatalf("cycle hop %+v", cyc)
	}
	if l.Hops[0].Status != "canceled" || l.Hops[0].ClosedBy != "gateway" {
		t.Fatalf("root hop after the halt: %+v", l.Hops[0])
	}
	g := l.Graph()
	var marked []string
	for _, e := range g.Edges {
		if e.Marked() {
			marked = append(marked, e.From+"->"+e.To)
		}
	}
	if len(marked) != 1 || marked[0] != "research->orchestrator" {
		t.Fatalf("marked edges %v", marked)
	}
}

// TestBuildAgreesWithFold: the tree's run-level facts are those of the
// ledger's own fold, which the enforcer decides on.
func TestBuildAgreesWithFold(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) []ledger.Record{"incident": incident, "loop": loop} {
		recs := decoded(t, mk(t))
		st, err := ledger.Fold(runOf(t, recs), recs)
		if err != nil {
			t.Fatal(err)
		}
		r, err := runtree.Build(st.RunID, recs)
		if err != nil {
			t.Fatal(err)
		}
		if r.Halted != st.Halted || r.Tokens != st.Spent.Tokens || r.CostUSD != st.Spent.CostUSD || r.HeadHash != st.Head.Hash ||
			r.Allowed() != st.Allowed || len(r.OpenHops) != len(st.Open) || r.TraceID != st.TraceID || r.OnBehalfOf != st.OnBehalfOf {
			t.Errorf("%s: tree %+v disagrees with the fold %+v", name, r, st)
		}
		for _, h := range r.Hops {
			if sh := st.Hops[h.HopID]; sh == nil || string(sh.Status) != h.Status {
				t.Errorf("%s: hop %s is %s in the tree, %+v in the fold", name, h.HopID, h.Status, sh)
			}
		}
	}
}

func TestAsOf(t *testing.T) {
	recs := decoded(t, incident(t))
	r, err := runtree.AsOf("run-incident", recs, 5)
	if err != nil {
		t.Fatal(err)
	}
	// Events 1-5: run.started, h001 and h002 allowed, h003 denied, h002 replied.
	if r.Status != "running" || r.AsOf != 5 || len(r.Hops) != 3 || len(r.OpenHops) != 1 || r.OpenHops[0] != "h001" || r.Tokens != 3000 {
		t.Fatalf("as of 5: %s, as_of %d, %d hops, open %v, %d tokens", r.Status, r.AsOf, len(r.Hops), r.OpenHops, r.Tokens)
	}
	for _, seq := range []uint64{0, 12} {
		if _, err := runtree.AsOf("run-incident", recs, seq); err == nil {
			t.Errorf("as of %d: no error", seq)
		}
	}
}

func TestPayloads(t *testing.T) {
	r := verifiedTree(t, incident(t))
	r.LoadPayloads()
	if h := r.Hops[1]; h.Input != "Find sources: governance" || h.Output != "found 7 sources (attempt 1)" {
		t.Fatalf("payloads of %s: %q / %q", h.HopID, h.Input, h.Output)
	}
	if h := r.Hops[2]; h.Input != "retry: search failed, re-plan the brief" || h.Output != "" {
		t.Fatalf("payloads of the denied hop: %q / %q", h.Input, h.Output)
	}
}

// TestHostileTextIsEscaped: whatever an agent put in its messages or ids
// reaches the terminal, DOT and Mermaid escaped.
func TestHostileTextIsEscaped(t *testing.T) {
	evil := "ok\x1b]0;pwned\x07\u202e\"]; x -> y [label=\"<b>|#"
	cast := append(runtreetest.DemoCast(), runtreetest.Member{ID: "tool-x", Type: schemas.TypeTool, Team: "research"})
	b := runtreetest.New("run-evil", t0, cast)
	root := b.Start("tomas", "orchestrator", evil, "", nil)
	h := b.Deny(root, "tool-x", evil, runtreetest.Denial{Reason: schemas.ReasonPolicy, Message: evil})
	_ = h
	b.Reply(root, schemas.StateCompleted, evil, nil)
	b.Complete()
	r := verifiedTree(t, stored(t, b))
	r.LoadPayloads()
	var text, dot, mmd bytes.Buffer
	if err := r.WriteTextOptions(&text, runtree.TextOptions{Payloads: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteDOT(&dot); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMermaid(&mmd); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"text": text.String(), "dot": dot.String(), "mermaid": mmd.String()} {
		if strings.ContainsAny(out, "\x1b\x07\u202e") {
			t.Errorf("%s output carries raw control characters:\n%q", name, out)
		}
	}
	if !strings.Contains(text.String(), `ok\u001b]0;pwned\u0007\u202e`) {
		t.Errorf("text does not show the escaped message:\n%s", text.String())
	}
}

// TestTimedOutHop: a hop that passed its deadline shows as timed_out with
// the latency the gateway recorded, is no longer open, and marks the text
// tree; its sibling that replied in time is unaffected.
func TestTimedOutHop(t *testing.T) {
	b := runtreetest.New("run-slow", t0, runtreetest.DemoCast())
	root := b.Start("tomas", "orchestrator", "brief", "", nil)
	slow := b.Invoke(root, "writer", "draft")
	fast := b.Invoke(root, "critic", "review")
	b.Reply(fast, schemas.StateCompleted, "fine", &schemas.Usage{InputTokens: 7})
	b.Advance(45 * time.Second)
	b.TimeOut(slow)
	r := verifiedTree(t, stored(t, b))
	byID := map[string]*runtree.Hop{}
	for _, h := range r.Hops {
		byID[h.HopID] = h
	}
	if h := byID[slow]; h.Status != "timed_out" || h.LatencyMS < 45000 {
		t.Fatalf("timed-out hop: status %q latency %dms", h.Status, h.LatencyMS)
	}
	if h := byID[fast]; h.Status != string(schemas.StateCompleted) || h.Tokens != 7 {
		t.Fatalf("sibling: status %q tokens %d", h.Status, h.Tokens)
	}
	for _, id := range r.OpenHops {
		if id == slow {
			t.Fatal("a timed-out hop is listed as open")
		}
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "timed_out") {
		t.Fatalf("text tree does not show the timeout:\n%s", text.String())
	}
}

// TestTreeFollowsTheFold: what opens and closes a hop and what spend
// counts is ledger.State's to decide, on any ledger: a reply to a hop that
// is already closed, or to no hop at all, counts nothing and changes no
// hop; a refused reply is no hop of its own.
func TestTreeFollowsTheFold(t *testing.T) {
	recs := oddRun(t)
	st, err := ledger.Fold("run-odd", recs)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runtree.Build("run-odd", recs)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != 10 || st.Spent.Tokens != 10 || r.CostByAgent["research"].Tokens != 10 || r.CostByAgent["ghost"].Hops != 0 {
		t.Fatalf("tree counts %d tokens (%+v), the fold %d; want the one reply that closed an open hop", r.Tokens, r.CostByAgent, st.Spent.Tokens)
	}
	if len(r.Hops) != 2 || r.Hops[1].Status != "completed" || r.Hops[1].Tokens != 10 || r.Hops[1].ClosedSeq != 4 {
		t.Fatalf("hops %d; b: %+v", len(r.Hops), r.Hops[1])
	}
	if len(r.OpenHops) != 1 || r.OpenHops[0] != "a" || r.HeadHash != st.Head.Hash || r.Status != ledger.RunRunning {
		t.Fatalf("open %v, head %s (fold %s), status %s", r.OpenHops, r.HeadHash, st.Head.Hash, r.Status)
	}
}

// TestSummaryFollowsTheFold: the runs listing counts what the fold counts
// (it used to add the usage of a reply to a hop the run does not have).
func TestSummaryFollowsTheFold(t *testing.T) {
	recs := oddRun(t)
	s := runtree.NewSummary("run-odd")
	for _, r := range recs {
		if err := s.Add(&r.Event, r.StreamSeq); err != nil {
			t.Fatal(err)
		}
	}
	last := recs[len(recs)-1].Event
	if s.Tokens != 10 || s.Hops != 2 || s.Denied != 0 || s.Events != 8 || s.Status != ledger.RunRunning || s.HeadHash != last.Hash ||
		!s.LastAt.Equal(last.At) || strings.Join(s.Agents, ",") != "orchestrator,research,tomas" || !s.Involves("research") || s.Involves("ghost") {
		t.Fatalf("summary %+v", s)
	}
	if err := s.Add(&recs[2].Event, 0); err == nil || s.Events != 8 {
		t.Fatalf("an event out of order: %v, %d events", err, s.Events)
	}
}

// oddRun is a run no gateway writes, chained all the same: a reply to a
// closed hop, a reply to no hop, a refused reply, a timeout of a closed hop.
func oddRun(t *testing.T) []ledger.Record {
	t.Helper()
	var recs []ledger.Record
	var head ledger.Head
	add := func(typ schemas.EventType, hop string, data any) {
		ev, err := schemas.NewEvent("run-odd", typ, hop, t0.Add(time.Duration(len(recs))*time.Second), data)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ledger.Seal(&ev, head)
		if err != nil {
			t.Fatal(err)
		}
		head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash}
		recs = append(recs, ledger.Record{Raw: raw})
	}
	reply := func(by string, tokens int64) *schemas.HopCompleted {
		return &schemas.HopCompleted{Status: schemas.StateCompleted, By: by, Usage: &schemas.Usage{InputTokens: tokens}}
	}
	add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"})
	add(schemas.EventHopAllowed, "a", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator", Ancestry: []string{"tomas"}})
	add(schemas.EventHopAllowed, "b", &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: "a", From: "orchestrator", To: "research", Depth: 1})
	add(schemas.EventHopCompleted, "b", reply("research", 10))
	add(schemas.EventHopCompleted, "b", reply("research", 1000)) // b is closed
	add(schemas.EventHopCompleted, "zz", reply("ghost", 99))     // no such hop
	add(schemas.EventHopDenied, "b", &schemas.HopDecision{Kind: schemas.KindReply, From: "research", To: "orchestrator", Reason: schemas.ReasonHop})
	add(schemas.EventHopTimedOut, "b", &schemas.HopTimedOut{LatencyMS: 30000}) // closed already
	return decoded(t, recs)
}
