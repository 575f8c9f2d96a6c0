package enforcer_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/schemas"
)

// TestSlowRunDoesNotDelayOthers slows every ledger append of one run and
// checks that other runs keep being decided meanwhile: a run that is slow
// holds one worker, never the consumer or the runs that would have shared
// its shard. With two workers, runs hashed to the slow run's shard used to
// wait for its whole backlog. The assertion is relative: the other runs'
// worst latency is a small part of the time the slow run's backlog takes.
func TestSlowRunDoesNotDelayOthers(t *testing.T) {
	const (
		slowHops  = 15 // below the default edge-repeat limit
		perAppend = 200 * time.Millisecond
		others    = 12
	)
	var slowRun atomic.Value
	slowRun.Store("")
	var slowed atomic.Int32
	g := startGateway(t, enforcer.Config{Shards: 2, Hooks: enforcer.Hooks{AfterAppend: func(run, _ string) error {
		if run == slowRun.Load().(string) {
			slowed.Add(1)
			time.Sleep(perAppend)
		}
		return nil
	}}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)

	slowRun.Store(run)
	began := time.Now()
	before := len(g.Deliveries("research"))
	for range slowHops {
		orch.send(run, orch.invoke(run, root, "research"))
	}

	// Other runs, one after the other, each timed from its submission to
	// its delivery, while the slow run's backlog is worked off.
	var latencies []time.Duration
	for range others {
		t0 := time.Now()
		openRun(t, tomas)
		latencies = append(latencies, time.Since(t0))
	}
	doneOthers := time.Since(began)
	slowedWhileOthers := slowed.Load()

	waitRun(t, g, run, 2+slowHops)
	waitDeliveries(t, g, "research", before+slowHops)
	slowTook := time.Since(began)

	worst := slices.Max(latencies)
	t.Logf("slow run: %d appends, backlog took %s; other runs: worst %s, all %d done after %s (slow run at %d appends)",
		slowed.Load(), slowTook, worst, others, doneOthers, slowedWhileOthers)
	if int(slowedWhileOthers) >= slowHops {
		t.Fatalf("the other runs finished only after the slow run's %d appends: they waited for it", slowedWhileOthers)
	}
	if worst > slowTook/3 {
		t.Fatalf("worst latency of another run %s is more than a third of the slow run's backlog (%s): it waited behind it", worst, slowTook)
	}
	recs := waitRun(t, g, run, 2+slowHops)
	allowed := 0
	for _, r := range recs {
		if r.Event.Type == schemas.EventHopAllowed {
			allowed++
		}
	}
	if allowed != 1+slowHops {
		t.Fatalf("slow run has %d allowed hops, want %d: %v", allowed, 1+slowHops, types(recs))
	}
}
