package demo

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// A2A is the incident over the A2A HTTP binding: tomas calls the
// orchestrator with an unmodified A2A client through the gateway's HTTP
// ingress (his own bearer token), and the critic is an unmodified A2A
// server behind a bridge. The shipped policy still denies the
// re-invocation.
const A2A = "a2a"

// a2aCritic is the critic as an a2a-go/v2 server: it answers with an
// artifact and reports its usage in the task's metadata.
type a2aCritic struct{}

func (a2aCritic) Execute(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if ec.StoredTask == nil && !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		if !yield(a2a.NewArtifactEvent(ec, a2a.NewTextPart("reviewed the draft over A2A: two fixes")), nil) {
			return
		}
		done := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil)
		done.Metadata = map[string]any{a2ahttp.UsageMetadataKey: map[string]any{"input_tokens": 900, "output_tokens": 200, "cost_usd": 0.011}}
		yield(done, nil)
	}
}

func (a2aCritic) Cancel(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

// serveCritic starts the critic's A2A server on a loopback port and puts
// it behind the gateway with a bridge. The returned func stops both.
func serveCritic(ctx context.Context, g *gateway.Gateway, key nkeys.KeyPair, say func(string, ...any)) (func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	url := "http://" + ln.Addr().String()
	card := &a2a.AgentCard{
		Name: "critic", Description: "reviews drafts (an unmodified a2a-go/v2 server)", Version: "1.0.0",
		SupportedInterfaces: []*a2a.AgentInterface{a2a.NewAgentInterface(url+"/", a2a.TransportProtocolJSONRPC)},
		DefaultInputModes:   []string{"text/plain"}, DefaultOutputModes: []string{"text/plain"},
		Capabilities: a2a.AgentCapabilities{Streaming: true},
		Skills:       []a2a.AgentSkill{{ID: "review", Name: "review", Description: "reviews a draft", Tags: []string{"review"}}},
	}
	mux := http.NewServeMux()
	mux.Handle(a2asrv.WellKnownAgentCardPath, a2asrv.NewStaticAgentCardHandler(card))
	mux.Handle("/", a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(a2aCritic{})))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b, err := a2ahttp.StartBridge(ctx, a2ahttp.BridgeConfig{
		Agent: agent.Config{ID: "critic", Key: key, InProcess: g.Embedded()}, ServerURL: url,
	})
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	g.SetAgentCard("critic", b.Card())
	say("critic is an A2A server at %s, bridged into the gateway", url)
	return func() { b.Close(); _ = srv.Close() }, nil
}

// bearer adds a bearer token to a client's requests.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// startOverA2A is tomas's call to the orchestrator over A2A HTTP: an
// a2a-go/v2 client reads the card the gateway serves and sends the
// message through the ingress. It returns the run (the task's context).
func startOverA2A(ctx context.Context, g *gateway.Gateway, text string, say func(string, ...any)) (run string, state a2a.TaskState, err error) {
	tok, _, err := g.Bearer().Issue(User, time.Hour)
	if err != nil {
		return "", "", err
	}
	hc := &http.Client{Transport: bearer(tok)}
	base := "http://" + g.HTTPAddr() + "/orchestrator"
	card, err := agentcard.NewResolver(hc).Resolve(ctx, base)
	if err != nil {
		return "", "", fmt.Errorf("card of the orchestrator at the gateway: %w", err)
	}
	say("%s reads the orchestrator's card at %s/.well-known/agent-card.json and calls it over A2A (%s)", User, base, card.SupportedInterfaces[0].ProtocolBinding)
	c, err := a2aclient.NewFromCard(ctx, card, a2aclient.WithJSONRPCTransport(hc))
	if err != nil {
		return "", "", err
	}
	defer func() { _ = c.Destroy() }()
	res, err := c.SendMessage(ctx, &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart(text))})
	if err != nil {
		return "", "", fmt.Errorf("A2A call: %w", err)
	}
	t, ok := res.(*a2a.Task)
	if !ok {
		return "", "", errors.New("the gateway answered with no task")
	}
	return t.ContextID, t.Status.State, nil
}
