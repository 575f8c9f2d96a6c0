package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/demo"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// keptDemo runs the demo with its data kept in a fresh folder and returns
// the folder and the run id.
func keptDemo(t *testing.T, args ...string) (dir, run string) {
	t.Helper()
	dir = t.TempDir()
	// The demo's agents report progress on stderr from their own
	// goroutines, unsynchronised: give it a writer that is safe for that.
	var stdout bytes.Buffer
	errOut := &syncBuffer{}
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"demo", "--json", "--data", dir}, args...))
	cmd.SetOut(&stdout)
	cmd.SetErr(errOut)
	if err := cmd.ExecuteContext(ctxTimeout(t)); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
	}
	out := stdout.String()
	var d struct {
		RunID string `json:"run_id"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || !schemas.ValidID(d.RunID) {
		t.Fatalf("demo printed no run: %v\n%s", err, out)
	}
	return dir, d.RunID
}

type replayOut struct {
	RunID  string `json:"run_id"`
	Status string `json:"status"`
	Hops   []struct {
		From, To, Decision, Reason, Status string
		Depth                              int
		SpanID                             string   `json:"span_id"`
		PolicyIDs                          []string `json:"policy_ids"`
	} `json:"hops"`
	TraceID      string              `json:"trace_id"`
	Verification ledger.Verification `json:"verification"`
	Graph        runtree.Graph       `json:"graph"`
}

// TestReplayKeptDemo: a demo kept with --data is replayed from its folder,
// fully verified with the public keys the demo left in DIR/keys, and shown
// in every format.
func TestReplayKeptDemo(t *testing.T) {
	dir, run := keptDemo(t)
	ctx := ctxTimeout(t)
	out, errOut, err := tollgate(t, ctx, "replay", run, "--data", dir, "--json")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut)
	}
	var r replayOut
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	v := r.Verification
	if r.RunID != run || r.Status != "completed" || v.Chain != ledger.ChainIntact || v.Signatures != ledger.SigVerified || v.Checked != 8 || v.Broken != nil {
		t.Fatalf("replay of the demo: run %s status %s, verification %+v", r.RunID, r.Status, v)
	}
	if len(r.Hops) != 5 || r.Hops[2].From != "research" || r.Hops[2].To != "orchestrator" || r.Hops[2].Reason != "policy" ||
		r.Hops[2].PolicyIDs[0] != "no-agent-invokes-an-orchestrator" || r.Hops[2].Depth != 2 {
		t.Fatalf("hops %+v", r.Hops)
	}
	if r.TraceID == "" || r.Hops[0].SpanID == "" {
		t.Errorf("no trace ids in the replay: trace %q, root span %q", r.TraceID, r.Hops[0].SpanID)
	}
	if len(r.Graph.Edges) != 5 {
		t.Errorf("graph edges %+v", r.Graph.Edges)
	}

	text, _, err := tollgate(t, ctx, "replay", run, "--data", dir, "--payloads")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"│  └─ research → orchestrator", "DENIED policy [no-agent-invokes-an-orchestrator]", "in:  Find sources: Write a brief",
		"out: found 7 sources", "Cost by agent", "every admitted envelope's signature checks (8)"} {
		if !strings.Contains(text, want) {
			t.Errorf("replay text lacks %q:\n%s", want, text)
		}
	}
	dot, _, err := tollgate(t, ctx, "replay", run, "--data", dir, "--format", "dot")
	if err != nil || !strings.HasPrefix(dot, "digraph") || !strings.Contains(dot, `"research" -> "orchestrator"`) || !strings.Contains(dot, "style=dashed") {
		t.Errorf("dot: %v\n%s", err, dot)
	}
	mmd, _, err := tollgate(t, ctx, "replay", run, "--data", dir, "--format", "mermaid")
	if err != nil || !strings.Contains(mmd, "flowchart LR") || !strings.Contains(mmd, "-.->") {
		t.Errorf("mermaid: %v\n%s", err, mmd)
	}
	at, _, err := tollgate(t, ctx, "replay", run, "--data", dir, "--at", "3")
	if err != nil || !strings.Contains(at, "as of event #3") || !strings.Contains(at, "Open hops:") {
		t.Errorf("--at 3: %v\n%s", err, at)
	}

	// Without keys, replay says the signatures were not checked.
	if err := os.RemoveAll(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	text, _, err = tollgate(t, ctx, "replay", run, "--data", dir)
	if err != nil || !strings.Contains(text, "signatures NOT checked") {
		t.Errorf("replay without keys: %v\n%s", err, text)
	}
}

// TestReplayRefusesFolderInUse: a data folder whose lock is held (by a
// gateway) is not opened a second time.
func TestReplayRefusesFolderInUse(t *testing.T) {
	dir, run := keptDemo(t)
	unlock, err := gateway.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, _, err = tollgate(t, ctxTimeout(t), "replay", run, "--data", dir)
	if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), "--nats") {
		t.Fatalf("replay of a folder in use: %v", err)
	}
	if _, _, err := tollgate(t, ctxTimeout(t), "runs", "list", "--data", t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no ledger") {
		t.Fatalf("runs list of an empty folder: %v", err)
	}
}

// exportCopy exports a kept demo's run to a file and returns its lines.
func exportCopy(t *testing.T, dir, run string) (path string, recs []ledger.Record, head string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "run.jsonl")
	_, errOut, err := tollgate(t, ctxTimeout(t), "runs", "export", run, "--data", dir, "-o", path)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	i := strings.Index(errOut, "head ")
	if i < 0 {
		t.Fatalf("export printed no head: %q", errOut)
	}
	head = strings.TrimSpace(errOut[i+len("head "):])
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, err = runtree.ReadJSONL(f)
	if err != nil {
		t.Fatal(err)
	}
	return path, recs, head
}

func writeCopy(t *testing.T, recs []ledger.Record) string {
	t.Helper()
	var b bytes.Buffer
	if err := runtree.WriteJSONL(&b, recs); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tampered.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReplayTamperedCopies: a copy of a run, exported and then altered,
// fails verification with exit status 2 and names the first broken link.
func TestReplayTamperedCopies(t *testing.T) {
	dir, run := keptDemo(t)
	path, recs, head := exportCopy(t, dir, run)
	keys := filepath.Join(dir, "keys")
	ctx := ctxTimeout(t)

	// The copy as exported verifies, run id and all, against the head.
	out, _, err := tollgate(t, ctx, "replay", "--file", path, "--keys", keys, "--head", head)
	if err != nil || !strings.Contains(out, "every admitted envelope's signature checks (8)") || !strings.Contains(out, "Run "+run) {
		t.Fatalf("replay of the copy: %v\n%s", err, out)
	}

	typeOf := func(i int) (schemas.EventType, string) {
		ev, err := schemas.DecodeEvent(recs[i].Raw)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Type, ev.HopID
	}
	stranger, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func([]ledger.Record) ([]ledger.Record, error)) []ledger.Record {
		out, err := f(slices.Clone(recs))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	typ5, hop5 := typeOf(5)
	typ4, hop4 := typeOf(4)
	typ2, hop2 := typeOf(2)
	for _, tc := range []struct {
		name  string
		recs  []ledger.Record
		extra []string
		want  string // in the error, which names the event
	}{
		{"edit a field", mutate(func(r []ledger.Record) ([]ledger.Record, error) {
			r[5] = ledger.Record{Raw: bytes.Replace(r[5].Raw, []byte(`"depth":1`), []byte(`"depth":0`), 1)}
			return r, nil
		}), nil, "event 6 (" + string(typ5) + " hop " + hop5 + "): content does not match its hash"},
		{"drop an event", mutate(func(r []ledger.Record) ([]ledger.Record, error) {
			return slices.Delete(r, 3, 4), nil
		}), nil, "event 4 (" + string(typ4) + " hop " + hop4 + "): has seq 5 where 4 belongs"},
		{"swap two events", mutate(func(r []ledger.Record) ([]ledger.Record, error) {
			r[4], r[5] = r[5], r[4]
			return r, nil
		}), nil, "event 5 (" + string(typ5) + " hop " + hop5 + "): has seq 6 where 5 belongs"},
		{"change a payload", mutate(func(r []ledger.Record) ([]ledger.Record, error) {
			r[2] = ledger.Record{Raw: bytes.Replace(r[2].Raw, []byte("Find sources"), []byte("Leak secrets"), 1)}
			return r, nil
		}), nil, "event 3 (" + string(typ2) + " hop " + hop2 + "): content does not match its hash"},
		{"forge a signature", mutate(func(r []ledger.Record) ([]ledger.Record, error) {
			raw, err := runtreetest.ForgeInvoke(r[2].Raw, "Leak secrets", stranger.Sign)
			if err != nil {
				return nil, err
			}
			r[2] = ledger.Record{Raw: raw}
			return runtreetest.Rechain(r)
		}), nil, "event 3 (" + string(typ2) + " hop " + hop2 + `): envelope from "orchestrator": bad signature`},
		{"lose the last events", recs[:len(recs)-2], []string{"--head", head}, "events were removed from its end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := tollgate(t, ctx, append([]string{"replay", "--file", writeCopy(t, tc.recs), "--keys", keys}, tc.extra...)...)
			var code exitCoder
			if err == nil || !errors.As(err, &code) || code.ExitCode() != exitTampered || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("replay of a tampered copy: %v, want exit %d naming %q", err, exitTampered, tc.want)
			}
			if !strings.Contains(out, "FAILED") {
				t.Fatalf("the output does not say verification failed:\n%s", out)
			}
		})
	}
}

// TestReplayWhatIfLoopDemo: the loop scenario, kept, tried against the
// shipped policies: the first hop that changes is research's first
// re-invocation of the orchestrator, now denied by
// no-agent-invokes-an-orchestrator.
func TestReplayWhatIfLoopDemo(t *testing.T) {
	dir, run := keptDemo(t, "--scenario", "loop")
	out, errOut, err := tollgate(t, ctxTimeout(t), "replay", run, "--data", dir, "--policy", "../../deploy/policies", "--json")
	if err != nil {
		t.Fatalf("what-if: %v\n%s", err, errOut)
	}
	var rep struct {
		FirstChange uint64 `json:"first_change"`
		Hops        []struct {
			Seq       uint64 `json:"seq"`
			From, To  string
			Depth     int
			Change    string `json:"change"`
			Candidate *struct {
				Decision  string   `json:"decision"`
				Reason    string   `json:"reason"`
				PolicyIDs []string `json:"policy_ids"`
			} `json:"candidate"`
		} `json:"hops"`
		Vanished     []json.RawMessage   `json:"vanished"`
		Verification ledger.Verification `json:"verification"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var first *struct {
		Seq       uint64 `json:"seq"`
		From, To  string
		Depth     int
		Change    string `json:"change"`
		Candidate *struct {
			Decision  string   `json:"decision"`
			Reason    string   `json:"reason"`
			PolicyIDs []string `json:"policy_ids"`
		} `json:"candidate"`
	}
	for i := range rep.Hops {
		if rep.Hops[i].Change != "" {
			first = &rep.Hops[i]
			break
		}
	}
	if first == nil || first.Seq != rep.FirstChange || first.From != "research" || first.To != "orchestrator" || first.Depth != 2 ||
		first.Candidate.Reason != "policy" || first.Candidate.PolicyIDs[0] != "no-agent-invokes-an-orchestrator" {
		t.Fatalf("first change %+v of %s", first, out)
	}
	if len(rep.Vanished) != 2 || rep.Verification.Signatures != ledger.SigVerified {
		t.Fatalf("vanished %d events, signatures %s", len(rep.Vanished), rep.Verification.Signatures)
	}
	text, _, err := tollgate(t, ctxTimeout(t), "replay", run, "--data", dir, "--policy", "../../deploy/policies")
	if err != nil || !strings.Contains(text, "First change: #16 research → orchestrator: the candidate set says DENIED policy [no-agent-invokes-an-orchestrator]") {
		t.Fatalf("what-if text: %v\n%s", err, text)
	}
	// A CI gate: --fail-on-change exits 3 when a decision would change,
	// and not when none would.
	_, _, err = tollgate(t, ctxTimeout(t), "replay", run, "--data", dir, "--policy", "../../deploy/policies", "--fail-on-change")
	var code exitCoder
	if !errors.As(err, &code) || code.ExitCode() != exitChanged {
		t.Fatalf("--fail-on-change with changes: %v", err)
	}
	// The policies the run ran under change nothing.
	files, err := demo.Policies(demo.Loop)
	if err != nil {
		t.Fatal(err)
	}
	same := t.TempDir()
	for i, f := range files {
		if err := os.WriteFile(filepath.Join(same, fmt.Sprintf("p%d.cedar", i)), f.Src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, errOut, err := tollgate(t, ctxTimeout(t), "replay", run, "--data", dir, "--policy", same, "--fail-on-change"); err != nil {
		t.Fatalf("--fail-on-change with the run's own policies: %v\n%s%s", err, out, errOut)
	}
}

func TestReplayArguments(t *testing.T) {
	ctx := ctxTimeout(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "name the run"},
		{[]string{"replay", "r1"}, "say where the ledger is"},
		{[]string{"replay", "r1", "--data", "x", "--nats", "nats://localhost:1"}, "not both"},
		{[]string{"replay", "r1", "--json", "--format", "dot", "--data", "x"}, "contradict"},
		{[]string{"replay", "r1", "--format", "svg", "--data", "x"}, `--format "svg"`},
		{[]string{"replay", "a.b", "--data", "x"}, "not a run id"},
		{[]string{"replay", "r1", "--data", "x", "--policy", "p", "--at", "3"}, "--policy prints a what-if report"},
		{[]string{"replay", "--file", "/nonexistent/copy.jsonl"}, "no such file"},
		{[]string{"runs", "list", "--status", "exploded", "--data", "x"}, `--status "exploded"`},
		{[]string{"runs", "list", "--since", "last tuesday", "--data", "x"}, `--since "last tuesday"`},
	} {
		if _, _, err := tollgate(t, ctx, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// BenchmarkReplayCommand10k runs `tollgate replay <run>` on a 10,000-hop
// run with every signature checked and the text tree written: the figure
// an auditor sees, set-up included. "nats" reads from a running server,
// "data" from a data folder (starting an embedded server on it each time,
// as replay --data does). See docs/benchmarks.md.
func BenchmarkReplayCommand10k(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	keys := b.TempDir()
	for _, m := range runtreetest.WideCast() {
		if err := os.WriteFile(filepath.Join(keys, m.ID+".pub"), []byte(runtreetest.PublicKey(m.ID)+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, args ...string) {
		for b.Loop() {
			var out, errOut bytes.Buffer
			cmd := newRootCmd()
			cmd.SetArgs(append([]string{"replay", "bench", "--keys", keys}, args...))
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			if err := cmd.ExecuteContext(ctx); err != nil || !strings.Contains(out.String(), "every admitted envelope's signature checks (20000)") {
				b.Fatalf("replay: %v\n%s", err, errOut.String())
			}
		}
	}
	b.Run("nats", func(b *testing.B) {
		bus := brokertest.Start(b, brokertest.Options{Open: true})
		l := ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)
		if _, err := runtreetest.Wide("bench", time.Unix(1767225600, 0), 10000).AppendTo(ctx, l); err != nil {
			b.Fatal(err)
		}
		run(b, "--nats", bus.Server.ClientURL())
	})
	b.Run("data", func(b *testing.B) {
		dir := b.TempDir()
		emb, err := broker.StartEmbedded(ctx, broker.EmbeddedConfig{DataDir: filepath.Join(dir, "jetstream"), NoListen: true})
		if err != nil {
			b.Fatal(err)
		}
		nc, err := broker.Connect(broker.ConnectConfig{InProcess: emb})
		if err != nil {
			b.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		s := broker.DefaultSubjects()
		if err := broker.Provision(ctx, js, s, broker.StreamOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := runtreetest.Wide("bench", time.Unix(1767225600, 0), 10000).AppendTo(ctx, ledger.New(js, s.Stream(broker.StreamLedger), s)); err != nil {
			b.Fatal(err)
		}
		nc.Close()
		emb.Shutdown()
		run(b, "--data", dir)
	})
}

// TestReplayWithConfig: the gateway config says where the ledger is and
// holds the public keys that check the signatures.
func TestReplayWithConfig(t *testing.T) {
	dir, run := keptDemo(t)
	var cfg strings.Builder
	cfg.WriteString("nats:\n  data_dir: " + dir + "\npolicies:\n  - policies/*.cedar\n")
	for i, list := range []string{"users", "agents"} {
		cfg.WriteString(list + ":\n")
		for _, id := range [][]string{{"tomas"}, {"orchestrator", "research", "writer", "critic"}}[i] {
			pub, err := os.ReadFile(filepath.Join(dir, "keys", id+".pub"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.WriteString("  - id: " + id + "\n    public_key: " + strings.TrimSpace(string(pub)) + "\n")
		}
	}
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "keys")); err != nil { // only the config's keys count
		t.Fatal(err)
	}
	out, _, err := tollgate(t, ctxTimeout(t), "replay", run, "--config", path)
	if err != nil || !strings.Contains(out, "every admitted envelope's signature checks (8)") {
		t.Fatalf("replay --config: %v\n%s", err, out)
	}
}
