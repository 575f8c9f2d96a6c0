package enforcer_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/schemas"
)

func spikeAlerts(t *testing.T, g *enforcertest.Gateway) []schemas.Alert {
	t.Helper()
	s, err := g.JS.Stream(ctxT(t), g.Subjects.Stream(broker.StreamAlerts))
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.Alert
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctxT(t), seq)
		if err != nil {
			break
		}
		if !strings.Contains(m.Subject, ".alert.fleet."+schemas.AlertSpendSpike+".") {
			continue
		}
		var a schemas.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// TestSpendSpike: the orchestrator spends $1 a minute, steadily; research
// spends $0.10 twice, then, twelve minutes on (the enforcer's clock), $10
// in a minute through a delegation loop to the writer. Research and its
// team raise a spend-spike alert naming the run and the edge; the steady
// orchestrator raises none.
func TestSpendSpike(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: basePolicies(t), Config: enforcer.Config{
		Clock:       clock,
		Limits:      limits.Run{MaxEdgeRepeats: -1, MaxHops: -1, MaxCostUSD: -1, MaxWallClockSeconds: -1},
		SpendSpikes: limits.SpendSpikes{Factor: 4, Short: time.Minute, Baseline: 10 * time.Minute, MinCostUSD: 0.5, Cooldown: time.Hour, Flush: 20 * time.Millisecond},
	}})
	tomas, orch, research, writer := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research"), newSender(t, g, "writer")
	steadyRun, steadyRoot := openRun(t, tomas)
	loopRun, loopRoot := openRun(t, tomas)
	parent := delegate(t, orch, loopRun, loopRoot, "research")
	orchReplies, writerCalls := 2, 0
	call := func(from *sender, run, parent, to string, replier *sender, cost float64) {
		t.Helper()
		hop := delegate(t, from, run, parent, to)
		replier.send(run, replier.reply(hop, from.id, &schemas.Usage{InputTokens: 10, CostUSD: cost}))
	}
	for m := 0; m <= 12; m++ {
		offset.Store(int64(time.Duration(m) * time.Minute))
		call(orch, steadyRun, steadyRoot, "research", research, 1)
		orchReplies++
		waitDeliveries(t, g, "orchestrator", orchReplies)
		if m == 0 || m == 5 {
			call(research, loopRun, parent, "writer", writer, 0.1)
			writerCalls++
		}
	}
	// Minute 12: the loop.
	for range 20 {
		call(research, loopRun, parent, "writer", writer, 0.5)
		writerCalls++
	}
	waitDeliveries(t, g, "research", 13+1+writerCalls)
	var alerts []schemas.Alert
	waitFor(t, func() bool { alerts = spikeAlerts(t, g); return len(alerts) >= 2 })
	time.Sleep(100 * time.Millisecond)
	alerts = spikeAlerts(t, g)
	var agentAlert *schemas.Alert
	for i, a := range alerts {
		if a.Agent == "orchestrator" || a.Team == "platform" {
			t.Fatalf("the steady orchestrator raised a spike alert: %+v", a)
		}
		if a.Scope == "agent" && a.Agent == "research" {
			agentAlert = &alerts[i]
		}
	}
	if agentAlert == nil || len(alerts) != 2 {
		t.Fatalf("alerts %+v; want one for the agent research and one for its team", alerts)
	}
	a := agentAlert
	if a.Kind != schemas.AlertSpendSpike || a.Rate < 0.5 || a.Baseline <= 0 || a.Factor != 4 ||
		len(a.TopRuns) == 0 || a.TopRuns[0].Key != loopRun || len(a.TopEdges) == 0 || a.TopEdges[0].Key != "research->writer" {
		t.Fatalf("research's alert: %+v", a)
	}
}

// TestSpendSpikeFleetWide: two enforcer instances on one NATS, each
// owning half of the run partitions; research's loop runs in two runs,
// one on each instance, so that each instance alone sees $5 of the $10 a
// minute, below min_cost_usd ($6). The fleet's counters see the $10: the
// spike is alerted once for research and once for its team, naming both
// runs (each instance's share), and neither instance alerts again.
func TestSpendSpikeFleetWide(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	h := &handled{runs: map[string]map[string]int{}}
	cfg := func(instance int, name string) enforcer.Config {
		c := partitionConfig(instance, h.hook(name, nil))
		c.Clock = clock
		c.Limits = limits.Run{MaxEdgeRepeats: -1, MaxHops: -1, MaxCostUSD: -1, MaxWallClockSeconds: -1}
		c.SpendSpikes = limits.SpendSpikes{Factor: 4, Short: time.Minute, Baseline: 10 * time.Minute, MinCostUSD: 6,
			Cooldown: time.Hour, Flush: 20 * time.Millisecond}
		return c
	}
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: basePolicies(t),
		Partitions: testPartitions, Config: cfg(0, "a")})
	secondEnforcer(t, g, cfg(1, "b"))
	tomas, orch, research, writer := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research"), newSender(t, g, "writer")
	// Instance a prefers partition 0, b partition 1.
	runA, runB := runIn(0), runIn(1)
	parents := map[string]string{}
	for _, run := range []string{runA, runB} {
		root := openRunAs(t, tomas, run)
		parents[run] = delegate(t, orch, run, root, "research")
	}
	writes := 0
	call := func(run string, cost float64) {
		t.Helper()
		hop := delegate(t, research, run, parents[run], "writer")
		writer.send(run, writer.reply(hop, "research", &schemas.Usage{InputTokens: 10, CostUSD: cost}))
		writes++
	}
	for _, m := range []int{0, 5} { // a baseline of cents
		offset.Store(int64(time.Duration(m) * time.Minute))
		call(runA, 0.05)
		call(runB, 0.05)
	}
	offset.Store(int64(12 * time.Minute))
	for range 10 { // the loop: $0.5 a call, on both instances
		call(runA, 0.5)
		call(runB, 0.5)
	}
	waitDeliveries(t, g, "research", 2+writes)
	if a, b := h.by(runA), h.by(runB); len(a) != 1 || a["a"] == 0 || len(b) != 1 || b["b"] == 0 {
		t.Fatalf("run A was handled by %v, run B by %v: want each by one instance, A by a and B by b", a, b)
	}
	var alerts []schemas.Alert
	waitFor(t, func() bool { alerts = spikeAlerts(t, g); return len(alerts) >= 2 })
	time.Sleep(200 * time.Millisecond) // ten more flushes of each instance: no second alert
	alerts = spikeAlerts(t, g)
	if len(alerts) != 2 {
		t.Fatalf("%d spend-spike alerts, want one for research and one for its team: %+v", len(alerts), alerts)
	}
	for _, a := range alerts {
		if a.Scope == "agent" && a.Agent != "research" || a.Scope == "team" && a.Team != "research" {
			t.Fatalf("alert %+v", a)
		}
		runs := map[string]float64{}
		for _, r := range a.TopRuns {
			runs[r.Key] = r.CostUSD
		}
		// It alerts once the fleet's spend passes $6, which takes both
		// instances' ($5 at most each).
		if len(a.TopEdges) == 0 || a.TopEdges[0].Key != "research->writer" || a.TopEdges[0].CostUSD < 6 || runs[runA] <= 0.1 || runs[runB] <= 0.1 {
			t.Fatalf("alert %+v: want both runs and the research->writer edge with the fleet's spend", a)
		}
	}
}

// TestSpendWaitsForTheBucket: while the spend bucket cannot be written,
// the spend an instance counted stays pending; the flush after the bucket
// is back adds it and alerts the spike it shows.
func TestSpendWaitsForTheBucket(t *testing.T) {
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: basePolicies(t), Config: enforcer.Config{
		Limits: limits.Run{MaxEdgeRepeats: -1, MaxHops: -1, MaxCostUSD: -1, MaxWallClockSeconds: -1},
		// Flushed by the test only.
		SpendSpikes: limits.SpendSpikes{Factor: 4, Short: time.Minute, Baseline: 10 * time.Minute, MinCostUSD: 0.5,
			Cooldown: time.Hour, Warmup: time.Nanosecond, Flush: time.Hour},
	}})
	bucket := g.Subjects.Bucket(broker.BucketSpend)
	if err := g.JS.DeleteKeyValue(ctxT(t), bucket); err != nil {
		t.Fatal(err)
	}
	tomas, orch, research, writer := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research"), newSender(t, g, "writer")
	run, root := openRun(t, tomas)
	parent := delegate(t, orch, run, root, "research")
	for range 4 {
		hop := delegate(t, research, run, parent, "writer")
		writer.send(run, writer.reply(hop, "research", &schemas.Usage{InputTokens: 10, CostUSD: 0.5}))
	}
	waitDeliveries(t, g, "research", 1+4)
	if err := g.Enforcer.FlushSpend(ctxT(t)); err == nil {
		t.Fatal("a flush without the spend bucket reported no error")
	}
	if a := spikeAlerts(t, g); len(a) != 0 {
		t.Fatalf("alerts without the bucket: %+v", a)
	}
	if _, err := g.JS.CreateKeyValue(ctxT(t), jetstream.KeyValueConfig{Bucket: bucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	if err := g.Enforcer.FlushSpend(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	alerts := spikeAlerts(t, g)
	if len(alerts) != 2 || alerts[0].Rate < 1.9 || alerts[0].TopRuns[0].Key != run || alerts[0].TopRuns[0].Hops != 4 {
		t.Fatalf("alerts once the bucket is back: %+v; want research's and its team's with the $2 counted while it was away", alerts)
	}
}
