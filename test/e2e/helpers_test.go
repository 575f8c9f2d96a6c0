package e2e_test

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/projections/projectionstest"
	"github.com/tollgate/tollgate/schemas"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var identities = []broker.Identity{
	{ID: "tomas", Type: schemas.TypeUser, Team: "research", RequireSignature: true},
	{ID: "orchestrator", Type: schemas.TypeAgent, Team: "platform", Tags: []string{"entry", "orchestrator"},
		RequireSignature: true, Workflow: "research-brief"},
	{ID: "research", Type: schemas.TypeAgent, Team: "research", RequireSignature: true},
	{ID: "writer", Type: schemas.TypeAgent, Team: "content", RequireSignature: true},
	{ID: "critic", Type: schemas.TypeAgent, Team: "content", RequireSignature: true},
}

// scenarioPolicy adds to the shipped base policy (not its forbid on
// re-invoking the orchestrator): research may never call critic, and a
// bounded re-entry between research and the orchestrator is let through
// the cycle check, so a looping run loops until the depth limit stops it.
const scenarioPolicy = `
@id("research-may-not-call-critic")
forbid (principal == Agent::"research", action == Action::"invoke", resource == Agent::"critic");

@id("research-may-re-plan")
@cycle("allow")
permit (principal == Agent::"research", action == Action::"invoke", resource == Agent::"orchestrator")
when { context.is_cycle && context.edge_calls < 2 };

@id("orchestrator-may-re-research")
@cycle("allow")
permit (principal == Agent::"orchestrator", action == Action::"invoke", resource == Agent::"research")
when { context.is_cycle && context.edge_calls < 3 };
`

// depthLimit is the runs' max_delegation_depth: the looping run's fifth
// delegation (depth 5) is denied and halts the run.
const depthLimit = 4

func policies(t testing.TB) []policy.File {
	t.Helper()
	src, err := fs.ReadFile(deploy.Policies(), "policies/base.cedar")
	if err != nil {
		t.Fatal(err)
	}
	return []policy.File{{Name: "base.cedar", Src: src}, {Name: "scenario.cedar", Src: []byte(scenarioPolicy)}}
}

// usage is what each agent reports for a task.
var usage = map[string]schemas.Usage{
	"orchestrator": {InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015},
	"research":     {InputTokens: 2400, OutputTokens: 600, CostUSD: 0.030},
	"writer":       {InputTokens: 1800, OutputTokens: 900, CostUSD: 0.027},
	"critic":       {InputTokens: 900, OutputTokens: 200, CostUSD: 0.011},
}

func result(id string) *agent.Result {
	u := usage[id]
	return &agent.Result{Output: agent.AgentText(id + " done"), Usage: &u}
}

// handlers serve the scenario's tasks by their text: "brief" is a normal
// run, "deny" has research try an edge policy forbids, "loop" has research
// and the orchestrator re-invoke each other until the gateway stops them.
var handlers = map[string]agent.Handler{
	"orchestrator": func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		switch agent.MessageText(t.Message) {
		case "brief":
			for _, to := range []string{"research", "writer", "critic"} {
				if _, err := t.Delegate(ctx, to, agent.UserText("brief")); err != nil {
					return nil, err
				}
			}
		case "deny":
			if _, err := t.Delegate(ctx, "research", agent.UserText("ask critic")); err != nil {
				return nil, err
			}
		case "loop":
			_, _ = t.Delegate(ctx, "research", agent.UserText("loop")) // ends in a denial and a halt
		}
		return result("orchestrator"), nil
	},
	"research": func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		switch agent.MessageText(t.Message) {
		case "ask critic":
			if _, err := t.Delegate(ctx, "critic", agent.UserText("review")); err == nil {
				return nil, fmt.Errorf("research -> critic was allowed")
			}
		case "loop":
			_, _ = t.Delegate(ctx, "orchestrator", agent.UserText("loop"))
		}
		return result("research"), nil
	},
	"writer": func(context.Context, *agent.Task) (*agent.Result, error) { return result("writer"), nil },
	"critic": func(context.Context, *agent.Task) (*agent.Result, error) { return result("critic"), nil },
}

// scenario is a gateway that ran three governed runs and a rejected
// submission, and stopped: its ledger no longer changes.
type scenario struct {
	g                      *enforcertest.Gateway
	db                     *projectionstest.DB
	normal, denied, looped string
}

// runScenario starts a gateway and agents, calls before (to start a live
// projector), drives the runs, then stops the agents and the enforcer.
func runScenario(t *testing.T, before func(*enforcertest.Gateway, *projectionstest.DB)) *scenario {
	t.Helper()
	db := projectionstest.New(t)
	g := enforcertest.Start(t, enforcertest.Options{Identities: identities, Policies: policies(t),
		Config: enforcer.Config{Limits: limits.Run{MaxDelegationDepth: depthLimit}}})
	if before != nil {
		before(g, db)
	}
	var agents []*agent.Client
	for id, h := range handlers {
		agents = append(agents, g.Agent(id, h))
	}
	tomas := g.Agent("tomas", nil)
	agents = append(agents, tomas)
	s := &scenario{g: g, db: db}
	ctx := ctxT(t, 60*time.Second)

	reply, err := tomas.Start(ctx, "orchestrator", agent.UserText("brief"))
	if err != nil || reply.Status != schemas.StateCompleted {
		t.Fatalf("normal run: %+v, %v", reply, err)
	}
	s.normal = reply.RunID
	reply, err = tomas.Start(ctx, "orchestrator", agent.UserText("deny"))
	if err != nil || reply.Status != schemas.StateCompleted {
		t.Fatalf("run with a denied edge: %+v, %v", reply, err)
	}
	s.denied = reply.RunID

	// The looping run ends in a halt; its outcome reaches tomas however the
	// halt lands, so wait on the ledger instead.
	s.looped = schemas.NewID()
	go func() { _, _ = tomas.Start(ctx, "orchestrator", agent.UserText("loop"), agent.WithRunID(s.looped)) }()
	waitFor(t, "the looping run halts with no open hop", func() bool {
		st, err := g.Ledger.Load(ctx, s.looped)
		return err == nil && st.Halted && len(st.Open) == 0
	})

	// The agents' late replies to the hops the halt cancelled settle what
	// they spent (hop.completed settles: the loop's handlers report usage
	// although their delegation was denied), once each, in the run.
	for _, a := range agents {
		a.Close()
	}
	waitFor(t, "every submission is decided", func() bool { return submissionsLeft(t, g) == 0 })

	// A submission that names no run and cannot be read: recorded in a
	// ledger entry of its own.
	rejectedBefore := len(rejectedEntries(t, g))
	js, err := jetstream.New(g.ConnAs("research", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, g.Subjects.Submit("research", "fresh-run"), []byte(`{"v":1,"kind":"invoke"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rejected submission is recorded", func() bool { return len(rejectedEntries(t, g)) == rejectedBefore+1 })
	g.StopEnforcer()
	return s
}

// submissionsLeft is how many submissions SUBMIT still holds.
func submissionsLeft(t testing.TB, g *enforcertest.Gateway) uint64 {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	s, err := g.JS.Stream(ctx, g.Subjects.Stream(broker.StreamSubmit))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// rejectedEntries lists the ledger entries of submissions without a run.
func rejectedEntries(t testing.TB, g *enforcertest.Gateway) []string {
	t.Helper()
	var out []string
	for _, run := range ledgerRuns(t, g) {
		if strings.HasPrefix(run, ledger.RejectedPrefix) {
			out = append(out, run)
		}
	}
	return out
}

// ledgerRuns lists every run (ledger subject) of the stream.
func ledgerRuns(t testing.TB, g *enforcertest.Gateway) []string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	s, err := g.JS.Stream(ctx, g.Subjects.Stream(broker.StreamLedger))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(g.Subjects.LedgerAll()))
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for subj := range info.State.Subjects {
		if run, ok := g.Subjects.LedgerRun(subj); ok {
			runs = append(runs, run)
		}
	}
	slices.Sort(runs)
	return runs
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	brokertest.Eventually(t, 30*time.Second, what, cond)
}

// startProjector starts a projector on the gateway's bus into the test's
// database; it is stopped when the test ends.
func startProjector(t testing.TB, g *enforcertest.Gateway, cfg projections.Config) *projections.Projector {
	t.Helper()
	if cfg.Consumer == "" {
		cfg.Consumer = broker.ProjectorConsumer // the gateway's projector
	}
	p, err := projections.New(g.Ledger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Stop(ctx)
	})
	return p
}

// waitCaughtUp waits until the consumer has acked every ledger event.
func waitCaughtUp(t testing.TB, g *enforcertest.Gateway, consumer string) {
	t.Helper()
	waitFor(t, "projector "+consumer+" has acked every ledger event", func() bool {
		lag, err := projections.ConsumerLag(ctxT(t, 10*time.Second), g.Ledger, consumer)
		if err != nil {
			t.Fatal(err)
		}
		return lag.Exists && lag.Events() == 0 && lag.AckFloor == lag.StreamLastSeq
	})
}

// oracle is what the projection must hold, computed straight from the
// ledger, independently of the projector's code.
type oracle struct {
	events   uint64
	runs     []string // started runs
	decision map[string]uint64
	// edges by run, caller and target (invokes only).
	edges map[edgeKey]*edgeCount
	// spend by agent (the target of the hop the reply closed).
	costNano map[string]int64
	tokens   map[string]int64
	served   map[string]uint64 // allowed invokes per target
	rejected uint64
}

type edgeKey struct{ run, caller, target string }

type edgeCount struct{ calls, allowed, denials, cycles uint64 }

func newOracle(t testing.TB, g *enforcertest.Gateway) *oracle {
	t.Helper()
	o := &oracle{decision: map[string]uint64{}, edges: map[edgeKey]*edgeCount{}, costNano: map[string]int64{},
		tokens: map[string]int64{}, served: map[string]uint64{}}
	ctx := ctxT(t, 30*time.Second)
	for _, run := range ledgerRuns(t, g) {
		recs, err := g.Ledger.Read(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.Verify(run, recs, nil).Err(); err != nil {
			t.Fatal(err)
		}
		target := map[string]string{}
		for _, r := range recs {
			o.events++
			data, err := r.Event.DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			switch d := data.(type) {
			case *schemas.RunStarted:
				o.runs = append(o.runs, run)
			case *schemas.HopDecision:
				o.decision[string(r.Event.Type)]++
				if strings.HasPrefix(run, ledger.RejectedPrefix) {
					o.rejected++
				}
				if d.Kind != schemas.KindInvoke {
					continue
				}
				k := edgeKey{run, d.From, d.To}
				if o.edges[k] == nil {
					o.edges[k] = &edgeCount{}
				}
				e := o.edges[k]
				e.calls++
				if d.Cycle {
					e.cycles++
				}
				if r.Event.Type == schemas.EventHopDenied {
					e.denials++
					continue
				}
				e.allowed++
				target[r.Event.HopID] = d.To
				o.served[d.To]++
			case *schemas.HopCompleted:
				if to, ok := target[r.Event.HopID]; ok && d.Usage != nil {
					o.costNano[to] += int64(math.Round(d.Usage.CostUSD * 1e9))
					o.tokens[to] += d.Usage.Tokens()
				}
			}
		}
	}
	return o
}

// checkAgainst compares the projection with the oracle, exactly.
func (o *oracle) checkAgainst(t *testing.T, db *projectionstest.DB) {
	t.Helper()
	if n := db.Count("SELECT count() FROM events FINAL"); n != o.events {
		t.Errorf("events: %d in ClickHouse, %d in the ledger", n, o.events)
	}
	if n := db.Count("SELECT count() FROM runs FINAL"); n != uint64(len(o.runs)) {
		t.Errorf("runs: %d in ClickHouse, %d in the ledger", n, len(o.runs))
	}
	var allowed, denied, rejected uint64
	db.Scan("SELECT countIf(decision = 'allowed'), countIf(decision = 'denied'), countIf(rejected = 1) FROM hops FINAL",
		&allowed, &denied, &rejected)
	if allowed != o.decision["hop.allowed"] || denied != o.decision["hop.denied"] || rejected != o.rejected {
		t.Errorf("hops: %d allowed, %d denied, %d rejected; ledger %d, %d, %d", allowed, denied, rejected,
			o.decision["hop.allowed"], o.decision["hop.denied"], o.rejected)
	}
	got := map[edgeKey]edgeCount{}
	for _, row := range dump(t, db.Conn, "SELECT run_id, caller, target, calls, allowed, denials, cycles FROM edges_by_run") {
		var c edgeCount
		if _, err := fmt.Sscan(strings.Join(row[3:], " "), &c.calls, &c.allowed, &c.denials, &c.cycles); err != nil {
			t.Fatal(err)
		}
		got[edgeKey{row[0], row[1], row[2]}] = c
	}
	want := map[edgeKey]edgeCount{}
	for k, e := range o.edges {
		want[k] = *e
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("edges by run\n got %v\nwant %v", got, want)
	}
	gotCost := map[string][3]int64{}
	for _, row := range dump(t, db.Conn, "SELECT agent, hops, tokens, toInt64(cost_usd * 1000000000) FROM cost_by_agent_daily") {
		var hops, tokens, cost int64
		if _, err := fmt.Sscan(strings.Join(row[1:], " "), &hops, &tokens, &cost); err != nil {
			t.Fatal(err)
		}
		gotCost[row[0]] = [3]int64{hops, tokens, cost}
	}
	wantCost := map[string][3]int64{}
	for agent, n := range o.served {
		wantCost[agent] = [3]int64{int64(n), o.tokens[agent], o.costNano[agent]}
	}
	if !reflect.DeepEqual(gotCost, wantCost) {
		t.Errorf("cost by agent (hops, tokens, nano-USD)\n got %v\nwant %v", gotCost, wantCost)
	}
}

// snapshot is every table and view of the projection as text, in a fixed
// order: two projections are the same when their snapshots are equal.
func snapshot(t testing.TB, db *projectionstest.DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		"SELECT run_id, seq, stream_seq, type, at, at_ns, hop_id, rejected, data, hash FROM events FINAL ORDER BY run_id, seq",
		"SELECT * FROM hops FINAL ORDER BY run_id, hop_seq",
		"SELECT * FROM runs FINAL ORDER BY run_id",
		"SELECT * FROM breaches FINAL ORDER BY run_id, seq",
		"SELECT * FROM edges_by_run ORDER BY run_id, caller, target",
		"SELECT * FROM edges_daily ORDER BY day, caller, target",
		"SELECT * FROM cost_by_agent_daily ORDER BY day, agent",
		"SELECT * FROM cost_by_workflow_daily ORDER BY day, workflow",
		"SELECT * FROM cost_by_team_daily ORDER BY day, team",
		"SELECT * FROM cost_by_principal_daily ORDER BY day, principal",
		"SELECT * FROM loop_signals ORDER BY run_id",
	} {
		fmt.Fprintf(&b, "%s\n", q)
		for _, row := range dump(t, db.Conn, q) {
			fmt.Fprintf(&b, "  %s\n", strings.Join(row, " | "))
		}
	}
	return b.String()
}

// dump runs a query and returns its rows as text.
func dump(t testing.TB, conn driver.Conn, q string, args ...any) [][]string {
	t.Helper()
	rows, err := conn.Query(ctxT(t, 30*time.Second), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]string
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(reflect.ValueOf(v).Elem().Interface())
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}
