package enforcer_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// basePolicies are the example policies without the one that forbids
// re-invoking the orchestrator: the limits must stop loops on their own.
func basePolicies(t testing.TB) []policy.File {
	var out []policy.File
	for _, f := range examplePolicies(t) {
		if !strings.Contains(f.Name, "no-reinvoke") {
			out = append(out, f)
		}
	}
	return out
}

func startLoose(t *testing.T, cfg enforcer.Config, extra ...policy.File) *enforcertest.Gateway {
	t.Helper()
	return enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: append(basePolicies(t), extra...), Config: cfg})
}

func runState(t *testing.T, g *enforcertest.Gateway, run string) *ledger.State {
	t.Helper()
	st, err := g.Ledger.Load(ctxT(t), run)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lastDelivery waits for id's n-th delivery and returns it.
func nth(t *testing.T, g *enforcertest.Gateway, id string, n int) *schemas.Delivery {
	t.Helper()
	return waitDeliveries(t, g, id, n)[n-1]
}

func alertsOf(t *testing.T, g *enforcertest.Gateway, run string) []schemas.Alert {
	t.Helper()
	ctx := ctxT(t)
	s, err := g.JS.Stream(ctx, "ALERTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, g.Subjects.Alert(run))
	if err != nil {
		return nil
	}
	var a schemas.Alert
	if err := json.Unmarshal(m.Data, &a); err != nil {
		t.Fatal(err)
	}
	return []schemas.Alert{a}
}

func breaches(st *ledger.State) []string {
	var out []string
	for _, b := range st.Breaches {
		out = append(out, b.Limit+"/"+b.Action)
	}
	return out
}

// TestDepthBreachHaltsRunAndCancelsOpenHops: the hop past the depth limit
// is denied, the run is halted, its open hops are cancelled at their
// targets and their callers told, and an alert is published.
func TestDepthBreachHaltsRunAndCancelsOpenHops(t *testing.T) {
	g := startLoose(t, enforcer.Config{Limits: limits.Run{MaxDelegationDepth: 1}})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")
	research.send(run, research.invoke(run, child, "writer"))

	if d := nth(t, g, "research", 2); d.Kind != schemas.DeliverDenied && d.Kind != schemas.DeliverCancel {
		t.Fatalf("research's second delivery is %s", d.Kind)
	}
	waitFor(t, func() bool { return runState(t, g, run).Halted })
	st := runState(t, g, run)
	if got := breaches(st); len(got) != 1 || got[0] != "max_delegation_depth/halt" {
		t.Fatalf("breaches %v", got)
	}
	if len(st.Open) != 0 || st.Hops[root].Status != "canceled" || st.Hops[child].Status != "canceled" {
		t.Fatalf("open hops after the halt: %d (root %s, child %s)", len(st.Open), st.Hops[root].Status, st.Hops[child].Status)
	}
	// Targets of open hops get a cancel; their callers a halted denial.
	var researchKinds, orchKinds []schemas.DeliveryKind
	for _, d := range waitDeliveries(t, g, "research", 3) {
		researchKinds = append(researchKinds, d.Kind)
	}
	for _, d := range waitDeliveries(t, g, "orchestrator", 3) {
		orchKinds = append(orchKinds, d.Kind)
	}
	ds := waitDeliveries(t, g, "tomas", 1)
	if !containsKind(researchKinds, schemas.DeliverCancel) || !containsKind(orchKinds, schemas.DeliverCancel) || !containsKind(orchKinds, schemas.DeliverDenied) {
		t.Fatalf("research got %v, orchestrator %v: want cancels for both open hops and a halted notice", researchKinds, orchKinds)
	}
	if ds[0].Kind != schemas.DeliverDenied || ds[0].Denial.Reason != schemas.ReasonHalted || ds[0].Context.HopID != root {
		t.Fatalf("tomas got %s %+v; want a halted notice for the root hop", ds[0].Kind, ds[0].Denial)
	}
	alerts := alertsOf(t, g, run)
	if len(alerts) != 1 || alerts[0].Limit != "max_delegation_depth" || alerts[0].Value != 2 || alerts[0].Bound != 1 ||
		alerts[0].From != "research" || alerts[0].To != "writer" || len(alerts[0].OpenHops) != 2 {
		t.Fatalf("alert %+v", alerts)
	}
	// Every later hop of the run is denied as halted.
	orch.send(run, orch.reply(root, "tomas", nil))
	if d := nth(t, g, "orchestrator", 4); d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonHalted {
		t.Fatalf("reply after the halt: %s %+v", d.Kind, d.Denial)
	}
}

func containsKind(ks []schemas.DeliveryKind, k schemas.DeliveryKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// TestCycleDeniedAsLoop: without the deny-orchestrator policy, research
// re-invoking the orchestrator closes a cycle: denied as loop, run halted.
func TestCycleDeniedAsLoop(t *testing.T) {
	g := startLoose(t, enforcer.Config{})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")
	research.send(run, research.invoke(run, child, "orchestrator"))
	ds := waitDeliveries(t, g, "research", 2)
	var denial *schemas.Denial
	for _, d := range ds {
		if d.Kind == schemas.DeliverDenied {
			denial = d.Denial
		}
	}
	if denial == nil || denial.Reason != schemas.ReasonLoop || !strings.Contains(denial.Message, "cycle") {
		t.Fatalf("denial %+v, want loop", denial)
	}
	waitFor(t, func() bool { return runState(t, g, run).Halted })
	if got := breaches(runState(t, g, run)); len(got) != 1 || got[0] != "cycle/halt" {
		t.Fatalf("breaches %v", got)
	}
}

// TestPolicyAllowsBoundedReentry: a permit annotated @cycle("allow") lets
// research re-enter the orchestrator once; the second time it is a loop.
func TestPolicyAllowsBoundedReentry(t *testing.T) {
	reentry := policy.File{Name: "reentry.cedar", Src: []byte(`
@id("research-may-re-plan-once")
@cycle("allow")
permit (principal == Agent::"research", action == Action::"invoke", resource == Agent::"orchestrator")
when { context.is_cycle && context.edge_calls < 1 && context.ancestry.contains("tomas") };

@id("the-re-plan-may-use-research-again")
@cycle("allow")
permit (principal == Agent::"orchestrator", action == Action::"invoke", resource == Agent::"research")
when { context.is_cycle && context.edge_calls < 2 };
`)}
	g := startLoose(t, enforcer.Config{Limits: limits.Run{OnBreach: limits.DenyOnly}}, reentry)
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")
	again := delegate(t, research, run, child, "orchestrator") // allowed re-entry, depth 2
	if d := nth(t, g, "orchestrator", 2); d.Context.HopID != again || d.Context.Depth != 2 {
		t.Fatalf("re-entry delivery %+v", d.Context)
	}
	child2 := delegate(t, orch, run, again, "research")
	research.send(run, research.invoke(run, child2, "orchestrator"))
	ds := waitDeliveries(t, g, "research", 3)
	if d := ds[2]; d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonLoop {
		t.Fatalf("second re-entry: %s %+v, want a loop denial", d.Kind, d.Denial)
	}
	recs := waitRun(t, g, run, 5)
	if hd := decision(t, recs[3]); !hd.Cycle || !slices.Contains(hd.PolicyIDs, "research-may-re-plan-once") {
		t.Fatalf("allowed re-entry recorded as %+v", hd)
	}
}

func TestEdgeRepeats(t *testing.T) {
	g := startLoose(t, enforcer.Config{Limits: limits.Run{MaxEdgeRepeats: 3, OnBreach: limits.DenyOnly}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	for range 3 {
		delegate(t, orch, run, root, "research")
	}
	orch.send(run, orch.invoke(run, root, "research"))
	d := nth(t, g, "orchestrator", 2)
	if d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonLoop || !strings.Contains(d.Denial.Message, "max_edge_repeats 3") {
		t.Fatalf("4th edge: %s %+v", d.Kind, d.Denial)
	}
	// Other edges are still fine.
	delegate(t, orch, run, root, "writer")
}

func TestHopBudget(t *testing.T) {
	g := startLoose(t, enforcer.Config{Limits: limits.Run{MaxHops: 3, OnBreach: limits.DenyOnly}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas) // hop 1
	delegate(t, orch, run, root, "research")
	delegate(t, orch, run, root, "writer")
	orch.send(run, orch.invoke(run, root, "critic"))
	if d := nth(t, g, "orchestrator", 2); d.Denial == nil || d.Denial.Reason != schemas.ReasonBudget || !strings.Contains(d.Denial.Message, "max_hops 3") {
		t.Fatalf("4th hop: %s %+v", d.Kind, d.Denial)
	}
}

// TestTokenBudgetTripsOnSettle: spend is what replies report; the reply
// that takes the run past max_total_tokens records the breach and halts.
func TestTokenBudgetTripsOnSettle(t *testing.T) {
	g := startLoose(t, enforcer.Config{Limits: limits.Run{MaxTotalTokens: 1000}})
	tomas, orch, research, writer := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research"), newSender(t, g, "writer")
	run, root := openRun(t, tomas)
	a := delegate(t, orch, run, root, "research")
	research.send(run, research.reply(a, "orchestrator", &schemas.Usage{InputTokens: 400, OutputTokens: 200}))
	nth(t, g, "orchestrator", 2)
	b := delegate(t, orch, run, root, "writer") // 600 spent: still admitted
	writer.send(run, writer.reply(b, "orchestrator", &schemas.Usage{InputTokens: 500, OutputTokens: 100}))
	waitFor(t, func() bool { return runState(t, g, run).Halted })
	st := runState(t, g, run)
	if st.Spent.Tokens != 1200 || len(st.Breaches) != 1 || st.Breaches[0].Limit != "max_total_tokens" || st.Breaches[0].Value != 1200 {
		t.Fatalf("spent %d, breaches %+v", st.Spent.Tokens, st.Breaches)
	}
	// The reply itself went through: the spend happened.
	if d := nth(t, g, "orchestrator", 3); d.Kind != schemas.DeliverReply || d.Context.HopID != b {
		t.Fatalf("writer's reply: %s for %s", d.Kind, d.Context.HopID)
	}
	before := len(g.Deliveries("orchestrator"))
	orch.send(run, orch.invoke(run, root, "critic"))
	if d := nth(t, g, "orchestrator", before+1); d.Denial == nil || d.Denial.Reason != schemas.ReasonHalted {
		t.Fatalf("after the breach: %s %+v", d.Kind, d.Denial)
	}
}

// TestConcurrentHopsCannotOverspend: many invokes of one run, published at
// once, each reserving $1 against a $5 cap: exactly five are admitted.
func TestConcurrentHopsCannotOverspend(t *testing.T) {
	g := startLoose(t, enforcer.Config{Limits: limits.Run{MaxCostUSD: 5, OnBreach: limits.DenyOnly, MaxEdgeRepeats: 100}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := orch.invoke(run, root, []string{"research", "writer", "critic"}[i%3])
			env.Estimate = &schemas.Usage{CostUSD: 1}
			orch.send(run, env)
		}()
	}
	wg.Wait()
	// Each budget denial is followed by its breach event: wait for the n
	// decisions themselves.
	waitFor(t, func() bool { st := runState(t, g, run); return st.Allowed+st.Denied == 1+n })
	recs := waitRun(t, g, run, 2+n)
	var admitted int
	var reserved float64
	denied := 0
	for _, r := range recs[2:] {
		switch r.Event.Type {
		case schemas.EventHopAllowed:
			admitted++
			reserved += decision(t, r).Estimate.Cost()
		case schemas.EventHopDenied:
			if decision(t, r).Reason != schemas.ReasonBudget {
				t.Fatalf("denied for %s", decision(t, r).Reason)
			}
			denied++
		}
	}
	if admitted != 5 || reserved > 5 || denied != n-5 {
		t.Fatalf("admitted %d hops reserving $%g, denied %d; want 5, at most $5, %d", admitted, reserved, denied, n-5)
	}
}

func TestRateLimit(t *testing.T) {
	g := startLoose(t, enforcer.Config{
		Agents: map[string]limits.Agent{"orchestrator": {InvokeRateLimit: ratelimit.Rate{Count: 3, Period: time.Hour}}},
		Limits: limits.Run{OnBreach: limits.DenyOnly},
	})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	for range 3 {
		delegate(t, orch, run, root, "research")
	}
	orch.send(run, orch.invoke(run, root, "writer"))
	d := nth(t, g, "orchestrator", 2)
	if d.Denial == nil || d.Denial.Reason != schemas.ReasonRate || !strings.Contains(d.Denial.Message, "3/h") {
		t.Fatalf("4th invoke: %s %+v", d.Kind, d.Denial)
	}
}

// TestRateLimitHoldsAcrossTwoEnforcers: two enforcer instances share the
// SUBMIT work queue; an agent still gets exactly its limit in total.
func TestRateLimitHoldsAcrossTwoEnforcers(t *testing.T) {
	cfg := enforcer.Config{
		Agents: map[string]limits.Agent{"orchestrator": {InvokeRateLimit: ratelimit.Rate{Count: 5, Period: time.Hour}}},
		Limits: limits.Run{OnBreach: limits.DenyOnly}, Shards: 2,
	}
	g := startLoose(t, cfg)
	_, js2 := g.NewConn()
	second, err := enforcer.New(js2, g.Subjects, enforcer.Registry{Dir: g.Dir, Engine: g.Engine}, withAckWait(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer second.Stop(context.Background())

	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	const runs = 24
	var ids []string
	for range runs {
		run, root := openRun(t, tomas)
		ids = append(ids, run)
		orch.send(run, orch.invoke(run, root, "research"))
	}
	waitFor(t, func() bool { return pendingSubmissions(t, g) == 0 })
	allowed := 0
	for _, run := range ids {
		st := runState(t, g, run)
		allowed += st.Edges[ledger.Edge{From: "orchestrator", To: "research"}]
	}
	a, b := g.Enforcer.Stats(), second.Stats()
	if allowed != 5 {
		t.Fatalf("orchestrator got %d invokes through two enforcers, want its limit 5 (stats %+v / %+v)", allowed, a, b)
	}
	if a.Allowed+a.Denied == 0 || b.Allowed+b.Denied == 0 {
		t.Fatalf("one instance did no work (%+v / %+v): the test did not exercise two", a, b)
	}
}

func withAckWait(c enforcer.Config) enforcer.Config {
	c.AckWait = 2 * time.Second
	return c
}

// timeoutIdentities give the writer a 1 s timeout.
func timeoutIdentities() []broker.Identity {
	ids := append([]broker.Identity(nil), demoIdentities...)
	for i := range ids {
		if ids[i].ID == "writer" {
			ids[i].Timeout = time.Second
		}
	}
	return ids
}

// TestHopTimesOut: the writer never replies; past its deadline the hop is
// recorded as timed out, the caller is told, the writer gets a cancel.
func TestHopTimesOut(t *testing.T) {
	g := enforcertest.Start(t, enforcertest.Options{Identities: timeoutIdentities(), Policies: examplePolicies(t)})
	tomas, orch, writer := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "writer")
	run, root := openRun(t, tomas)
	hop := delegate(t, orch, run, root, "writer")
	d := nth(t, g, "orchestrator", 2)
	if d.Kind != schemas.DeliverTimeout || d.Context.HopID != hop {
		t.Fatalf("orchestrator got %s for %s, want a timeout for %s", d.Kind, d.Context.HopID, hop)
	}
	if c := nth(t, g, "writer", 2); c.Kind != schemas.DeliverCancel || c.Context.HopID != hop {
		t.Fatalf("writer got %s", c.Kind)
	}
	st := runState(t, g, run)
	if st.Hops[hop].Status != ledger.HopTimedOut {
		t.Fatalf("hop status %s", st.Hops[hop].Status)
	}
	if late := st.Hops[hop].ClosedAt.Sub(st.Hops[hop].Deadline); late < 0 || late > 2*time.Second {
		t.Fatalf("timed out %s after the deadline", late)
	}
	// A reply after the timeout is refused.
	writer.send(run, writer.reply(hop, "orchestrator", nil))
	if d := nth(t, g, "writer", 3); d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonHop {
		t.Fatalf("late reply: %s %+v", d.Kind, d.Denial)
	}
}

// TestTimeoutSurvivesEnforcerRestart: the deadline passes while no enforcer
// runs; the next one times the hop out (the timer is kept by the server).
func TestTimeoutSurvivesEnforcerRestart(t *testing.T) {
	g := enforcertest.Start(t, enforcertest.Options{Identities: timeoutIdentities(), Policies: examplePolicies(t)})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	hop := delegate(t, orch, run, root, "writer")
	g.StopEnforcer()
	st := runState(t, g, run)
	waitFor(t, func() bool { return time.Now().After(st.Hops[hop].Deadline.Add(1500 * time.Millisecond)) })
	if n := len(g.Deliveries("orchestrator")); n != 1 {
		t.Fatalf("orchestrator got %d deliveries while no enforcer ran", n)
	}
	g.StartEnforcer(enforcer.Config{})
	if d := nth(t, g, "orchestrator", 2); d.Kind != schemas.DeliverTimeout || d.Context.HopID != hop {
		t.Fatalf("after restart: %s for %s", d.Kind, d.Context.HopID)
	}
}

// TestWallClock: a run that outlives max_wall_clock_seconds is halted by its
// timer, even with nothing else happening.
func TestWallClock(t *testing.T) {
	g := startLoose(t, enforcer.Config{Limits: limits.Run{MaxWallClockSeconds: 1}})
	tomas := newSender(t, g, "tomas")
	run, _ := openRun(t, tomas)
	waitFor(t, func() bool { return runState(t, g, run).Halted })
	st := runState(t, g, run)
	if len(st.Breaches) != 1 || st.Breaches[0].Limit != "max_wall_clock_seconds" || st.Breaches[0].Value < 1 {
		t.Fatalf("breaches %+v", st.Breaches)
	}
	// The alert is published after the halt is recorded.
	waitFor(t, func() bool { return len(alertsOf(t, g, run)) > 0 })
	if a := alertsOf(t, g, run); len(a) != 1 || a[0].Limit != "max_wall_clock_seconds" {
		t.Fatalf("alert %+v", a)
	}
}

func TestKillSwitch(t *testing.T) {
	opPub, opKP := mustOtherKey(t)
	g := startLoose(t, enforcer.Config{Operators: map[string]string{"ops": opPub}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	delegate(t, orch, run, root, "research")

	send := func(kp nkeys.KeyPair, by string) schemas.HaltReply {
		return signedControl[schemas.HaltReply](t, g, kp.Sign, g.Subjects.CtlHalt(run),
			&schemas.HaltRequest{Version: 1, Cmd: schemas.CmdHalt, RunID: run, By: by, Reason: "runaway spend", SentAt: time.Now().UTC()})
	}
	_, forger := mustOtherKey(t)
	if r := send(forger, "ops"); r.OK || !strings.Contains(r.Error, "signature") {
		t.Fatalf("forged halt: %+v", r)
	}
	if r := send(forger, "mallory"); r.OK || !strings.Contains(r.Error, "not a registered operator") {
		t.Fatalf("unknown operator: %+v", r)
	}
	if runState(t, g, run).Halted {
		t.Fatal("run halted by a refused request")
	}
	r := send(opKP, "ops")
	if !r.OK || len(r.OpenHops) != 2 {
		t.Fatalf("halt: %+v", r)
	}
	st := runState(t, g, run)
	if !st.Halted || st.HaltedBy != "ops" || len(st.Open) != 0 {
		t.Fatalf("state halted=%v by=%q open=%d", st.Halted, st.HaltedBy, len(st.Open))
	}
	if a := alertsOf(t, g, run); len(a) != 1 || a[0].By != "ops" || a[0].Reason != schemas.ReasonOperator || a[0].Message != "runaway spend" {
		t.Fatalf("alert %+v", a)
	}
	if r := send(opKP, "ops"); !r.OK || !r.Already {
		t.Fatalf("second halt: %+v", r)
	}
}

// TestAuditMode: a caller in audit mode is never denied by policy or
// limits; what would have been denied is in the ledger.
func TestAuditMode(t *testing.T) {
	g := enforcertest.Start(t, enforcertest.Options{
		Identities: demoIdentities, Policies: examplePolicies(t),
		AuditPolicies: []policy.File{{Name: "strict.cedar", Src: []byte(`@id("strict-no-critic") forbid (principal, action, resource == Agent::"critic");` +
			"\n" + `@id("strict-allow") permit (principal, action, resource);`)}},
		Config: enforcer.Config{Agents: map[string]limits.Agent{"research": {Mode: limits.ModeAudit}}},
	})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")
	// Forbidden by policy and a cycle: in audit mode it goes through.
	again := delegate(t, research, run, child, "orchestrator")
	recs := waitRun(t, g, run, 4)
	hd := decision(t, recs[3])
	if recs[3].Event.Type != schemas.EventHopAllowed || recs[3].Event.HopID != again || len(hd.Audit) != 2 ||
		hd.Audit[0].Reason != schemas.ReasonPolicy || hd.Audit[1].Reason != schemas.ReasonLoop {
		t.Fatalf("audited hop recorded as %s %+v", recs[3].Event.Type, hd.Audit)
	}
	// An enforcing caller is still denied; the audit policy set only notes.
	orch.send(run, orch.invoke(run, root, "critic"))
	recs = waitRun(t, g, run, 5)
	hd = decision(t, recs[4])
	if recs[4].Event.Type != schemas.EventHopAllowed || len(hd.Audit) != 1 || hd.Audit[0].PolicyIDs[0] != "strict-no-critic" {
		t.Fatalf("orchestrator -> critic recorded as %s %+v", recs[4].Event.Type, hd.Audit)
	}
	if runState(t, g, run).Halted {
		t.Fatal("audit findings halted the run")
	}
}

// TestEndedRunCarriesNoTimer: a run's schedule is removed from TIMERS when
// the run completes, so an ended run carries no timer.
func TestEndedRunCarriesNoTimer(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	s, err := g.JS.Stream(ctxT(t), g.Subjects.Stream(broker.StreamTimers))
	if err != nil {
		t.Fatal(err)
	}
	schedule := g.Subjects.TimerSchedule(run, broker.TimerRunKey)
	waitFor(t, func() bool { _, err := s.GetLastMsgForSubject(ctxT(t), schedule); return err == nil })
	orch.send(run, orch.reply(root, "tomas", nil))
	waitFor(t, func() bool { return runState(t, g, run).Completed })
	waitFor(t, func() bool {
		_, err := s.GetLastMsgForSubject(ctxT(t), schedule)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
}
