package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
)

var policies = []policy.File{{Name: "p.cedar", Src: []byte(
	`permit (principal is User, action, resource) when { resource.tags.contains("entry") };
	 permit (principal is Agent, action, resource is Agent);`)}}

type cast struct {
	keys map[string]nkeys.KeyPair
	cfg  *gateway.Config
}

func newCast(t testing.TB, ids ...gateway.IdentityConfig) *cast {
	t.Helper()
	c := &cast{keys: map[string]nkeys.KeyPair{}, cfg: &gateway.Config{NATS: gateway.NATSConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:-1"}}}
	for _, id := range ids {
		c.add(t, id)
	}
	return c
}

func (c *cast) add(t testing.TB, id gateway.IdentityConfig) {
	t.Helper()
	kp, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c.keys[id.ID] = kp
	id.PublicKey, _ = kp.PublicKey()
	if id.Type == "user" {
		c.cfg.Users = append(c.cfg.Users, id)
	} else {
		c.cfg.Agents = append(c.cfg.Agents, id)
	}
}

func start(t *testing.T, c *cast) *gateway.Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, c.cfg, gateway.Options{Policies: policies})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(context.Background()) })
	return g
}

// TestReloadIdentities: identities added, disabled and rotated by a reload
// take effect on the running gateway; a disabled identity's live
// connection is cut.
func TestReloadIdentities(t *testing.T) {
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "orchestrator", Tags: []string{"entry"}},
		gateway.IdentityConfig{ID: "writer"})
	g := start(t, c)
	url := g.Embedded().ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	closed := make(chan struct{})
	writerConn, err := broker.Connect(broker.ConnectConfig{URL: url, Key: c.keys["writer"], Name: "writer",
		Options: []nats.Option{nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) })}})
	if err != nil {
		t.Fatal(err)
	}
	defer writerConn.Close()

	// Reload: disable writer, add critic.
	next := *c.cfg
	next.Agents = append([]gateway.IdentityConfig(nil), c.cfg.Agents...)
	for i := range next.Agents {
		if next.Agents[i].ID == "writer" {
			next.Agents[i].Disabled = true
		}
	}
	nc := &cast{keys: c.keys, cfg: &next}
	nc.add(t, gateway.IdentityConfig{ID: "critic"})
	if err := g.Reload(ctx, nc.cfg, gateway.Options{Policies: policies}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the disabled writer's connection is still open")
	}
	if _, err := broker.Connect(broker.ConnectConfig{URL: url, Key: c.keys["writer"], Options: []nats.Option{nats.MaxReconnects(0)}}); err == nil {
		t.Fatal("a disabled identity connected")
	}

	// The added critic is served at once.
	critic, err := agent.Connect(ctx, agent.Config{ID: "critic", Key: c.keys["critic"], URL: url,
		Handler: func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
			return &agent.Result{Output: agent.AgentText("ok")}, nil
		}})
	if err != nil {
		t.Fatalf("critic, added by the reload: %v", err)
	}
	defer critic.Close()
	orch, err := agent.Connect(ctx, agent.Config{ID: "orchestrator", Key: c.keys["orchestrator"], URL: url,
		Handler: func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
			if _, err := t.Delegate(ctx, "critic", agent.UserText("review")); err != nil {
				return nil, err
			}
			_, err := t.Delegate(ctx, "writer", agent.UserText("draft"))
			var denied *agent.DeniedError
			if !errors.As(err, &denied) || !strings.Contains(denied.Denial.Message, "disabled") {
				return nil, errors.New("writer was not denied as disabled: " + err.Error())
			}
			return &agent.Result{Output: agent.AgentText("done")}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	tomas, err := agent.Connect(ctx, agent.Config{ID: "tomas", Key: c.keys["tomas"], URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer tomas.Close()
	r, err := tomas.Start(ctx, "orchestrator", agent.UserText("go"))
	if err != nil || agent.MessageText(r.Output) != "done" {
		t.Fatalf("run after the reload: %+v %v", r, err)
	}
}

// TestReloadRefusesBadConfig: a config that does not validate, or that
// changes what needs a restart, is refused whole and the old one serves.
func TestReloadRefusesBadConfig(t *testing.T) {
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "orchestrator", Tags: []string{"entry"}})
	g := start(t, c)
	ctx := context.Background()
	bad := *c.cfg
	bad.Agents = append([]gateway.IdentityConfig{{ID: "Bad Id"}}, c.cfg.Agents...)
	if err := g.Reload(ctx, &bad, gateway.Options{Policies: policies}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("reload of a bad config: %v", err)
	}
	moved := *c.cfg
	moved.NATS.SubjectPrefix = "other"
	if err := g.Reload(ctx, &moved, gateway.Options{Policies: policies}); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload of a new subject prefix: %v", err)
	}
	if _, ok := g.Registry().Dir.Get("orchestrator"); !ok {
		t.Fatal("the running registry was replaced")
	}
	js, err := jetstream.New(g.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, "LEDGER"); err != nil {
		t.Fatalf("the bus after refused reloads: %v", err)
	}
}

// TestExternalServer: a gateway on a separate nats-server process whose
// config includes the accounts file the gateway writes; identities added
// by a reload are served at once, because the gateway reloads the server
// through its system account.
func TestExternalServer(t *testing.T) {
	dir := t.TempDir()
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "orchestrator", Tags: []string{"entry"}})
	for _, seed := range []string{"gateway.nk", "system.nk"} {
		kp, _ := broker.NewKey()
		if err := broker.WriteSeed(filepath.Join(dir, seed), kp); err != nil {
			t.Fatal(err)
		}
	}
	c.cfg.NATS = gateway.NATSConfig{Credentials: filepath.Join(dir, "gateway.nk"), AccountsFile: filepath.Join(dir, "accounts.conf"),
		SystemCredentials: filepath.Join(dir, "system.nk")}
	accounts, err := gateway.AccountsConfig(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := brokertest.StartExternal(t, dir, "include accounts.conf\n")
	c.cfg.NATS.URL = srv.URL
	g := start(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	next := *c.cfg
	next.Agents = append([]gateway.IdentityConfig(nil), c.cfg.Agents...)
	nc := &cast{keys: c.keys, cfg: &next}
	nc.add(t, gateway.IdentityConfig{ID: "critic"})
	if err := g.Reload(ctx, nc.cfg, gateway.Options{Policies: policies}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	serve := func(id string, h agent.Handler) *agent.Client {
		a, err := agent.Connect(ctx, agent.Config{ID: id, Key: c.keys[id], URL: srv.URL, Handler: h})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		t.Cleanup(a.Close)
		return a
	}
	serve("critic", func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		return &agent.Result{Output: agent.AgentText("reviewed")}, nil
	})
	serve("orchestrator", func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		r, err := t.Delegate(ctx, "critic", agent.UserText("review"))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: r.Output}, nil
	})
	tomas := serve("tomas", nil)
	r, err := tomas.Start(ctx, "orchestrator", agent.UserText("go"))
	if err != nil || agent.MessageText(r.Output) != "reviewed" {
		t.Fatalf("run through the external server: %+v %v", r, err)
	}
}

// TestAdminListener: /healthz and /readyz answer on admin.listen; a port
// in use is an immediate error naming the address.
func TestAdminListener(t *testing.T) {
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "orchestrator", Tags: []string{"entry"}})
	c.cfg.Admin.Listen = "127.0.0.1:0"
	g := start(t, c)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + g.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v %v", path, resp.StatusCode, body, err)
		}
		if path == "/readyz" && body["ready"] != true {
			t.Fatalf("not ready: %v", body)
		}
	}
	// A governed run shows in the metrics.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	orch, err := agent.Connect(ctx, agent.Config{ID: "orchestrator", Key: c.keys["orchestrator"], URL: g.Embedded().ClientURL(),
		Handler: func(ctx context.Context, t *agent.Task) (*agent.Result, error) { return &agent.Result{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	tomas, err := agent.Connect(ctx, agent.Config{ID: "tomas", Key: c.keys["tomas"], URL: g.Embedded().ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer tomas.Close()
	if _, err := tomas.Start(ctx, "orchestrator", agent.UserText("go")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tollgate_hops_total{decision="allowed",reason=""} 1`, "tollgate_decision_seconds_count 2",
		"tollgate_run_cache_bytes", "tollgate_pending_submissions", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	taken := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"})
	taken.cfg.Admin.Listen = g.AdminAddr()
	_, err = gateway.Start(context.Background(), taken.cfg, gateway.Options{Policies: policies})
	if err == nil || !strings.Contains(err.Error(), g.AdminAddr()) {
		t.Fatalf("an admin address in use: %v", err)
	}
}

// TestNATSPortInUse: an embedded server's port already taken is an
// immediate error naming the address, not a wait for readiness.
func TestNATSPortInUse(t *testing.T) {
	g := start(t, newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}))
	addr := strings.TrimPrefix(g.Embedded().ClientURL(), "nats://")
	taken := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"})
	taken.cfg.NATS.Listen = addr
	began := time.Now()
	_, err := gateway.Start(context.Background(), taken.cfg, gateway.Options{Policies: policies})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("a NATS address in use: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("refused after %s", d)
	}
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNATSAuthFailuresLogged: a connection with a key the embedded server
// does not know, and a publish outside an identity's imports, reach the
// gateway's log at warn (only the server sees them).
func TestNATSAuthFailuresLogged(t *testing.T) {
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"})
	var logs lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, c.cfg, gateway.Options{Policies: policies, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(context.Background()) })
	url := g.Embedded().ClientURL()

	stranger, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(url, nkeyOption(t, stranger), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a key the server does not know connected")
	}
	brokertest.Eventually(t, 10*time.Second, "the refused key in the log", func() bool {
		return strings.Contains(logs.String(), "nats authentication failed")
	})

	nc, err := nats.Connect(url, nkeyOption(t, c.keys["tomas"]))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("tg.ledger.somebodys-run", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	brokertest.Eventually(t, 10*time.Second, "the violation in the log", func() bool {
		return strings.Contains(logs.String(), "nats permissions violation")
	})
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("not at warn:\n%s", logs.String())
	}
}

func nkeyOption(t *testing.T, kp nkeys.KeyPair) nats.Option {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return nats.Nkey(pub, kp.Sign)
}
