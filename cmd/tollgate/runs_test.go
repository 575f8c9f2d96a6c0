package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

// ledgerWithRuns starts a NATS server with the Tollgate streams, laid out
// in accounts as serve lays them out with one operator, and appends a few
// runs to its ledger: a completed one, a halted one, one still running,
// and the entry of a rejected submission. The operator's seed file is
// creds: reads go through its account's imports.
// rejectedRun is the ledger entry of a submission that belonged to no run.
const rejectedRun = ledger.RejectedPrefix + "7-0123456789ab"

func ledgerWithRuns(t *testing.T) (url, creds string, runs map[string][]ledger.Record) {
	t.Helper()
	opKey, opPub := brokertest.NewKey(t)
	creds = filepath.Join(t.TempDir(), "ops.nk")
	if err := broker.WriteSeed(creds, opKey); err != nil {
		t.Fatal(err)
	}
	bus := brokertest.Start(t, brokertest.Options{Layout: broker.Layout{Operators: map[string]string{"ops": opPub}}})
	l := ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	day := func(d int) time.Time { return time.Date(2026, 1, d, 10, 0, 0, 0, time.UTC) }
	runs = map[string][]ledger.Record{}
	add := func(name string, b *runtreetest.Builder) {
		recs, err := b.AppendTo(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		runs[name] = recs
	}

	a := runtreetest.New("run-a", day(1), runtreetest.DemoCast())
	root := a.Start("tomas", "orchestrator", "brief", "research-brief", nil)
	w := a.Invoke(root, "writer", "draft")
	a.Reply(w, schemas.StateCompleted, "drafted", &schemas.Usage{InputTokens: 100, OutputTokens: 50, CostUSD: 0.5})
	a.Reply(root, schemas.StateCompleted, "done", &schemas.Usage{InputTokens: 10, CostUSD: 0.25})
	a.Complete()
	add("run-a", a)

	b := runtreetest.New("run-b", day(2), runtreetest.DemoCast())
	root = b.Start("tomas", "orchestrator", "brief", "research-brief", nil)
	res := b.Invoke(root, "research", "find")
	den := b.Deny(res, "orchestrator", "again", runtreetest.Denial{Reason: schemas.ReasonLoop, Breach: &schemas.Breach{Limit: "cycle", Value: 1}})
	b.Breach(schemas.RunLimitBreached{Limit: "cycle", Value: 1, Reason: schemas.ReasonLoop, From: "research", To: "orchestrator", Action: "halt", HopID: den})
	b.Halt("gateway", "cycle", "cycle")
	add("run-b", b)

	c := runtreetest.New("run-c", day(3), runtreetest.DemoCast())
	root = c.Start("tomas", "orchestrator", "brief", "", nil)
	c.Invoke(root, "critic", "review")
	add("run-c", c)

	// A submission that belonged to no run is recorded on its own.
	rej, err := schemas.NewEvent(rejectedRun, schemas.EventHopDenied, "h1", day(2).Add(time.Hour),
		&schemas.HopDecision{Kind: schemas.KindInvoke, From: "writer", To: "critic", Reason: schemas.ReasonRun, Message: "run r9 does not exist"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Append(ctx, ledger.Head{}, rej); err != nil {
		t.Fatal(err)
	}
	return bus.Server.ClientURL(), creds, runs
}

func TestRunsList(t *testing.T) {
	url, creds, _ := ledgerWithRuns(t)
	ctx := ctxTimeout(t)
	list := func(args ...string) []runtree.Summary {
		t.Helper()
		out, errOut, err := tollgate(t, ctx, append([]string{"runs", "list", "--nats", url, "--creds", creds, "--json"}, args...)...)
		if err != nil {
			t.Fatalf("runs list %v: %v\n%s", args, err, errOut)
		}
		var got []runtree.Summary
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("runs list %v: %v\n%s", args, err, out)
		}
		return got
	}
	ids := func(rs []runtree.Summary) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.RunID)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "run-c run-b run-a"},
		{[]string{"--rejects"}, "run-c " + rejectedRun + " run-b run-a"},
		{[]string{"--status", "halted"}, "run-b"},
		{[]string{"--status", "running,completed"}, "run-c run-a"},
		{[]string{"--rejects", "--status", "rejected"}, rejectedRun},
		{[]string{"--agent", "research"}, "run-b"},
		{[]string{"--agent", "critic", "--rejects"}, "run-c " + rejectedRun},
		{[]string{"--since", "2026-01-02"}, "run-c run-b"},
		{[]string{"--limit", "1"}, "run-c"},
		{[]string{"--agent", "nobody"}, ""},
	} {
		if got := ids(list(tc.args...)); got != tc.want {
			t.Errorf("runs list %v: %q, want %q", tc.args, got, tc.want)
		}
	}
	all := list()
	a, b := all[2], all[1]
	if a.Status != "completed" || a.Hops != 2 || a.Tokens != 160 || a.CostUSD != 0.75 || a.Events != 6 || a.Caller != "tomas" ||
		a.Workflow != "research-brief" || strings.Join(a.Agents, ",") != "orchestrator,tomas,writer" {
		t.Errorf("run-a %+v", a)
	}
	if b.Status != "halted" || b.Breach != "cycle" || b.HaltedBy != "gateway" || b.Denied != 1 {
		t.Errorf("run-b %+v", b)
	}

	out, errOut, err := tollgate(t, ctx, "runs", "list", "--nats", url, "--creds", creds, "--limit", "2")
	if err != nil || !strings.HasPrefix(out, "RUN") || !strings.Contains(out, "run-b") || strings.Contains(out, "run-a") ||
		!strings.Contains(errOut, "2 of 3 runs shown") {
		t.Errorf("table: %v\n%s%s", err, out, errOut)
	}
}

// TestRunsExportOverNATS: export writes the stored events, byte for byte.
func TestRunsExportOverNATS(t *testing.T) {
	url, creds, runs := ledgerWithRuns(t)
	out, errOut, err := tollgate(t, ctxTimeout(t), "runs", "export", "run-b", "--nats", url, "--creds", creds)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, r := range runs["run-b"] {
		want.Write(r.Raw)
		want.WriteByte('\n')
	}
	if out != want.String() {
		t.Fatalf("export differs from the stored events:\n%s", out)
	}
	last := runs["run-b"][len(runs["run-b"])-1].Event.Hash
	if !strings.Contains(errOut, "exported 6 events of run run-b; head "+last) {
		t.Fatalf("export summary %q", errOut)
	}
	if _, _, err := tollgate(t, ctxTimeout(t), "runs", "export", "run-zz", "--nats", url, "--creds", creds); err == nil || !strings.Contains(err.Error(), "not in the ledger") {
		t.Fatalf("export of a missing run: %v", err)
	}
	// Replay over NATS reads the same run.
	text, _, err := tollgate(t, ctxTimeout(t), "replay", "run-b", "--nats", url, "--creds", creds)
	if err != nil || !strings.Contains(text, "Halted at #6 by gateway") || !strings.Contains(text, "signatures NOT checked") {
		t.Fatalf("replay over nats: %v\n%s", err, text)
	}
}
