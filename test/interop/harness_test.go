package interop

import (
	"context"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
)

// policies: users start runs at entry agents; agents delegate to agents,
// except to the vault.
var policies = []policy.File{{Name: "interop.cedar", Src: []byte(`
@id("users-start-at-entry")
permit (principal is User, action == Action::"invoke", resource is Agent) when { resource.tags.contains("entry") };
@id("agents-delegate")
permit (principal is Agent, action == Action::"invoke", resource is Agent);
@id("nobody-reaches-the-vault")
forbid (principal, action, resource == Agent::"vault");
`)}}

// env is a gateway with its HTTP listener, and the identities' keys.
type env struct {
	t    testing.TB
	g    *gateway.Gateway
	cfg  *gateway.Config
	keys map[string]nkeys.KeyPair
	base string // http://addr of the gateway's listener
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with the config changed by edit before the gateway
// starts.
func newEnvWith(t testing.TB, edit func(e *env)) *env {
	t.Helper()
	e := &env{t: t, keys: map[string]nkeys.KeyPair{}}
	e.cfg = &gateway.Config{NATS: gateway.NATSConfig{DataDir: t.TempDir(), Listen: "none"}, HTTP: gateway.HTTPConfig{Listen: "127.0.0.1:0"}}
	for _, id := range []gateway.IdentityConfig{
		{ID: "alice", Type: "user"}, {ID: "bob", Type: "user"},
		{ID: "planner", Tags: []string{"entry"}}, {ID: "researcher"}, {ID: "vault"},
		{ID: "sleeper", Tags: []string{"entry"}}, {ID: "jsagent", Tags: []string{"entry"}}, {ID: "jslegacy", Tags: []string{"entry"}},
	} {
		kp, err := broker.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		e.keys[id.ID] = kp
		id.PublicKey, _ = kp.PublicKey()
		if id.Type == "user" {
			e.cfg.Users = append(e.cfg.Users, id)
		} else {
			e.cfg.Agents = append(e.cfg.Agents, id)
		}
	}
	if edit != nil {
		edit(e)
	}
	e.start()
	t.Cleanup(func() { e.g.Close(context.Background()) })
	return e
}

// start starts the gateway of e's config.
func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, e.cfg, gateway.Options{Policies: policies, Logger: testLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.g, e.base = g, "http://"+g.HTTPAddr()
}

// restart stops the gateway and starts a new one on the same data (its
// NATS store, ledger and keys): serve restarted.
func (e *env) restart() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.g.Close(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

// token mints a bearer token for id.
func (e *env) token(id string) string {
	e.t.Helper()
	tok, _, err := e.g.Bearer().Issue(id, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// bearerTransport adds a bearer token to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func httpClientFor(token string) *http.Client {
	return &http.Client{Transport: bearerTransport{token}, Timeout: 60 * time.Second}
}

// client is an a2a-go/v2 client of agent at the gateway, as the holder of
// token: it reads the card the gateway serves and follows it.
func (e *env) client(agentID, token string) *a2aclient.Client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := httpClientFor(token)
	card, err := agentcard.NewResolver(hc).Resolve(ctx, e.base+"/"+agentID)
	if err != nil {
		e.t.Fatalf("card of %s: %v", agentID, err)
	}
	c, err := a2aclient.NewFromCard(ctx, card, a2aclient.WithJSONRPCTransport(hc))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// work is what an A2A test server does with a message: its answer text,
// the usage it reports, or an error (the task fails).
type work func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error)

// executor is an a2a-go/v2 AgentExecutor running work: the task,
// an artifact with the answer, and the final status with the usage.
type executor struct {
	do    work
	calls atomic.Int64
}

func (x *executor) Execute(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		x.calls.Add(1)
		if ec.StoredTask == nil && !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		text, usage, err := x.do(ctx, ec)
		if err != nil {
			st := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateFailed, a2a.NewMessage(a2a.MessageRoleAgent, a2a.NewTextPart(err.Error())))
			yield(st, nil)
			return
		}
		if !yield(a2a.NewArtifactEvent(ec, a2a.NewTextPart(text)), nil) {
			return
		}
		st := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil)
		if usage != nil {
			st.Metadata = map[string]any{a2ahttp.UsageMetadataKey: usage}
		}
		yield(st, nil)
	}
}

func (x *executor) Cancel(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

// a2aServer serves x as an unmodified a2a-go/v2 JSON-RPC server with its
// card, and returns its base URL.
func a2aServer(t testing.TB, name string, x *executor) string {
	t.Helper()
	return a2aServerOf(t, name, x)
}

// a2aServerOf serves any a2a-go/v2 executor x as a2aServer does.
func a2aServerOf(t testing.TB, name string, x a2asrv.AgentExecutor) string {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	card := &a2a.AgentCard{
		Name: name, Description: name + " (an a2a-go/v2 server)", Version: "1.0.0",
		SupportedInterfaces: []*a2a.AgentInterface{a2a.NewAgentInterface(srv.URL+"/", a2a.TransportProtocolJSONRPC)},
		DefaultInputModes:   []string{"text/plain"}, DefaultOutputModes: []string{"text/plain"},
		Capabilities: a2a.AgentCapabilities{Streaming: true},
		Skills:       []a2a.AgentSkill{{ID: name, Name: name, Description: name, Tags: []string{name}}},
	}
	mux.Handle(a2asrv.WellKnownAgentCardPath, a2asrv.NewStaticAgentCardHandler(card))
	mux.Handle("/", a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(x)))
	return srv.URL
}

// bridge puts the A2A server at url behind the gateway as agent id.
func (e *env) bridge(id, url string) *a2ahttp.Bridge {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := a2ahttp.StartBridge(ctx, a2ahttp.BridgeConfig{
		Agent:     agent.Config{ID: id, Key: e.keys[id], InProcess: e.g.Embedded(), Logger: testLogger()},
		ServerURL: url, Logger: testLogger(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(b.Close)
	e.g.SetAgentCard(id, b.Card())
	return b
}

// text joins the text of a task's artifacts and status message.
func text(t *a2a.Task) string {
	var s string
	for _, a := range t.Artifacts {
		for _, p := range a.Parts {
			s += p.Text()
		}
	}
	if t.Status.Message != nil {
		for _, p := range t.Status.Message.Parts {
			s += p.Text()
		}
	}
	return s
}

func userText(s string) *a2a.SendMessageRequest {
	return &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart(s))}
}

func must[T any](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// testLogger logs to stderr when TOLLGATE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("TOLLGATE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
