package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/projections/projectionstest"
	"github.com/tollgate/tollgate/schemas"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// workers are the agents a synthetic run's orchestrator delegates to, with
// the usage each reports.
var workers = []struct {
	id, team string
	usage    schemas.Usage
}{
	{"research", "research", schemas.Usage{InputTokens: 2400, OutputTokens: 600, CostUSD: 0.030}},
	{"writer", "content", schemas.Usage{InputTokens: 1800, OutputTokens: 900, CostUSD: 0.027}},
	{"critic", "content", schemas.Usage{InputTokens: 900, OutputTokens: 200, CostUSD: 0.011}},
}

// orchestratorUsage is what the orchestrator reports for the root hop.
var orchestratorUsage = schemas.Usage{InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015}

// synthRun returns the events of a governed run as the enforcer records
// it: tomas starts it at the orchestrator, which delegates to each worker;
// research tries to re-invoke the orchestrator and is denied by policy;
// every hop is answered; the run completes. 2 + 3 + 1 + 4 + 1 = 11 events.
func synthRun(t testing.TB, run string, at time.Time) []schemas.Event {
	t.Helper()
	var out []schemas.Event
	tick := func() time.Time { at = at.Add(3 * time.Millisecond); return at }
	add := func(typ schemas.EventType, hop string, data any) {
		ev, err := schemas.NewEvent(run, typ, hop, tick(), data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	root := run + "-h0"
	add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: root, Caller: "tomas", CallerType: schemas.TypeUser,
		OnBehalfOf: "tomas", Workflow: "research-brief", Limits: &schemas.RunLimits{MaxDelegationDepth: 5, MaxEdgeRepeats: 20}})
	add(schemas.EventHopAllowed, root, decision("tomas", "research", "orchestrator", "platform", 0, []string{"tomas"}, root))
	var hops []string
	for i, w := range workers {
		hop := fmt.Sprintf("%s-h%d", run, i+1)
		hops = append(hops, hop)
		add(schemas.EventHopAllowed, hop, decision("orchestrator", "platform", w.id, w.team, 1, []string{"tomas", "orchestrator"}, hop))
	}
	denied := decision("research", "research", "orchestrator", "platform", 2, []string{"tomas", "orchestrator", "research"}, run+"-hx")
	denied.Cycle, denied.Reason, denied.Message = true, schemas.ReasonPolicy, "forbidden by policy [no-agent-invokes-an-orchestrator]"
	denied.PolicyIDs, denied.Deadline = []string{"no-agent-invokes-an-orchestrator"}, time.Time{}
	add(schemas.EventHopDenied, run+"-hx", denied)
	for i, w := range workers {
		u := w.usage
		add(schemas.EventHopCompleted, hops[i], &schemas.HopCompleted{Status: schemas.StateCompleted, By: w.id, Usage: &u,
			LatencyMS: int64(10 * (i + 1)), Envelope: envelope(w.id, "orchestrator", hops[i]), Digest: fmt.Sprintf("%064d", i)})
	}
	u := orchestratorUsage
	add(schemas.EventHopCompleted, root, &schemas.HopCompleted{Status: schemas.StateCompleted, By: "orchestrator", Usage: &u,
		LatencyMS: 60, Envelope: envelope("orchestrator", "tomas", root), Digest: fmt.Sprintf("%064d", 9)})
	add(schemas.EventRunCompleted, "", &schemas.RunCompleted{Status: schemas.StateCompleted, Hops: 4, Tokens: 8300, CostUSD: 0.083, DurationMS: 33})
	return out
}

// Per synthetic run.
const (
	runEvents = 11
	runHops   = 5 // 4 allowed, 1 denied
)

func decision(from, fromTeam, to, toTeam string, depth int, ancestry []string, hop string) *schemas.HopDecision {
	env := envelope(from, to, hop)
	return &schemas.HopDecision{Kind: schemas.KindInvoke, From: from, FromTeam: fromTeam, To: to, ToTeam: toTeam,
		Action: schemas.ActionInvoke, Depth: depth, Ancestry: ancestry, OnBehalfOf: "tomas",
		PolicyIDs: []string{"agents-delegate-to-agents"}, Deadline: time.Now().Add(time.Minute).UTC(),
		Envelope: env, Size: len(env), Digest: ledger.Digest(env)}
}

// envelope is a signed-looking A2A envelope of realistic size.
func envelope(from, to, hop string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"v": 1, "kind": "invoke", "hop_id": hop, "from": from, "to": to, "sent_at": time.Now().UTC(),
		"message": map[string]any{"kind": "message", "messageId": hop + "-m", "role": "user",
			"parts": []any{map[string]any{"kind": "text", "text": "Find sources on governance for agent-to-agent traffic and summarise them."}}},
		"signature": "x2Q3b5v0Q9r8n6m4k2j1h9g7f5d3s1a0z8x6c4v2b0n9m7k5j3h1g9f7d5s3a1q9w7e5r3t1y9u7i5o3p1a9s7d5f3g1h9j7k5l3",
	})
	return b
}

// appendRuns appends n synthetic runs to the ledger through ledger.Append,
// as the enforcer does, interleaving them event by event. It returns the
// run ids.
func appendRuns(t testing.TB, l *ledger.Ledger, n int) []string {
	t.Helper()
	ctx := ctxT(t)
	ids := make([]string, n)
	evs := make([][]schemas.Event, n)
	heads := make([]ledger.Head, n)
	for i := range n {
		ids[i] = schemas.NewID()
		evs[i] = synthRun(t, ids[i], time.Now().UTC())
	}
	for k := range runEvents {
		for i := range n {
			h, _, err := l.Append(ctx, heads[i], evs[i][k])
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			heads[i] = h
		}
	}
	return ids
}

// sealRuns builds n synthetic runs as sealed, hash-chained LEDGER
// messages, ready to publish.
func sealRuns(t testing.TB, subjects broker.Subjects, n int) []*nats.Msg {
	t.Helper()
	msgs := make([]*nats.Msg, 0, n*runEvents)
	for range n {
		run := schemas.NewID()
		head := ledger.Head{}
		for _, ev := range synthRun(t, run, time.Now().UTC()) {
			wire, err := ledger.Seal(&ev, head)
			if err != nil {
				t.Fatal(err)
			}
			head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash}
			msg := nats.NewMsg(subjects.Ledger(run))
			msg.Data = wire
			msgs = append(msgs, msg)
		}
	}
	return msgs
}

// publish publishes messages straight to LEDGER with async publishes
// (without the per-append expected sequence of ledger.Append): the fast
// way to fill a stream for a benchmark.
func publish(t testing.TB, js jetstream.JetStream, msgs []*nats.Msg) {
	t.Helper()
	for i, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 || i == len(msgs)-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("async publishes not acknowledged in 30 s")
			}
		}
	}
}

// env is a bus and a test database.
type env struct {
	bus *brokertest.Bus
	db  *projectionstest.DB
	l   *ledger.Ledger
}

func newEnv(t testing.TB) *env {
	t.Helper()
	db := projectionstest.New(t)
	db.Config.Consumer = broker.ProjectorConsumer // the gateway's projector
	bus := brokertest.Start(t, brokertest.Options{})
	return &env{bus: bus, db: db, l: ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)}
}

// start starts a projector with cfg (zero fields from the test database's
// config) and stops it when the test ends.
func (e *env) start(t *testing.T, cfg projections.Config) *projections.Projector {
	t.Helper()
	base := e.db.Config
	if cfg.Consumer != "" {
		base.Consumer = cfg.Consumer
	}
	if cfg.BatchSize != 0 {
		base.BatchSize = cfg.BatchSize
	}
	if cfg.MaxRuns != 0 {
		base.MaxRuns = cfg.MaxRuns
	}
	base.Hooks = cfg.Hooks
	p, err := projections.New(e.l, base)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Stop(ctx)
	})
	return p
}

// waitCaughtUp polls the broker until the consumer has acked every ledger
// event.
func (e *env) waitCaughtUp(t *testing.T, consumer string) projections.Lag {
	t.Helper()
	return brokertest.WaitFor(t, 30*time.Second, func() (projections.Lag, error) {
		lag, err := projections.ConsumerLag(ctxT(t), e.l, consumer)
		if err != nil {
			t.Fatal(err)
		}
		if !lag.Exists || lag.Events() != 0 || lag.AckFloor != lag.StreamLastSeq {
			return lag, fmt.Errorf("projector %s not caught up: %+v", consumer, lag)
		}
		return lag, nil
	})
}

// totals are the figures every projection test compares.
type totals struct {
	Events, Hops, Runs, Allowed, Denied, Completed, Cycles uint64
	Tokens                                                 int64
	CostNano                                               int64 // sum(cost_usd) in nano-dollars
}

func (e *env) totals(t *testing.T) totals {
	t.Helper()
	var tt totals
	tt.Events = e.db.Count("SELECT count() FROM events FINAL")
	tt.Runs = e.db.Count("SELECT count() FROM runs FINAL")
	e.db.Scan(`SELECT count(), countIf(decision = 'allowed'), countIf(decision = 'denied'), countIf(status = 'completed'),
	                  countIf(cycle = 1), sum(tokens), toInt64(sum(cost_usd) * 1000000000) FROM hops FINAL`,
		&tt.Hops, &tt.Allowed, &tt.Denied, &tt.Completed, &tt.Cycles, &tt.Tokens, &tt.CostNano)
	return tt
}

// wantTotals is what n synthetic runs project to.
func wantTotals(n int) totals {
	var tokens int64
	cost := orchestratorUsage.CostUSD
	tokens += orchestratorUsage.Tokens()
	for _, w := range workers {
		tokens += w.usage.Tokens()
		cost += w.usage.CostUSD
	}
	u := uint64(n)
	return totals{Events: runEvents * u, Hops: runHops * u, Runs: u, Allowed: 4 * u, Denied: u, Completed: 4 * u, Cycles: u,
		Tokens: tokens * int64(n), CostNano: int64(math.Round(cost*1e9)) * int64(n)}
}
