package security_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/notify"
	"github.com/tollgate/tollgate/schemas"
)

// webhook is a real HTTP server standing for an on-call webhook.
type webhook struct {
	*httptest.Server
	mu     sync.Mutex
	alerts []schemas.Alert
	sigOK  []bool
}

func newWebhook(t *testing.T, secret string) *webhook {
	w := &webhook{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a schemas.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.alerts = append(w.alerts, a)
		w.sigOK = append(w.sigOK, r.Header.Get(notify.SignatureHeader) == notify.Sign([]byte(secret), body))
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhook) forRun(run string) (n int, signed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	signed = true
	for i, a := range w.alerts {
		if a.RunID == run {
			n++
			signed = signed && w.sigOK[i]
		}
	}
	return n, signed
}

// scrape reads the admin listener's /metrics into name{labels} → value.
func (g *gw) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds the samples of a metric whose labels contain every part.
func sum(m map[string]float64, name string, parts ...string) float64 {
	var s float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		if slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(k, p) }) {
			continue
		}
		s += v
	}
	return s
}

const forbidSink = `
@id("no-sink-after-reload")
forbid (principal, action == Action::"invoke", resource == Agent::"sink");
`

// TestOperateLiveGateway is the operator's day, against a serve process
// with an admin listener and an alert webhook: traffic flows; /metrics
// agrees with the ledger; a policy reloaded by SIGHUP and then by a signed
// `tollgate reload` decides the very next hop; an agent disabled with
// `tollgate agent disable` and a reload is cut off; runs are listed and
// replayed while the gateway runs; an operator's halt reaches the webhook
// (signed) and `tollgate alerts tail`; the logs say what happened.
func TestOperateLiveGateway(t *testing.T) {
	hook := newWebhook(t, "on-call-secret")
	g := startGateway(t, embedded, setup{admin: true, serveArgs: []string{"--log-level", "debug"}, alerts: map[string]any{
		"sinks": []map[string]any{
			{"name": "oncall", "type": "webhook", "url": hook.URL, "secret": "on-call-secret"},
			// A sink nobody answers: its alerts land in the dead letters.
			{"name": "broken", "type": "webhook", "url": "http://127.0.0.1:1/hook"},
		},
		"retry": map[string]any{"initial_interval": "50ms", "max_interval": "100ms", "max_retries": 2},
	}})
	ops := filepath.Join(g.dir, "ops.nk")
	reloadArgs := []string{"reload", "--config", g.config, "--operator", "ops", "--key", ops, "--reason", "test"}
	sinkLive := g.watch(t, "sink")
	g.agentClient(t, "sink", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		return &agent.Result{Output: agent.AgentText("sink ok")}, nil
	})
	toSink := func() error {
		_, err := g.cast.tomas.Start(testCtx(t, 30*time.Second), "sink", agent.UserText("x"))
		return err
	}

	// Traffic.
	legit := g.cast.legit(t)
	if err := toSink(); err != nil {
		t.Fatalf("a run to sink: %v", err)
	}

	// A policy reloaded by SIGHUP decides the next hop.
	policyFile := filepath.Join(g.dir, "policy.cedar")
	if err := os.WriteFile(policyFile, []byte(policies+forbidSink), 0o600); err != nil {
		t.Fatal(err)
	}
	g.reload(t)
	var denied *agent.DeniedError
	if err := toSink(); !errors.As(err, &denied) || !slices.Contains(denied.Denial.PolicyIDs, "no-sink-after-reload") {
		t.Fatalf("after the SIGHUP reload, a run to sink: %v", err)
	}
	// And one reloaded by the signed operator command.
	if err := os.WriteFile(policyFile, []byte(policies), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := g.cli(t, reloadArgs...); err != nil || !strings.Contains(out, "reloaded") {
		t.Fatalf("tollgate reload: %v\n%s%s", err, out, errOut)
	}
	if err := toSink(); err != nil {
		t.Fatalf("after tollgate reload, a run to sink: %v", err)
	}
	// A config that does not validate is refused with its problems; the
	// running one stays.
	if err := os.WriteFile(policyFile, []byte(policies+"permit (principal, action, resource"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := g.cli(t, reloadArgs...); err == nil || !strings.Contains(errOut, "reload refused") || !strings.Contains(errOut, "policy.cedar") {
		t.Fatalf("a broken policy was not refused: %v\n%s", err, errOut)
	}
	if err := toSink(); err != nil {
		t.Fatalf("after a refused reload, a run to sink: %v", err)
	}
	if err := os.WriteFile(policyFile, []byte(policies), 0o600); err != nil {
		t.Fatal(err)
	}

	// An agent disabled with the CLI is cut off at the reload.
	if out, errOut, err := g.cli(t, "agent", "disable", "sink", "--config", g.config); err != nil {
		t.Fatalf("agent disable: %v\n%s%s", err, out, errOut)
	}
	if _, errOut, err := g.cli(t, reloadArgs...); err != nil {
		t.Fatalf("tollgate reload: %v\n%s", err, errOut)
	}
	sinkLive.wantClosed(t, "sink was disabled")
	g.cannotConnect(t, "sink", g.keys["sink"])
	if err := toSink(); !errors.As(err, &denied) {
		t.Fatalf("a run to a disabled agent: %v", err)
	}

	// Reads while the gateway runs.
	if out, errOut, err := g.cli(t, "replay", legit, "--nats", g.url, "--creds", ops); err != nil || !strings.Contains(out, "research") {
		t.Fatalf("replay: %v\n%s%s", err, out, errOut)
	}

	// An operator's halt reaches the webhook and alerts tail.
	open := g.cast.open(t)
	tail := exec.Command(tollgateBin, "alerts", "tail", "--run", open.ID, "--count", "1", "--nats", g.url, "--creds", ops)
	var tailOut strings.Builder
	tailErr := &syncBuffer{}
	tail.Stdout, tail.Stderr = &tailOut, tailErr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tail.Process.Kill() })
	brokertest.Eventually(t, 20*time.Second, "alerts tail follows", func() bool { return strings.Contains(tailErr.String(), "following alerts") })
	if out, errOut, err := g.cli(t, "run", "halt", open.ID, "--nats", g.url, "--operator", "ops", "--key", ops, "--reason", "incident drill"); err != nil {
		t.Fatalf("run halt: %v\n%s%s", err, out, errOut)
	}
	brokertest.Eventually(t, 30*time.Second, "the webhook gets the alert", func() bool { n, _ := hook.forRun(open.ID); return n == 1 })
	if _, signed := hook.forRun(open.ID); !signed {
		t.Error("the webhook's alert is not signed with the sink's secret")
	}
	done := make(chan error, 1)
	go func() { done <- tail.Wait() }()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(tailOut.String(), open.ID) || !strings.Contains(tailOut.String(), "incident drill") {
			t.Fatalf("alerts tail: %v\n%s%s", err, tailOut.String(), tailErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("alerts tail did not print the alert:\n%s", tailErr.String())
	}
	// The broken sink's copy is a dead letter; the healthy sink got it once.
	brokertest.Eventually(t, 30*time.Second, "alerts dead lists the broken sink's alert", func() bool {
		out, _, err := g.cli(t, "alerts", "dead", "--json", "--nats", g.url, "--creds", ops)
		var dead []struct {
			Sink, Reason string
			RunID        string `json:"run_id"`
		}
		return err == nil && json.Unmarshal([]byte(out), &dead) == nil && len(dead) == 1 &&
			dead[0].Sink == "broken" && dead[0].RunID == open.ID && strings.Contains(dead[0].Reason, "connection refused")
	})
	if n, _ := hook.forRun(open.ID); n != 1 {
		t.Errorf("the healthy sink got the alert %d times", n)
	}

	// /metrics agrees with the ledger.
	var allowed, deniedN, halted int
	before := g.ops.snapshot(t)
	for subj := range before.subjects {
		run, _ := g.subj.LedgerRun(subj)
		for _, r := range g.ops.read(t, run) {
			switch r.Event.Type {
			case schemas.EventHopAllowed:
				allowed++
			case schemas.EventHopDenied:
				deniedN++
			case schemas.EventRunHalted:
				halted++
			}
		}
	}
	m := g.scrape(t)
	if got := sum(m, "tollgate_hops_total", `decision="allowed"`); int(got) != allowed {
		t.Errorf("tollgate_hops_total allowed %v, the ledger has %d", got, allowed)
	}
	if got := sum(m, "tollgate_hops_total", `decision="denied"`); int(got) != deniedN {
		t.Errorf("tollgate_hops_total denied %v, the ledger has %d", got, deniedN)
	}
	if got := sum(m, "tollgate_hops_total", `decision="denied"`, `reason="policy"`); got < 1 {
		t.Errorf("no policy denial counted: %v", got)
	}
	if got := sum(m, "tollgate_halts_total"); int(got) != halted || halted != 1 {
		t.Errorf("tollgate_halts_total %v, the ledger has %d", got, halted)
	}
	if got := sum(m, "tollgate_decision_seconds_count"); int(got) < allowed+deniedN {
		t.Errorf("tollgate_decision_seconds_count %v < %d decisions", got, allowed+deniedN)
	}
	for name, want := range map[string]float64{
		`tollgate_reloads_total{outcome="ok"}`:                               3,
		`tollgate_reloads_total{outcome="refused"}`:                          1,
		`tollgate_alert_deliveries_total{outcome="delivered",sink="oncall"}`: 1,
		`tollgate_alerts_total`:                                              1,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
	for _, name := range []string{"tollgate_open_runs", "tollgate_run_cache_bytes", "tollgate_pending_submissions", "tollgate_submit_to_deliver_seconds_count"} {
		if _, ok := m[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	resp, err := http.Get("http://" + g.adminAddr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	// The logs say what happened; no line per allowed hop above debug.
	logs := g.out.String()
	for _, want := range []string{`msg="hop denied"`, "no-sink-after-reload", `msg=reloaded by=SIGHUP`, `by="operator ops"`,
		`msg="reload refused`, `msg="run halted"`, `msg="identity disabled" id=sink`, `msg="alert delivered" sink=oncall run=` + open.ID} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %q", want)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "allowed") && strings.Contains(line, "level=INFO") && strings.Contains(line, "hop") {
			t.Errorf("an allowed hop logged above debug: %s", line)
		}
	}
	// Shutdown is logged.
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 30*time.Second, "serve logs its shutdown", func() bool {
		return strings.Contains(g.out.String(), `msg="shutting down"`) && strings.Contains(g.out.String(), "msg=stopped")
	})
}
