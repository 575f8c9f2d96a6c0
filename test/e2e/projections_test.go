package e2e_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/projections/projectionstest"
)

// TestProjectionOfGovernedRuns drives three governed runs through a real
// enforcer with agents on their own credentials (a normal run, a run with
// an edge denied by policy, a run that loops until the depth limit halts
// it) and a rejected submission, while a projector runs; the projector is
// killed mid-batch (after ClickHouse accepted a batch's hops, before any
// ack). Then:
//   - a restarted projector brings ClickHouse to the ledger's exact counts
//     and sums;
//   - a second projector projecting every event again changes nothing;
//   - a rebuild from the first ledger event gives an identical projection;
//   - the reports read the scenario back.
func TestProjectionOfGovernedRuns(t *testing.T) {
	crash := errors.New("projector killed")
	var killed *projections.Projector
	s := runScenario(t, func(g *enforcertest.Gateway, db *projectionstest.DB) {
		cfg := db.Config
		cfg.BatchSize = 5
		cfg.Hooks.AfterInsert = func(table string, b projections.BatchInfo) error {
			if b.Number == 3 && table == "hops" {
				return crash
			}
			return nil
		}
		killed = startProjector(t, g, cfg)
	})
	g, db := s.g, s.db

	select {
	case <-killed.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the projector was not killed at its third batch")
	}
	if !errors.Is(killed.Err(), crash) {
		t.Fatalf("projector error %v, want the kill", killed.Err())
	}
	lag, err := projections.ConsumerLag(ctxT(t, 10*time.Second), g.Ledger, broker.ProjectorConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if lag.AckFloor >= lag.StreamLastSeq || lag.Events() == 0 {
		t.Fatalf("after the kill: %+v, want events left unacked", lag)
	}

	want := newOracle(t, g)
	if len(want.runs) != 3 || want.rejected < 1 {
		t.Fatalf("the scenario recorded runs %v and %d rejected submissions, want 3 and at least 1", want.runs, want.rejected)
	}

	t.Run("restart projects exact totals", func(t *testing.T) {
		startProjector(t, g, db.Config)
		waitCaughtUp(t, g, broker.ProjectorConsumer)
		want.checkAgainst(t, db)
	})
	if t.Failed() {
		return
	}
	before := snapshot(t, db)

	t.Run("the scenario as projected", func(t *testing.T) {
		// The normal run: four allowed hops, all answered with usage.
		var allowed, completed, denied uint64
		var costNano int64
		db.Scan("SELECT countIf(decision = 'allowed'), countIf(status = 'completed'), countIf(decision = 'denied'), "+
			"toInt64(sum(cost_usd) * 1000000000) FROM hops FINAL WHERE run_id = '"+s.normal+"'", &allowed, &completed, &denied, &costNano)
		if allowed != 4 || completed != 4 || denied != 0 || costNano != 83_000_000 {
			t.Errorf("normal run: %d allowed, %d completed, %d denied, %d nano-USD; want 4, 4, 0, 83000000", allowed, completed, denied, costNano)
		}
		// The run with a denied edge: research -> critic, by policy.
		rows := dump(t, db.Conn, "SELECT caller, target, reason, policy_ids FROM hops FINAL WHERE run_id = ? AND decision = 'denied'", s.denied)
		if len(rows) != 1 || rows[0][0] != "research" || rows[0][1] != "critic" || rows[0][2] != "policy" || rows[0][3] != "[research-may-not-call-critic]" {
			t.Errorf("denials of the run with a denied edge: %v", rows)
		}
		// The looping run: halted, cycles, the depth limit reached.
		var status string
		var halted uint8
		var cycles, depthDenials, maxEdgeCalls uint64
		var maxDepth, limit uint32
		db.Scan("SELECT status, halted, cycles, depth_denials, max_edge_calls, max_depth, depth_limit FROM loop_signals WHERE run_id = '"+s.looped+"'",
			&status, &halted, &cycles, &depthDenials, &maxEdgeCalls, &maxDepth, &limit)
		// tomas > orchestrator > research > orchestrator > research >
		// orchestrator, then orchestrator > research at depth 5 is denied:
		// the last four close cycles, and orchestrator > research is
		// called three times.
		if status != "halted" || halted != 1 || cycles != 4 || depthDenials != 1 || maxDepth != depthLimit || limit != depthLimit || maxEdgeCalls != 3 {
			t.Errorf("looping run: status %s halted %d cycles %d depth denials %d max edge calls %d depth %d/%d",
				status, halted, cycles, depthDenials, maxEdgeCalls, maxDepth, limit)
		}
	})

	t.Run("projecting every event twice changes nothing", func(t *testing.T) {
		cfg := db.Config
		cfg.Consumer = "replay"
		p := startProjector(t, g, cfg)
		waitCaughtUp(t, g, "replay")
		if n := p.Info().Events; n != want.events {
			t.Fatalf("the second projector projected %d events, want all %d", n, want.events)
		}
		if after := snapshot(t, db); after != before {
			t.Fatalf("the projection changed:\nbefore\n%s\nafter\n%s", before, after)
		}
	})

	t.Run("rebuild gives an identical projection", func(t *testing.T) {
		res, err := projections.Rebuild(ctxT(t, 60*time.Second), g.Ledger, db.Config, projections.RebuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != want.events || res.LedgerEvents != want.events || res.Runs != 3 {
			t.Fatalf("rebuild %+v, want %d events and 3 runs", res, want.events)
		}
		if after := snapshot(t, db); after != before {
			t.Fatalf("the rebuilt projection differs:\nbefore\n%s\nafter\n%s", before, after)
		}
		want.checkAgainst(t, db)
	})

	t.Run("reports", func(t *testing.T) {
		r, err := projections.NewReader(ctxT(t, 10*time.Second), db.Config)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		ctx := ctxT(t, 30*time.Second)
		cost, err := r.Cost(ctx, projections.ByAgent, projections.Filter{RunID: s.normal})
		if err != nil {
			t.Fatal(err)
		}
		var agents []string
		for _, c := range cost {
			agents = append(agents, c.Key)
		}
		if !slices.Equal(agents, []string{"research", "writer", "orchestrator", "critic"}) || cost[0].CostUSD != 0.03 || cost[0].Tokens != 3000 {
			t.Errorf("cost of the normal run by agent: %+v", cost)
		}
		teams, err := r.Cost(ctx, projections.ByTeam, projections.Filter{Since: time.Now().Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(teams) != 3 || teams[0].Key != "research" {
			t.Errorf("cost by team: %+v", teams)
		}
		edges, err := r.Graph(ctx, projections.Filter{RunID: s.denied})
		if err != nil {
			t.Fatal(err)
		}
		var deniedEdge *projections.Edge
		for i, e := range edges {
			if e.Caller == "research" && e.Target == "critic" {
				deniedEdge = &edges[i]
			}
		}
		if len(edges) != 3 || deniedEdge == nil || deniedEdge.Denials != 1 || !slices.Equal(deniedEdge.Reasons, []string{"policy"}) {
			t.Errorf("graph of the run with a denied edge: %+v", edges)
		}
		loops, err := r.Loops(ctx, projections.Filter{}, 3)
		if err != nil {
			t.Fatal(err)
		}
		var runs []string
		for _, l := range loops {
			runs = append(runs, l.RunID)
		}
		if !slices.Contains(runs, s.looped) || slices.Contains(runs, s.normal) || slices.Contains(runs, s.denied) {
			t.Errorf("runs with loop signals %v; want the looping run %s and neither of the others", runs, s.looped)
		}
	})
}
