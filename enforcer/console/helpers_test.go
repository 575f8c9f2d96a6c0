package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/demo"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// fixture is a gateway with the console on its admin listener (a real
// embedded NATS JetStream), the demo's cast keys, a console token and an
// operator, and the incident's run in its ledger.
type fixture struct {
	g        *gateway.Gateway
	base     string
	token    string
	opSeed   string
	keys     map[string]nkeys.KeyPair
	incident string
}

const operatorID = "oncall"

func start(t *testing.T) *fixture {
	t.Helper()
	f := startWith(t)
	f.incident = f.play(t)
	return f
}

// startWith starts the fixture with extra policies besides the shipped
// ones, and no run yet.
func startWith(t *testing.T, extra ...policy.File) *fixture {
	t.Helper()
	return startConfigured(t, nil, extra...)
}

// startConfigured is startWith with the demo's config changed by change
// (which may add identities and their keys) before the gateway starts.
func startConfigured(t *testing.T, change func(*gateway.Config, map[string]nkeys.KeyPair), extra ...policy.File) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cfg, keys, err := demo.Config(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(cfg, keys)
	}
	token, hash, err := console.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	op, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	opPub, _ := op.PublicKey()
	opSeed, _ := op.Seed()
	cfg.Operators = []gateway.OperatorConfig{{ID: operatorID, PublicKey: opPub, Groups: []string{"finance"}}}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Console.Tokens = []console.Token{{Name: "auditors", SHA256: hash}}
	cfg.Admin.Console.TraceURL = "http://tracing.example/trace/{trace_id}"
	files, err := demo.Policies(demo.Incident)
	if err != nil {
		t.Fatal(err)
	}
	loop, err := demo.Policies(demo.Loop)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Start(ctx, cfg, gateway.Options{Policies: append(files, extra...), CandidatePolicies: []console.PolicySource{{Name: "loop", Files: loop}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	return &fixture{g: g, base: "http://" + g.AdminAddr() + console.Prefix, token: token, opSeed: string(opSeed), keys: keys}
}

// play runs the demo's incident through the gateway and returns its run.
func (f *fixture) play(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reply, err := demo.Play(ctx, demo.Bus{InProcess: f.g.Embedded()}, demo.Incident, f.keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reply.RunID
}

// delegateHeld starts a run of the demo's user at an orchestrator that
// delegates to the writer, and returns the run once the orchestrator has
// asked (the delegation is then up to the gateway).
func (f *fixture) delegateHeld(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	got := make(chan string, 1)
	orch, err := agent.Connect(ctx, agent.Config{ID: "orchestrator", Key: f.keys["orchestrator"], InProcess: f.g.Embedded(),
		Handler: func(_ context.Context, task *agent.Task) (*agent.Result, error) {
			got <- task.Context.RunID
			// Waits for the approval until the test ends (cancel runs
			// before the clients close).
			r, err := task.Delegate(ctx, "writer", agent.UserText("draft"))
			if err != nil {
				return nil, err
			}
			return &agent.Result{Output: r.Output}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orch.Close)
	user, err := agent.Connect(ctx, agent.Config{ID: demo.User, Key: f.keys[demo.User], InProcess: f.g.Embedded()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(user.Close)
	t.Cleanup(cancel)
	go func() { _, _ = user.Start(ctx, "orchestrator", agent.UserText("brief")) }()
	select {
	case run := <-got:
		return run
	case <-time.After(30 * time.Second):
		t.Fatal("the run never reached the orchestrator")
	}
	return ""
}

// hold starts a run of the demo's user at an orchestrator that keeps the
// root hop open until the test ends; it returns the run once the hop is
// delivered.
func (f *fixture) hold(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	got := make(chan string, 1)
	orch, err := agent.Connect(ctx, agent.Config{ID: "orchestrator", Key: f.keys["orchestrator"], InProcess: f.g.Embedded(),
		Handler: func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
			got <- task.Context.RunID
			<-ctx.Done()
			return nil, ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orch.Close)
	user, err := agent.Connect(ctx, agent.Config{ID: demo.User, Key: f.keys[demo.User], InProcess: f.g.Embedded()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(user.Close)
	go func() { _, _ = user.Start(ctx, "orchestrator", agent.UserText("hold")) }()
	select {
	case run := <-got:
		return run
	case <-time.After(30 * time.Second):
		t.Fatal("the held run never reached the orchestrator")
	}
	return ""
}

// client is a browser-like HTTP client with a cookie jar.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// call sends a request and returns the status and body.
func call(t *testing.T, c *http.Client, method, url string, body any, hdr ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// login logs c in with the console token.
func (f *fixture) login(t *testing.T, c *http.Client) {
	t.Helper()
	if st, b := call(t, c, "POST", f.base+"/api/login", map[string]string{"token": f.token}); st != http.StatusOK {
		t.Fatalf("token login: %d %s", st, b)
	}
}

// decode unmarshals b into v or fails the test.
func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", strings.TrimSpace(string(b)), err)
	}
}

// ledgerEvents reads a run's event types.
func (f *fixture) ledgerEvents(t *testing.T, run string) []schemas.EventType {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := f.g.Ledger().Read(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.EventType
	for _, r := range recs {
		out = append(out, r.Event.Type)
	}
	return out
}

// retryRun runs the retry scenario (enforcertest.RunRetries) in process
// and returns its run.
func (f *fixture) retryRun(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return enforcertest.RunRetries(ctx, t, agent.Config{InProcess: f.g.Embedded()}, f.keys, demo.User)
}
