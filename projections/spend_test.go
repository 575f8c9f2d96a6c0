package projections_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/projections"
)

// TestSpendOverTime reads the spend of projected runs per agent per time
// bucket, as the console's chart does, and checks the totals and the SQL
// shown with it.
func TestSpendOverTime(t *testing.T) {
	e := newEnv(t)
	appendRuns(t, e.l, 2)
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)
	r, err := projections.NewReader(ctxT(t), e.db.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pts, sql, err := r.SpendOverTime(ctxT(t), projections.ByAgent, time.Now().Add(-time.Hour), 5*time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	got := map[string]float64{}
	var hops uint64
	for _, p := range pts {
		if p.At.Unix()%300 != 0 || p.At.Before(time.Now().Add(-time.Hour-5*time.Minute)) {
			t.Errorf("bucket %s is not on a 5-minute boundary within the hour", p.At)
		}
		got[p.Key] += p.CostUSD
		hops += p.Hops
	}
	want := map[string]float64{"orchestrator": 2 * orchestratorUsage.CostUSD}
	for _, w := range workers {
		want[w.id] = 2 * w.usage.CostUSD
	}
	if len(got) != len(want) || hops != 8 {
		t.Fatalf("spend %v over %d hops, want %v over 8", got, hops, want)
	}
	for k, w := range want {
		if math.Abs(got[k]-w) > 1e-9 {
			t.Errorf("%s spent %g, want %g", k, got[k], w)
		}
	}
	for _, s := range []string{"FROM `" + e.db.Name + "`.hops FINAL", "toDateTime('", "intDiv(toUInt32(opened_at), 300) * 300"} {
		if !strings.Contains(sql, s) {
			t.Errorf("SQL lacks %q:\n%s", s, sql)
		}
	}
	// Nothing before since; a bad dimension and a bad bucket are errors.
	if pts, _, err := r.SpendOverTime(ctxT(t), projections.ByTeam, time.Now().Add(time.Hour), time.Hour); err != nil || len(pts) != 0 {
		t.Fatalf("future since: %v, %d points", err, len(pts))
	}
	if _, _, err := r.SpendOverTime(ctxT(t), "colour", time.Now(), time.Hour); err == nil {
		t.Fatal("a bad dimension was accepted")
	}
	if _, _, err := r.SpendOverTime(ctxT(t), projections.ByAgent, time.Now(), time.Millisecond); err == nil {
		t.Fatal("a sub-second bucket was accepted")
	}
	if b := projections.SpendBucket(24 * time.Hour); b != time.Hour {
		t.Fatalf("bucket of a day: %s", b)
	}
}
