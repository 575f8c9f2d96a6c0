package enforcer_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

func (s *sender) failed(hop, to, class string, usage *schemas.Usage) *schemas.Envelope {
	env := s.reply(hop, to, usage)
	env.Result = &schemas.Result{Status: schemas.StateFailed, Error: "upstream said no", ErrorClass: class}
	return env
}

func noJitter() *float64 { z := 0.0; return &z }

func startRetrying(t *testing.T, targets map[string]limits.Target) *enforcertest.Gateway {
	t.Helper()
	return enforcertest.Start(t, enforcertest.Options{Identities: timeoutIdentities(), Policies: basePolicies(t),
		Config: enforcer.Config{Targets: targets}})
}

func kindsOf(ds []*schemas.Delivery) []string {
	var out []string
	for _, d := range ds {
		k := string(d.Kind)
		if d.Context.Attempt > 0 {
			k += "#" + itoa(d.Context.Attempt)
		}
		out = append(out, k)
	}
	return out
}

func itoa(n int) string { return string(rune('0' + n)) }

// TestRetryUntilSuccess: research fails twice with an error class its
// retry policy lists; the gateway delivers the hop again each time (attempt
// number in the delivery), each attempt is ledgered and counted as a hop
// and an edge use, the failed attempts' usage is spent, and the caller is
// told once: the third attempt's completed reply.
func TestRetryUntilSuccess(t *testing.T) {
	g := startRetrying(t, map[string]limits.Target{"research": {Retry: limits.Retry{
		MaxAttempts: 3, On: []string{"rate_limited"}, Backoff: 50 * time.Millisecond, Jitter: noJitter()}}})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	hop := delegate(t, orch, run, root, "research")
	research.send(run, research.failed(hop, "orchestrator", "rate_limited", &schemas.Usage{InputTokens: 10}))
	ds := waitDeliveries(t, g, "research", 2)
	if ds[1].Kind != schemas.DeliverInvoke || ds[1].Context.Attempt != 2 || ds[1].Context.HopID != hop {
		t.Fatalf("second delivery to research: %v", kindsOf(ds))
	}
	research.send(run, research.failed(hop, "orchestrator", "rate_limited", &schemas.Usage{InputTokens: 10}))
	ds = waitDeliveries(t, g, "research", 3)
	if ds[2].Context.Attempt != 3 {
		t.Fatalf("third delivery to research: %v", kindsOf(ds))
	}
	research.send(run, research.reply(hop, "orchestrator", &schemas.Usage{InputTokens: 100}))
	waitDeliveries(t, g, "orchestrator", 2)
	st := runState(t, g, run)
	if h := st.Hops[hop]; h.Status != "completed" || h.Attempt != 3 {
		t.Fatalf("hop %s attempt %d", h.Status, h.Attempt)
	}
	if st.Allowed != 4 || st.Edges[ledger.Edge{From: "orchestrator", To: "research"}] != 3 || st.Spent.Tokens != 120 {
		t.Fatalf("allowed %d, edge uses %d, tokens %d; want 4 hops (root + 3 attempts), 3 edge uses, 120 tokens", st.Allowed,
			st.Edges[ledger.Edge{From: "orchestrator", To: "research"}], st.Spent.Tokens)
	}
	var retried int
	for _, r := range waitRun(t, g, run, 5) {
		if r.Event.Type == schemas.EventHopRetried {
			retried++
		}
	}
	if retried != 2 {
		t.Fatalf("%d hop.retried events, want 2", retried)
	}
	// Replay shows the attempts under the hop.
	tree, err := runtree.Build(run, waitRun(t, g, run, 5))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	if err := tree.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, h := range tree.Hops {
		if h.HopID == hop && (len(h.Retries) != 2 || h.Retries[1].Attempt != 3 || h.Retries[0].ErrorClass != "rate_limited") {
			t.Fatalf("replayed hop retries %+v", h.Retries)
		}
	}
	if !strings.Contains(text.String(), "attempt 3 after failed rate_limited") {
		t.Fatalf("replay text shows no attempts:\n%s", text.String())
	}
	time.Sleep(200 * time.Millisecond) // nothing more may arrive
	if ds := g.Deliveries("orchestrator"); len(ds) != 2 {
		t.Fatalf("orchestrator got %d deliveries; want its task and one reply", len(ds))
	}
	// A class the policy does not list reaches the caller at once.
	hop2 := delegate(t, orch, run, root, "research")
	research.send(run, research.failed(hop2, "orchestrator", "bad_request", nil))
	if d := nth(t, g, "orchestrator", 3); d.Kind != schemas.DeliverReply || d.Context.HopID != hop2 {
		t.Fatalf("failed reply with an unlisted class: %s %+v", d.Kind, d.Context)
	}
}

// TestRetryUntilExhaustion: the writer never answers; after its timeout
// the hop is retried once (max_attempts 2), the first attempt cancelled at
// the writer; the second times out too and the caller is told once, as a
// timeout.
func TestRetryUntilExhaustion(t *testing.T) {
	g := startRetrying(t, map[string]limits.Target{"writer": {Retry: limits.Retry{
		MaxAttempts: 2, On: []string{"timeout"}, Backoff: 50 * time.Millisecond, Jitter: noJitter()}}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	hop := delegate(t, orch, run, root, "writer")
	ds := waitDeliveries(t, g, "writer", 4)
	if got := kindsOf(ds); got[0] != "invoke" || got[1] != "cancel" || got[2] != "invoke#2" || got[3] != "cancel#2" {
		t.Fatalf("writer got %v; want invoke, cancel, invoke#2, cancel#2", got)
	}
	d := nth(t, g, "orchestrator", 2)
	if d.Kind != schemas.DeliverTimeout || d.Context.HopID != hop {
		t.Fatalf("orchestrator got %s for %s", d.Kind, d.Context.HopID)
	}
	recs := waitRun(t, g, run, 4)
	var seen []schemas.EventType
	for _, r := range recs {
		if r.Event.HopID == hop {
			seen = append(seen, r.Event.Type)
		}
	}
	if !equalTypes(seen, schemas.EventHopAllowed, schemas.EventHopRetried, schemas.EventHopTimedOut) {
		t.Fatalf("hop events %v", seen)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(g.Deliveries("orchestrator")); n != 2 {
		t.Fatalf("orchestrator got %d deliveries; want its task and one timeout", n)
	}
}

// TestRetryNeverBeyondRunLimits: with max_edge_repeats 1, the edge's one
// use is spent by the first attempt: the timeout is not retried.
func TestRetryNeverBeyondRunLimits(t *testing.T) {
	g := enforcertest.Start(t, enforcertest.Options{Identities: timeoutIdentities(), Policies: basePolicies(t),
		Config: enforcer.Config{Limits: limits.Run{MaxEdgeRepeats: 1}, Targets: map[string]limits.Target{"writer": {Retry: limits.Retry{
			MaxAttempts: 5, On: []string{"timeout"}, Backoff: 50 * time.Millisecond}}}}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	hop := delegate(t, orch, run, root, "writer")
	if d := nth(t, g, "orchestrator", 2); d.Kind != schemas.DeliverTimeout {
		t.Fatalf("orchestrator got %s", d.Kind)
	}
	if h := runState(t, g, run).Hops[hop]; h.Status != ledger.HopTimedOut || h.Attempt > 1 {
		t.Fatalf("hop %s attempt %d; want timed out on its first attempt", h.Status, h.Attempt)
	}
}

// TestRetryWithAgentClient: a target served by the Go agent client fails
// with an error class its retry policy lists (agent.Result.ErrorClass);
// the gateway delivers the hop again, and the client runs the second
// attempt as a task of its own (same hop id, context.attempt 2) instead of
// taking it for a redelivery of the task it answered.
func TestRetryWithAgentClient(t *testing.T) {
	g := startRetrying(t, map[string]limits.Target{"research": {Retry: limits.Retry{
		MaxAttempts: 3, On: []string{"overloaded"}, Backoff: 20 * time.Millisecond, Jitter: noJitter()}}})
	type seen struct {
		hop     string
		attempt int
	}
	calls := make(chan seen, 4)
	var n atomic.Int32
	g.Agent("research", func(_ context.Context, task *agent.Task) (*agent.Result, error) {
		calls <- seen{task.Context.HopID, task.Context.Attempt}
		if n.Add(1) == 1 {
			return &agent.Result{Status: schemas.StateFailed, Error: "busy", ErrorClass: "overloaded", Usage: &schemas.Usage{InputTokens: 7}}, nil
		}
		return &agent.Result{Output: agent.AgentText("found"), Usage: &schemas.Usage{InputTokens: 3}}, nil
	})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	hop := delegate(t, orch, run, root, "research")
	d := nth(t, g, "orchestrator", 2)
	if d.Kind != schemas.DeliverReply || d.Context.HopID != hop {
		t.Fatalf("the caller was told %s for hop %s", d.Kind, d.Context.HopID)
	}
	first, second := <-calls, <-calls
	if first.hop != hop || second.hop != hop || first.attempt > 1 || second.attempt != 2 {
		t.Fatalf("the handler ran for %+v then %+v; want hop %s, attempt 1 then 2", first, second, hop)
	}
	if st := runState(t, g, run); st.Hops[hop].Status != "completed" || st.Spent.Tokens != 10 {
		t.Fatalf("hop %s, %d tokens spent; want completed and 10 (both attempts)", st.Hops[hop].Status, st.Spent.Tokens)
	}
}
