package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/schemas"
)

// tollgate runs the CLI in-process, as `tollgate args...` would.
func tollgate(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

type demoJSON struct {
	RunID  string `json:"run_id"`
	Status string `json:"status"`
	Halted bool   `json:"halted"`
	Hops   []struct {
		From, To, Decision, Reason, Status string
		Depth                              int
		PolicyIDs                          []string `json:"policy_ids"`
	} `json:"hops"`
	CostByAgent map[string]struct {
		Hops    int     `json:"hops"`
		Tokens  int64   `json:"tokens"`
		CostUSD float64 `json:"cost_usd"`
	} `json:"cost_by_agent"`
	LedgerVerified     bool                      `json:"ledger_verified"`
	SignaturesVerified bool                      `json:"signatures_verified"`
	Breach             *schemas.RunLimitBreached `json:"breach"`
	Alerts             []schemas.Alert           `json:"alerts"`
	SpendSpikes        []schemas.Alert           `json:"spend_spikes"`
	GuardrailFindings  []struct {
		From, To, Direction, Verdict string
		Rules                        []string
	} `json:"guardrail_findings"`
	TaintedHops []struct {
		From, To, Decision, Reason string
		PolicyIDs                  []string `json:"policy_ids"`
		TaintSources               []string `json:"taint_sources"`
	} `json:"tainted_hops"`
}

func runDemoJSON(t *testing.T, args ...string) demoJSON {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, errOut, err := tollgate(t, ctx, append([]string{"demo", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut)
	}
	var d demoJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("demo --json printed no JSON object: %v\n%s", err, out)
	}
	return d
}

// TestDemoIncident: the shipped policy denies the re-invocation of the
// orchestrator at its first attempt, and the run completes.
func TestDemoIncident(t *testing.T) {
	d := runDemoJSON(t)
	if d.Status != "completed" || d.Halted || !d.LedgerVerified || !d.SignaturesVerified || !schemas.ValidID(d.RunID) {
		t.Fatalf("demo: status %q halted %v verified %v/%v run %q", d.Status, d.Halted, d.LedgerVerified, d.SignaturesVerified, d.RunID)
	}
	type hop struct{ from, to, decision, reason string }
	var got []hop
	for _, h := range d.Hops {
		got = append(got, hop{h.From, h.To, h.Decision, h.Reason})
	}
	want := []hop{
		{"tomas", "orchestrator", "allowed", ""},
		{"orchestrator", "research", "allowed", ""},
		{"research", "orchestrator", "denied", "policy"},
		{"orchestrator", "writer", "allowed", ""},
		{"orchestrator", "critic", "allowed", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("hops %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("hop %d is %+v, want %+v", i, got[i], want[i])
		}
	}
	if d.Hops[2].Depth != 2 || d.Hops[2].PolicyIDs[0] != "no-agent-invokes-an-orchestrator" {
		t.Fatalf("denied hop %+v", d.Hops[2])
	}
	if len(d.CostByAgent) != 4 || d.CostByAgent["research"].Tokens != 3000 || d.CostByAgent["writer"].CostUSD != 0.027 {
		t.Fatalf("cost by agent %+v", d.CostByAgent)
	}
}

// TestDemoInjection: research reads a poisoned page through an untrusted
// MCP tool and passes its hidden instruction to the writer; the guardrail
// flags both messages, the taint follows, and the writer's call to the
// privileged payments agent is denied by the taint policy.
func TestDemoInjection(t *testing.T) {
	d := runDemoJSON(t, "--scenario", "injection")
	if d.Status != "completed" || !d.LedgerVerified || !d.SignaturesVerified {
		t.Fatalf("injection demo: status %q verified %v/%v", d.Status, d.LedgerVerified, d.SignaturesVerified)
	}
	type finding struct{ from, to, dir, verdict string }
	var found []finding
	for _, f := range d.GuardrailFindings {
		if !slices.Contains(f.Rules, "hidden-instructions/comment-instruction") {
			t.Errorf("finding %+v lacks the hidden comment rule", f)
		}
		found = append(found, finding{f.From, f.To, f.Direction, f.Verdict})
	}
	if !slices.Equal(found, []finding{{"research", "web-fetch", "reply", "flag"}, {"research", "writer", "invoke", "flag"}}) {
		t.Fatalf("guardrail findings %+v", found)
	}
	var pay *struct {
		From, To, Decision, Reason string
		PolicyIDs                  []string `json:"policy_ids"`
		TaintSources               []string `json:"taint_sources"`
	}
	for i, h := range d.TaintedHops {
		if h.To == "payments" {
			pay = &d.TaintedHops[i]
		}
	}
	if pay == nil || pay.From != "writer" || pay.Decision != "denied" || pay.Reason != "policy" ||
		!slices.Equal(pay.PolicyIDs, []string{"no-tainted-hop-reaches-privileged"}) || !slices.Contains(pay.TaintSources, "untrusted:web-fetch") {
		t.Fatalf("tainted hops %+v: want writer → payments denied by the taint policy", d.TaintedHops)
	}
}

// TestDemoLoop: without the deny policy the cycle trips the loop limit at
// its first hop, the run is halted and an alert published.
func TestDemoLoop(t *testing.T) {
	d := runDemoJSON(t, "--scenario", "loop")
	if d.Status != "halted" || !d.Halted || !d.LedgerVerified {
		t.Fatalf("loop demo: status %q halted %v verified %v", d.Status, d.Halted, d.LedgerVerified)
	}
	if d.Breach == nil || d.Breach.Limit != "cycle" || d.Breach.From != "research" || d.Breach.To != "orchestrator" || d.Breach.Action != "halt" {
		t.Fatalf("breach %+v", d.Breach)
	}
	if len(d.Alerts) != 1 || d.Alerts[0].RunID != d.RunID || len(d.Alerts[0].OpenHops) != 2 {
		t.Fatalf("alerts %+v", d.Alerts)
	}
	// Research's buggy retry logic first hammers its paid search six
	// times, then re-invokes the orchestrator.
	if len(d.Hops) != 9 || d.Hops[8].Reason != "loop" || d.Hops[0].Status != "canceled" || d.Hops[2].To != "search" {
		t.Fatalf("hops %+v", d.Hops)
	}
	// The burst of spend raised spend-spike alerts for research and its
	// team, naming the run and the edge.
	if len(d.SpendSpikes) != 2 || d.SpendSpikes[0].Agent != "research" || d.SpendSpikes[1].Team != "research" ||
		len(d.SpendSpikes[0].TopEdges) == 0 || d.SpendSpikes[0].TopEdges[0].Key != "research->search" || d.SpendSpikes[0].TopRuns[0].Key != d.RunID {
		t.Fatalf("spend spikes %+v", d.SpendSpikes)
	}
}

// TestDemoA2A: the incident over the A2A HTTP binding: tomas's unmodified
// A2A client reaches the orchestrator through the ingress, the critic is
// an A2A server behind a bridge (its usage reported in task metadata),
// and the run verifies with the ingress key, every hop tainted "ingress".
func TestDemoA2A(t *testing.T) {
	d := runDemoJSON(t, "--scenario", "a2a")
	if d.Status != "completed" || !d.LedgerVerified || !d.SignaturesVerified || len(d.Hops) != 5 {
		t.Fatalf("a2a demo: status %q verified %v/%v hops %d", d.Status, d.LedgerVerified, d.SignaturesVerified, len(d.Hops))
	}
	if d.Hops[2].Reason != "policy" || d.Hops[4].To != "critic" || d.Hops[4].Status != "completed" {
		t.Fatalf("hops %+v", d.Hops)
	}
	if c := d.CostByAgent["critic"]; c.Tokens != 1100 || c.CostUSD != 0.011 {
		t.Fatalf("the critic's usage over A2A: %+v", c)
	}
}

func TestDemoTextAndKeptData(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _, err := tollgate(t, ctx, "demo", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"research → orchestrator", "DENIED policy [no-agent-invokes-an-orchestrator]", "Cost by agent", "verified: hash chain intact", "Data kept in " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatalf("data not kept: %v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	ctx := context.Background()
	out, _, err := tollgate(t, ctx, "policy", "validate", "../../deploy/policies/*.cedar")
	if err != nil || !strings.Contains(out, "6 policies in 3 files") || !strings.Contains(out, "no-agent-invokes-an-orchestrator") || !strings.Contains(out, "no-tainted-hop-reaches-privileged") {
		t.Fatalf("validate shipped policies: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.cedar")
	if err := os.WriteFile(bad, []byte(`permit (principal, action, resource) when { context.mood == "good" };`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tollgate(t, ctx, "policy", "validate", bad); err == nil || !strings.Contains(err.Error(), "does not match the schema") {
		t.Fatalf("bad policy: %v", err)
	}
}

// writeGatewayConfig sets up a gateway folder the way a new user would:
// `agent add` for every identity, then the shipped policies.
func writeGatewayConfig(t *testing.T) (dir, config string) {
	t.Helper()
	dir = t.TempDir()
	config = filepath.Join(dir, "tollgate.yaml")
	policies, err := filepath.Abs("../../deploy/policies")
	if err != nil {
		t.Fatal(err)
	}
	base := "nats:\n  listen: 127.0.0.1:-1\n  data_dir: data\npolicies:\n  - " + policies + "/*.cedar\nrun_limits:\n  max_delegation_depth: 3\n"
	if err := os.WriteFile(config, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := filepath.Join(dir, "keys")
	for _, args := range [][]string{
		{"orchestrator", "--team", "platform", "--tags", "entry,orchestrator"},
		{"research", "--team", "research"},
		{"tomas", "--type", "user"},
		{"ops", "--type", "operator"},
	} {
		if _, _, err := tollgate(t, ctx, append([]string{"agent", "add", "--keys", keys, "--config", config}, args...)...); err != nil {
			t.Fatalf("agent add %v: %v", args, err)
		}
	}
	info, err := os.Stat(filepath.Join(keys, "research.nk"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v %v", info, err)
	}
	cfg, err := gateway.LoadConfig(config)
	if err != nil {
		t.Fatalf("config written by agent add does not load: %v", err)
	}
	if len(cfg.Agents) != 2 || len(cfg.Users) != 1 || len(cfg.Operators) != 1 || !cfg.Agents[1].RequiresSignature() {
		t.Fatalf("config %+v", cfg)
	}
	if _, _, err := tollgate(t, ctx, "agent", "add", "research", "--keys", t.TempDir(), "--config", config); err == nil {
		t.Fatal("agent add registered research twice")
	}
	return dir, config
}

// TestServeGovernsAgentsOverTCP: serve on a config made with agent add;
// agents in "other processes" connect over TCP with their key files.
func TestServeGovernsAgentsOverTCP(t *testing.T) {
	dir, config := writeGatewayConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"serve", "--config", config})
		cmd.SetOut(out)
		cmd.SetErr(&syncBuffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	url := waitURL(t, out)

	key := func(id string) *agent.Config {
		kp, err := broker.LoadSeed(filepath.Join(dir, "keys", id+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		return &agent.Config{ID: id, Key: kp, URL: url}
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	research := key("research")
	research.Handler = func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		_, err := task.Delegate(ctx, "orchestrator", agent.UserText("again"))
		return &agent.Result{Output: agent.AgentText("denied as expected: " + err.Error())}, nil
	}
	orch := key("orchestrator")
	orch.Handler = func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		r, err := task.Delegate(ctx, "research", agent.UserText("look"))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: r.Output, Usage: &schemas.Usage{InputTokens: 5}}, nil
	}
	for _, c := range []*agent.Config{research, orch} {
		cl, err := agent.Connect(cctx, *c)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
	}
	tomas, err := agent.Connect(cctx, *key("tomas"))
	if err != nil {
		t.Fatal(err)
	}
	defer tomas.Close()
	reply, err := tomas.Start(cctx, "orchestrator", agent.UserText("brief"))
	if err != nil {
		t.Fatal(err)
	}
	if reply.Status != schemas.StateCompleted || !strings.Contains(agent.MessageText(reply.Output), "policy") {
		t.Fatalf("reply %s %q", reply.Status, agent.MessageText(reply.Output))
	}

	// The operator's kill switch on a finished run is refused with a reason.
	_, _, err = tollgate(t, cctx, "run", "halt", reply.RunID, "--nats", url, "--operator", "ops",
		"--key", filepath.Join(dir, "keys", "ops.nk"), "--reason", "test")
	if err == nil || !strings.Contains(err.Error(), "has completed") {
		t.Fatalf("halt of a completed run: %v", err)
	}
	// A key that is not an operator's cannot even publish the command.
	_, _, err = tollgate(t, cctx, "run", "halt", reply.RunID, "--nats", url, "--operator", "research",
		"--key", filepath.Join(dir, "keys", "research.nk"), "--reason", "test", "--timeout", "500ms")
	if err == nil {
		t.Fatal("an agent halted a run")
	}
}

func waitURL(t *testing.T, out *syncBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`serving on (nats://[0-9.:]+)`)
	return brokertest.WaitFor(t, 20*time.Second, func() (string, error) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], nil
		}
		return "", fmt.Errorf("serve printed no URL: %q", out.String())
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
