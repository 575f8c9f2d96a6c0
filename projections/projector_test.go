package projections_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/projections"
)

func TestProjectorProjectsRunsExactly(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 3)
	p := e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	if got, want := e.totals(t), wantTotals(3); got != want {
		t.Fatalf("totals\n got %+v\nwant %+v", got, want)
	}
	if info := p.Info(); info.Events != 3*runEvents || info.Skipped != 0 || info.Lag() != 0 || info.LastStreamSeq != 3*runEvents {
		t.Fatalf("info %+v", info)
	}
	// A hop.completed row carries what its decision recorded.
	var caller, team, workflow, principal, status string
	var depth uint32
	var latency int64
	e.db.Scan(`SELECT caller, target_team, workflow, principal, status, depth, latency_ms FROM hops FINAL
	           WHERE target = 'writer' LIMIT 1`, &caller, &team, &workflow, &principal, &status, &depth, &latency)
	if caller != "orchestrator" || team != "content" || workflow != "research-brief" || principal != "tomas" ||
		status != "completed" || depth != 1 || latency != 20 {
		t.Fatalf("writer hop: %s %s %s %s %s depth %d latency %d", caller, team, workflow, principal, status, depth, latency)
	}
	// Runs appended after the projector caught up are projected too.
	appendRuns(t, e.l, 2)
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	if got, want := e.totals(t), wantTotals(5); got != want {
		t.Fatalf("after more runs\n got %+v\nwant %+v", got, want)
	}
}

// TestEveryEventProjectedTwiceCountsOnce: a second projector under another
// consumer name projects every event again into the same tables; FINAL
// keeps every total as it was.
func TestEveryEventProjectedTwiceCountsOnce(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 4)
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	first := e.totals(t)
	again := e.start(t, projections.Config{Consumer: "replay"})
	e.waitCaughtUp(t, "replay")
	if n := again.Info().Events; n != 4*runEvents {
		t.Fatalf("the second projector projected %d events, want all %d", n, 4*runEvents)
	}
	if got := e.totals(t); got != first || got != wantTotals(4) {
		t.Fatalf("after a second projection\n got %+v\nwant %+v", got, first)
	}
}

// TestForgottenRunsAreReadBack: with room for one run in memory, runs
// interleaved event by event are read back from the ledger on every
// switch, and the rows are the same.
func TestForgottenRunsAreReadBack(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 3)
	p := e.start(t, projections.Config{MaxRuns: 1})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	if got, want := e.totals(t), wantTotals(3); got != want {
		t.Fatalf("totals\n got %+v\nwant %+v", got, want)
	}
	if loads := p.Info().RunLoads; loads < runEvents {
		t.Fatalf("%d runs read back, want at least %d with one run in memory", loads, runEvents)
	}
}

// TestCrashMidBatchThenRestart: the projector dies once a batch's hops are
// in ClickHouse, before anything of the batch is acked.
// A new projector gets the batch again: every total is exact.
func TestCrashMidBatchThenRestart(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 6)
	crash := errors.New("crash")
	p := e.start(t, projections.Config{BatchSize: 20, Hooks: projections.Hooks{
		AfterInsert: func(table string, b projections.BatchInfo) error {
			if b.Number == 2 && table == "hops" {
				return crash
			}
			return nil
		},
	}})
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the projector did not stop at the hook")
	}
	if !errors.Is(p.Err(), crash) {
		t.Fatalf("projector error %v, want the hook's", p.Err())
	}
	lag, err := projections.ConsumerLag(ctxT(t), e.l, broker.ProjectorConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if lag.AckFloor != 20 || lag.Events() != 6*runEvents-20 {
		t.Fatalf("after the crash %+v, want batch 1 (20 events) acked and nothing else", lag)
	}
	// The second batch's hops are in ClickHouse (its other tables may or
	// may not be: they are written concurrently), none of it is acked.
	if n := e.db.Count("SELECT count() FROM hops FINAL"); n < 40*runHops/runEvents {
		t.Fatalf("%d hops in ClickHouse after the crash, want at least those of two batches", n)
	}
	if n := e.db.Count("SELECT count() FROM events FINAL"); n < 20 || n > 40 {
		t.Fatalf("%d events in ClickHouse after the crash, want 20 to 40", n)
	}
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	if got, want := e.totals(t), wantTotals(6); got != want {
		t.Fatalf("after restart\n got %+v\nwant %+v", got, want)
	}
}

// TestBacklogFillsBatches: while the broker holds events the projector has
// not received yet, a batch is not cut short by the flush interval (here
// 1 ms, far less than it takes to fill one): every batch but the last is
// full, and every total is exact.
func TestBacklogFillsBatches(t *testing.T) {
	e := newEnv(t)
	const runs, size = 60, 200
	appendRuns(t, e.l, runs)
	var mu sync.Mutex
	var sizes []int
	cfg := e.db.Config
	cfg.BatchSize, cfg.FlushInterval, cfg.AckWait = size, time.Millisecond, time.Minute
	cfg.Hooks.AfterInsert = func(table string, b projections.BatchInfo) error {
		if table == "events" {
			mu.Lock()
			sizes = append(sizes, b.Events)
			mu.Unlock()
		}
		return nil
	}
	p, err := projections.New(e.l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	if got, want := e.totals(t), wantTotals(runs); got != want {
		t.Fatalf("totals\n got %+v\nwant %+v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for i, n := range sizes {
		total += n
		if i < len(sizes)-1 && n != size {
			t.Errorf("batch %d of %d holds %d events, want %d (batches %v)", i+1, len(sizes), n, size, sizes)
		}
	}
	if total != runs*runEvents {
		t.Fatalf("batches hold %d events, want %d", total, runs*runEvents)
	}
}

func TestStopFlushesTheBatchInHand(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 2)
	cfg := e.db.Config
	cfg.FlushInterval, cfg.AckWait = time.Hour, 2*time.Hour // only Stop can flush
	p, err := projections.New(e.l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	brokertest.WaitFor(t, 20*time.Second, func() (bool, error) {
		if info := p.Info(); info.Buffered < 2*runEvents {
			return false, fmt.Errorf("events not delivered: %+v", info)
		}
		return true, nil
	})
	if n := e.db.Count("SELECT count() FROM events"); n != 0 {
		t.Fatalf("%d events written before the flush", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := e.totals(t), wantTotals(2); got != want {
		t.Fatalf("after stop\n got %+v\nwant %+v", got, want)
	}
	lag, err := projections.ConsumerLag(ctxT(t), e.l, broker.ProjectorConsumer)
	if err != nil || lag.Events() != 0 {
		t.Fatalf("after stop: lag %+v, %v", lag, err)
	}
}

func TestRebuildGivesIdenticalTotals(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 5)
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	before := e.totals(t)
	var passes []projections.RebuildProgress
	res, err := projections.Rebuild(ctxT(t), e.l, e.db.Config, projections.RebuildOptions{
		Progress: func(p projections.RebuildProgress) { passes = append(passes, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 5*runEvents || res.LedgerEvents != 5*runEvents || res.Runs != 5 || res.Hops != 5*runHops {
		t.Fatalf("rebuild result %+v", res)
	}
	if last := passes[len(passes)-1]; last.Done != last.Total || last.Total != 5*runEvents {
		t.Fatalf("last progress %+v", last)
	}
	if got := e.totals(t); got != before {
		t.Fatalf("after rebuild\n got %+v\nwant %+v", got, before)
	}
	// The tables really are new: the duplicates of the live projection
	// are gone, and the projector keeps writing into them.
	if n := e.db.Count("SELECT count() FROM events"); n != 5*runEvents {
		t.Fatalf("%d raw event rows after rebuild, want %d", n, 5*runEvents)
	}
	appendRuns(t, e.l, 1)
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	if got, want := e.totals(t), wantTotals(6); got != want {
		t.Fatalf("projection after rebuild\n got %+v\nwant %+v", got, want)
	}
	if n := e.db.Count("SELECT count() FROM system.databases WHERE name LIKE '" + e.db.Name + "_%'"); n != 0 {
		t.Fatalf("%d staging databases left behind", n)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	e := newEnv(t)
	all, err := projections.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	applied, err := projections.Migrate(ctxT(t), e.db.Config)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(all) {
		t.Fatalf("applied %v, want %v", applied, all)
	}
	again, err := projections.Migrate(ctxT(t), e.db.Config)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v, %v", again, err)
	}
	st, err := projections.GetStatus(ctxT(t), e.l, e.db.Config)
	if err != nil {
		t.Fatal(err)
	}
	if st.SchemaVersion != all[len(all)-1].Version || st.LatestSchema != st.SchemaVersion || st.Lag == nil || st.Lag.Exists {
		t.Fatalf("status %+v", st)
	}
	for _, view := range []string{"edges_by_run", "edges_daily", "cost_by_agent_daily", "cost_by_workflow_daily",
		"cost_by_team_daily", "cost_by_principal_daily", "loop_signals", "quota_spend_hourly"} {
		if n := e.db.Count("SELECT count() FROM " + view); n != 0 {
			t.Errorf("view %s has %d rows in an empty database", view, n)
		}
	}
}

func TestStatusReportsLag(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 2)
	if _, err := projections.Migrate(ctxT(t), e.db.Config); err != nil {
		t.Fatal(err)
	}
	st, err := projections.GetStatus(ctxT(t), e.l, e.db.Config)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lag.Exists || st.Lag.Events() != 2*runEvents || st.Lag.Behind <= 0 || st.Events != 0 {
		t.Fatalf("before projecting: %+v lag %+v", st, st.Lag)
	}
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	st, err = projections.GetStatus(ctxT(t), e.l, e.db.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Lag.Exists || st.Lag.Events() != 0 || st.Lag.Behind != 0 || st.Events != 2*runEvents ||
		st.ProjectedStreamSeq != 2*runEvents || st.Runs != 2 || st.Hops != 2*runHops {
		t.Fatalf("after projecting: %+v lag %+v", st, st.Lag)
	}
}
