package enforcer_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

func fallbackIdentities() []broker.Identity {
	ids := timeoutIdentities()
	return append(ids, broker.Identity{ID: "writer-backup", Type: schemas.TypeAgent, Team: "content", RequireSignature: true})
}

func startFallback(t *testing.T, targets map[string]limits.Target, extra ...policy.File) *enforcertest.Gateway {
	t.Helper()
	return enforcertest.Start(t, enforcertest.Options{Identities: fallbackIdentities(), Policies: append(basePolicies(t), extra...),
		Config: enforcer.Config{Targets: targets}})
}

func hopEvents(t *testing.T, g *enforcertest.Gateway, run, hop string, n int) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	waitFor(t, func() bool {
		out = nil
		recs, err := g.Ledger.Read(ctxT(t), run)
		if err != nil {
			return false
		}
		for _, r := range recs {
			if r.Event.HopID == hop {
				out = append(out, r)
			}
		}
		return len(out) >= n
	})
	return out
}

// TestFallbackOnAbsentAgent: the writer has no consumer bound; a hop to it
// is allowed, then re-routed at once to its fallback writer-backup (policy
// evaluated again): both events are in the ledger, the writer gets
// nothing, the backup's reply reaches the caller.
func TestFallbackOnAbsentAgent(t *testing.T) {
	g := startFallback(t, map[string]limits.Target{"writer": {Fallback: []string{"writer-backup"}}})
	tomas, orch, backup := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "writer-backup")
	run, root := openRun(t, tomas)
	env := orch.invoke(run, root, "writer")
	orch.send(run, env)
	ds := waitDeliveries(t, g, "writer-backup", 1)
	if ds[0].Kind != schemas.DeliverInvoke || ds[0].Context.HopID != env.HopID {
		t.Fatalf("writer-backup got %s for %s", ds[0].Kind, ds[0].Context.HopID)
	}
	recs := hopEvents(t, g, run, env.HopID, 2)
	if recs[0].Event.Type != schemas.EventHopAllowed || recs[1].Event.Type != schemas.EventHopRerouted {
		t.Fatalf("hop events %v", types(recs))
	}
	data, _ := recs[1].Event.DecodeData()
	if rr := data.(*schemas.HopRerouted); rr.From != "writer" || rr.To != "writer-backup" || rr.Cause != schemas.RerouteNoConsumer || len(rr.PolicyIDs) == 0 {
		t.Fatalf("hop.rerouted %+v", rr)
	}
	if n := len(g.Deliveries("writer")); n != 0 {
		t.Fatalf("the absent writer got %d deliveries", n)
	}
	backup.send(run, backup.reply(env.HopID, "orchestrator", nil))
	if d := nth(t, g, "orchestrator", 2); d.Kind != schemas.DeliverReply || d.Context.HopID != env.HopID {
		t.Fatalf("orchestrator got %s", d.Kind)
	}
	if h := runState(t, g, run).Hops[env.HopID]; h.To != "writer-backup" || h.Status != "completed" || len(h.Rerouted) != 1 {
		t.Fatalf("hop to %s %s rerouted from %v", h.To, h.Status, h.Rerouted)
	}
	tree, err := runtree.Build(run, waitRun(t, g, run, 4))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	if err := tree.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "re-routed writer → writer-backup (no_consumer)") {
		t.Fatalf("replay shows no re-route:\n%s", text.String())
	}
}

// TestFallbackOnTimeoutSkipsForbidden: the writer is bound but never
// answers; past its timeout the hop is re-routed. The first fallback is
// forbidden by policy and is passed over (recorded); the second takes the
// hop, and the writer is cancelled.
func TestFallbackOnTimeoutSkipsForbidden(t *testing.T) {
	forbid := policy.File{Name: "no-backup.cedar", Src: []byte(`@id("no-writer-backup")
forbid (principal == Agent::"orchestrator", action, resource == Agent::"writer-backup");`)}
	g := startFallback(t, map[string]limits.Target{"writer": {Fallback: []string{"writer-backup", "critic"}}}, forbid)
	stuck := make(chan struct{})
	g.Agent("writer", func(context.Context, *agent.Task) (*agent.Result, error) {
		<-stuck // past its deadline: the gateway's timer decides
		return nil, context.Canceled
	})
	t.Cleanup(func() { close(stuck) }) // before the agent's Close, which waits for the handler
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	env := orch.invoke(run, root, "writer")
	orch.send(run, env)
	ds := waitDeliveries(t, g, "critic", 1)
	if ds[0].Kind != schemas.DeliverInvoke || ds[0].Context.HopID != env.HopID {
		t.Fatalf("critic got %s", ds[0].Kind)
	}
	recs := hopEvents(t, g, run, env.HopID, 2)
	data, _ := recs[1].Event.DecodeData()
	rr, ok := data.(*schemas.HopRerouted)
	if !ok || rr.Cause != schemas.RerouteTimeout || rr.To != "critic" || len(rr.Skipped) != 1 || !strings.Contains(rr.Skipped[0], "no-writer-backup") {
		t.Fatalf("second event of the hop: %s %+v", recs[1].Event.Type, data)
	}
	if n := len(g.Deliveries("writer-backup")); n != 0 {
		t.Fatalf("the forbidden fallback got %d deliveries", n)
	}
	var cancelled bool
	for _, d := range waitDeliveries(t, g, "writer", 2) {
		cancelled = cancelled || d.Kind == schemas.DeliverCancel
	}
	if !cancelled {
		t.Fatal("the writer was not cancelled")
	}
	if d := g.Deliveries("orchestrator"); len(d) != 1 {
		t.Fatalf("orchestrator was told %d things; the re-route is not its business", len(d))
	}
}
