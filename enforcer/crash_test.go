package enforcer_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/schemas"
)

var errCrash = errors.New("simulated crash")

// TestCrashBetweenAppendAndForward stops the enforcer after the ledger
// append and before the forward, starts a new one, and checks the hop is
// delivered exactly once and recorded exactly once.
func TestCrashBetweenAppendAndForward(t *testing.T) {
	var target atomic.Value
	target.Store("")
	var crashed atomic.Int32
	g := startGateway(t, enforcer.Config{Hooks: enforcer.Hooks{AfterAppend: func(run, hop string) error {
		if hop != "" && hop == target.Load().(string) && crashed.Add(1) == 1 {
			return errCrash
		}
		return nil
	}}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)

	env := orch.invoke(run, root, "research")
	target.Store(env.HopID)
	orch.send(run, env)
	recs := waitRun(t, g, run, 3) // the append happened
	if recs[2].Event.HopID != env.HopID || recs[2].Event.Type != schemas.EventHopAllowed {
		t.Fatalf("third event %s %s", recs[2].Event.Type, recs[2].Event.HopID)
	}
	// The hook runs just after the append: the event can be read first.
	brokertest.Eventually(t, 15*time.Second, "the hook after the append", func() bool { return crashed.Load() >= 1 })
	if crashed.Load() != 1 {
		t.Fatalf("hook ran %d times", crashed.Load())
	}
	if n := len(g.Deliveries("research")); n != 0 {
		t.Fatalf("research got %d deliveries before the restart, want 0 (the crash was before the forward)", n)
	}

	g.StopEnforcer()
	e := g.StartEnforcer(enforcer.Config{})
	waitDeliveries(t, g, "research", 1)
	// Once the submission is acked it leaves the work queue: nothing can be
	// redelivered after that, so the count below is final.
	waitFor(t, func() bool { return pendingSubmissions(t, g) == 0 })
	if ds := waitDeliveries(t, g, "research", 1); len(ds) != 1 || ds[0].Context.HopID != env.HopID {
		t.Fatalf("research got %d deliveries, want exactly 1 for %s", len(ds), env.HopID)
	}
	recs = waitRun(t, g, run, 3)
	allowed := 0
	for _, r := range recs {
		if r.Event.HopID == env.HopID {
			allowed++
		}
	}
	if len(recs) != 3 || allowed != 1 {
		t.Fatalf("ledger has %d events, %d for the hop; want 3 and 1", len(recs), allowed)
	}
	if s := e.Stats(); s.Redelivered != 1 || s.Allowed != 0 {
		t.Fatalf("restarted enforcer stats %+v: want the hop recognised as already decided", s)
	}
}

// TestResubmittedEnvelopeDeliveredOnce: the very same signed envelope
// published twice (a client retry past the dedupe window, or a replay) is
// decided once and delivered once, and the second one is acked, not lost.
func TestResubmittedEnvelopeDeliveredOnce(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	wire, err := orch.invoke(run, root, "research").Sign(orch.kp.Sign)
	if err != nil {
		t.Fatal(err)
	}
	orch.sendRaw(g.Subjects.Submit("orchestrator", run), wire)
	waitDeliveries(t, g, "research", 1)
	orch.sendRaw(g.Subjects.Submit("orchestrator", run), wire)
	waitFor(t, func() bool { return g.Enforcer.Stats().Redelivered == 1 })
	waitFor(t, func() bool { return pendingSubmissions(t, g) == 0 })
	if n := len(g.Deliveries("research")); n != 1 {
		t.Fatalf("research got %d deliveries, want 1", n)
	}
	if recs := waitRun(t, g, run, 3); len(recs) != 3 {
		t.Fatalf("ledger has %d events, want 3", len(recs))
	}
}

// TestCrashBetweenRunStartAndDecision: a run whose run.started is in the
// ledger but whose first hop is not (a crash between the two appends) is
// finished by the redelivered submission, without a second run.started.
func TestCrashBetweenRunStartAndDecision(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas := newSender(t, g, "tomas")
	run := schemas.NewID()
	env := tomas.invoke(run, "", "orchestrator")
	start, err := schemas.NewEvent(run, schemas.EventRunStarted, "", time.Now(), &schemas.RunStarted{
		RootHopID: env.HopID, Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas", Workflow: "default",
		Limits: &schemas.RunLimits{MaxDelegationDepth: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Ledger.Append(ctxT(t), ledgerHead(), start); err != nil {
		t.Fatal(err)
	}
	tomas.send(run, env)
	waitDeliveries(t, g, "orchestrator", 1)
	recs := waitRun(t, g, run, 2)
	if !equalTypes(types(recs), schemas.EventRunStarted, schemas.EventHopAllowed) {
		t.Fatalf("ledger %v", types(recs))
	}
}

// TestRestartRebuildsStateFromLedger: a new enforcer, with nothing in
// memory, continues a run from its ledger alone.
func TestRestartRebuildsStateFromLedger(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")
	g.StopEnforcer()
	g.StartEnforcer(enforcer.Config{})
	grandchild := delegate(t, research, run, child, "writer")
	ds := waitDeliveries(t, g, "writer", 1)
	if c := ds[0].Context; c.HopID != grandchild || c.Depth != 2 || c.OnBehalfOf != "tomas" {
		t.Fatalf("context after restart %+v", c)
	}
}

// TestLedgerFullFailsClosed: with no room left in the ledger, a hop is
// never forwarded unrecorded: its sender is told "unavailable" at once.
// When room returns, hops go through again.
func TestLedgerFullFailsClosed(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	ctx := ctxT(t)
	s, err := g.JS.Stream(ctx, g.Subjects.Stream(broker.StreamLedger))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxBytes = int64(info.State.Bytes) // full
	if _, err := g.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	before := len(g.Deliveries("research"))
	orch.send(run, orch.invoke(run, root, "research"))
	ds := waitDeliveries(t, g, "orchestrator", 2)
	d := ds[len(ds)-1]
	if d.Kind != schemas.DeliverDenied || d.Denial == nil || d.Denial.Reason != schemas.ReasonUnavailable {
		t.Fatalf("with the ledger full, the sender got %s %+v; want an unavailable denial", d.Kind, d.Denial)
	}
	if n := len(g.Deliveries("research")); n != before {
		t.Fatalf("a hop was forwarded without its record: research has %d deliveries, had %d", n, before)
	}
	cfg.MaxBytes = -1 // room again
	if _, err := g.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	delegate(t, orch, run, root, "research")
	waitRun(t, g, run, 3) // run.started, the root hop, the delegation; verified
}
