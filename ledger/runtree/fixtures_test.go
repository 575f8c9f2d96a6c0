package runtree_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

var demoLimits = &schemas.RunLimits{MaxDelegationDepth: 5, MaxHops: 1000, MaxTotalTokens: 500000, MaxCostUSD: 25,
	MaxWallClockSeconds: 600, MaxEdgeRepeats: 20, OnBreach: "halt_and_alert"}

// incident is the demo's incident, governed: research's re-invocation of
// the orchestrator is denied by policy and the run completes.
func incident(t testing.TB) []ledger.Record {
	t.Helper()
	b := runtreetest.New("run-incident", t0, runtreetest.DemoCast()).Trace(traceID)
	root := b.Start("tomas", "orchestrator", "Write a brief on governance for agent-to-agent traffic", "research-brief", demoLimits,
		"users-start-runs-at-entry-agents")
	res := b.Invoke(root, "research", "Find sources: governance", "agents-delegate-to-agents")
	b.Deny(res, "orchestrator", "retry: search failed, re-plan the brief", runtreetest.Denial{Reason: schemas.ReasonPolicy,
		Message: "forbidden by policy [no-agent-invokes-an-orchestrator]", PolicyIDs: []string{"no-agent-invokes-an-orchestrator"}})
	b.Reply(res, schemas.StateCompleted, "found 7 sources (attempt 1)", &schemas.Usage{InputTokens: 2400, OutputTokens: 600, CostUSD: 0.030})
	w := b.Invoke(root, "writer", "Draft the brief: governance", "agents-delegate-to-agents")
	b.Reply(w, schemas.StateCompleted, "drafted the brief", &schemas.Usage{InputTokens: 1800, OutputTokens: 900, CostUSD: 0.027})
	c := b.Invoke(root, "critic", "Review the draft: governance", "agents-delegate-to-agents")
	b.Reply(c, schemas.StateCompleted, "reviewed the draft: two fixes", &schemas.Usage{InputTokens: 900, OutputTokens: 200, CostUSD: 0.011})
	b.Reply(root, schemas.StateCompleted, "brief ready (3 steps)", &schemas.Usage{InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015})
	b.Complete()
	return stored(t, b)
}

// loop is the loop scenario: without the deny policy the re-invocation
// closes a cycle, trips the cycle limit and the run halts.
func loop(t testing.TB) []ledger.Record {
	t.Helper()
	b := runtreetest.New("run-loop", t0, runtreetest.DemoCast()).Trace(traceID)
	root := b.Start("tomas", "orchestrator", "Write a brief on governance", "research-brief", demoLimits, "users-start-runs-at-entry-agents")
	res := b.Invoke(root, "research", "Find sources: governance", "agents-delegate-to-agents")
	den := b.Deny(res, "orchestrator", "retry: search failed, re-plan the brief", runtreetest.Denial{Reason: schemas.ReasonLoop,
		Message:   "orchestrator is already in this hop's ancestry [tomas orchestrator research]: research -> orchestrator closes a cycle",
		PolicyIDs: []string{"agents-delegate-to-agents"}, Breach: &schemas.Breach{Limit: "cycle", Value: 1, Bound: 0}})
	b.Breach(schemas.RunLimitBreached{Limit: "cycle", Value: 1, Bound: 0, Reason: schemas.ReasonLoop, From: "research", To: "orchestrator",
		Action: "halt", HopID: den})
	b.Halt("gateway", "cycle tripped on research -> orchestrator (1 > 0)", "cycle")
	return stored(t, b)
}

// stored returns the builder's records as a reader gets them from
// storage: raw bytes only, nothing decoded yet.
func stored(t testing.TB, b *runtreetest.Builder) []ledger.Record {
	t.Helper()
	recs, err := b.Records()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]ledger.Record, len(recs))
	for i, r := range recs {
		out[i] = ledger.Record{Raw: r.Raw}
	}
	return out
}

// decoded returns records decoded from their raw bytes, as ledger.Read
// returns them.
func decoded(t testing.TB, recs []ledger.Record) []ledger.Record {
	t.Helper()
	out := make([]ledger.Record, len(recs))
	for i, r := range recs {
		ev, err := schemas.DecodeEvent(r.Raw)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = ledger.Record{Event: *ev, Raw: r.Raw, StreamSeq: r.StreamSeq}
	}
	return out
}

// demoKeys are the keys of the demo cast, as runtreetest signs with them.
func demoKeys(t testing.TB) ledger.Keys {
	t.Helper()
	keys := ledger.Keys{}
	for _, m := range runtreetest.DemoCast() {
		k, err := broker.ParsePublicKey(runtreetest.PublicKey(m.ID))
		if err != nil {
			t.Fatal(err)
		}
		keys[m.ID] = append(keys[m.ID], k)
	}
	return keys
}

func runOf(t testing.TB, recs []ledger.Record) string {
	t.Helper()
	ev, err := schemas.DecodeEvent(recs[0].Raw)
	if err != nil {
		t.Fatal(err)
	}
	return ev.RunID
}

func verifiedTree(t testing.TB, recs []ledger.Record) *runtree.Run {
	t.Helper()
	v := ledger.Verify(runOf(t, recs), recs, demoKeys(t))
	if !v.OK() || v.Signatures != ledger.SigVerified {
		t.Fatalf("fixture does not verify: %v (signatures %s)", v.Err(), v.Signatures)
	}
	r, err := runtree.FromVerified(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
