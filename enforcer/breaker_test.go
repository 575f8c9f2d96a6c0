package enforcer_test

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/schemas"
)

// circuitAlerts reads the circuit alerts published about target, in order.
func circuitAlerts(t *testing.T, g *enforcertest.Gateway, target string) []string {
	t.Helper()
	s, err := g.JS.Stream(ctxT(t), g.Subjects.Stream(broker.StreamAlerts))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctxT(t), seq)
		if err != nil {
			break
		}
		if m.Subject != g.Subjects.AlertFleet(schemas.AlertCircuit, target) {
			continue
		}
		var a schemas.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a.Circuit)
	}
	return out
}

// TestCircuitBreaker: two failed replies within the window open research's
// circuit (alerted): the next hop fails fast with reason unavailable.
// After the cool-down one trial hop goes through (half-open) while another
// still fails fast; the trial's success closes the circuit.
func TestCircuitBreaker(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cfg := enforcer.Config{
		Clock: clock, Limits: limits.Run{OnBreach: limits.DenyOnly, MaxWallClockSeconds: -1},
		Targets: map[string]limits.Target{"research": {Breaker: limits.Breaker{Failures: 2, Window: time.Minute, CoolDown: 10 * time.Second}}},
	}
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: basePolicies(t), Config: cfg})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	for i := range 2 {
		hop := delegate(t, orch, run, root, "research")
		research.send(run, research.failed(hop, "orchestrator", "boom", nil))
		waitDeliveries(t, g, "orchestrator", 2+i)
	}
	orch.send(run, orch.invoke(run, root, "research"))
	d := nth(t, g, "orchestrator", 4)
	if d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonUnavailable {
		t.Fatalf("hop to an open circuit: %s %+v", d.Kind, d.Denial)
	}
	waitFor(t, func() bool { return len(circuitAlerts(t, g, "research")) >= 1 })
	if got := circuitAlerts(t, g, "research"); len(got) != 1 || got[0] != "open" {
		t.Fatalf("circuit alerts %v, want [open]", got)
	}
	// The state is the fleet's, not the instance's: a fresh enforcer
	// instance (nothing in memory) fails fast too.
	g.StopEnforcer()
	g.StartEnforcer(cfg)
	orch.send(run, orch.invoke(run, root, "research"))
	if d := nth(t, g, "orchestrator", 5); d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonUnavailable {
		t.Fatalf("hop to an open circuit, through a new instance: %s %+v", d.Kind, d.Denial)
	}
	// Past the cool-down: one trial goes through, the next fails fast.
	offset.Store(int64(11 * time.Second))
	trial := delegate(t, orch, run, root, "research")
	orch.send(run, orch.invoke(run, root, "research"))
	if d := nth(t, g, "orchestrator", 6); d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonUnavailable {
		t.Fatalf("hop while the trial is out: %s %+v", d.Kind, d.Denial)
	}
	research.send(run, research.reply(trial, "orchestrator", nil))
	waitDeliveries(t, g, "orchestrator", 7)
	waitFor(t, func() bool { return len(circuitAlerts(t, g, "research")) == 3 })
	if got := circuitAlerts(t, g, "research"); got[1] != "half_open" || got[2] != "closed" {
		t.Fatalf("circuit alerts %v, want [open half_open closed]", got)
	}
	delegate(t, orch, run, root, "research") // closed: allowed
}
