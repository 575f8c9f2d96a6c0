package main

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/projections/projectionstest"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), false},
		{"2026-03-01T10:00:00Z", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"2026-03-01T08:30:00Z", time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC), false},
		{"yesterday", time.Time{}, true},
		{"-5h", time.Time{}, true},
		{"-3h", time.Time{}, true},
		{"3x", time.Time{}, true},
	}
	for _, tc := range cases {
		got, err := parseSince(tc.in, now)
		if (err != nil) != tc.wantErr || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestProjectionsCommands runs the demo with --clickhouse on a kept data
// folder, then every projections and report command against what it left.
func TestProjectionsCommands(t *testing.T) {
	db := projectionstest.New(t)
	u, err := url.Parse(db.Config.DSN)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db.Name
	dsn := u.String()
	data := filepath.Join(t.TempDir(), "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := tollgate(t, ctx, args...)
		if err != nil {
			t.Fatalf("tollgate %v: %v\n%s", args, err, errOut)
		}
		return out
	}

	// The demo writes a database of its own unless told which.
	out := run("demo", "--data", data, "--clickhouse", dsn, "--database", db.Name)
	if !strings.Contains(out, "From ClickHouse (database "+db.Name+")") || !strings.Contains(out, "research-brief  1     4     8300    $0.0830") {
		t.Fatalf("demo output lacks the cost report from ClickHouse:\n%s", out)
	}

	var st projections.Status
	if err := json.Unmarshal([]byte(run("projections", "status", "--data", data, "--clickhouse", dsn, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Database != db.Name || st.Lag == nil || st.Lag.Events() != 0 || st.Events != st.Lag.StreamEvents || st.Runs != 1 {
		t.Fatalf("status %+v lag %+v", st, st.Lag)
	}

	var cost map[string][]projections.CostRow
	if err := json.Unmarshal([]byte(run("report", "cost", "--clickhouse", dsn, "--since", "1h", "--json")), &cost); err != nil {
		t.Fatal(err)
	}
	if agents := cost["agent"]; len(agents) != 4 || agents[0].Key != "research" || agents[0].CostUSD != 0.03 || len(cost["principal"]) != 1 {
		t.Fatalf("cost report %+v", cost)
	}
	dot := run("report", "graph", "--clickhouse", dsn, "--format", "dot")
	if !strings.Contains(dot, `"research" -> "orchestrator" [label="1 call, 1 denied (policy)", color=red, fontcolor=red, style=dashed]`) {
		t.Fatalf("graph as DOT:\n%s", dot)
	}
	var loops []projections.LoopSignal
	if err := json.Unmarshal([]byte(run("report", "loops", "--clickhouse", dsn, "--json")), &loops); err != nil {
		t.Fatal(err)
	}
	if len(loops) != 1 || loops[0].Cycles != 1 || loops[0].FirstCycleEdge != "research -> orchestrator" {
		t.Fatalf("loops %+v", loops)
	}
	if table := run("report", "loops", "--clickhouse", dsn); !strings.Contains(table, "research -> orchestrator (seq 4)") {
		t.Fatalf("loops table:\n%s", table)
	}

	var res projections.RebuildResult
	if err := json.Unmarshal([]byte(run("projections", "rebuild", "--data", data, "--clickhouse", dsn, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Events != st.Events || res.LedgerEvents != st.Lag.StreamEvents || res.Runs != 1 {
		t.Fatalf("rebuild %+v, status before %+v", res, st)
	}
	if out := run("projections", "migrate", "--clickhouse", dsn); !strings.Contains(out, "is up to date") {
		t.Fatalf("migrate: %s", out)
	}
	if out := run("projections", "migrate", "--clickhouse", dsn, "--json"); !strings.Contains(out, `"applied": []`) {
		t.Fatalf("migrate: %s", out)
	}
	if _, _, err := tollgate(t, ctx, "projections", "status", "--clickhouse", ""); err == nil || !strings.Contains(err.Error(), "no ClickHouse") {
		t.Fatalf("status without a DSN: %v", err)
	}
}
