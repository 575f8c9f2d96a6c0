package main

import (
	"context"
	"iter"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// echoExecutor is an unmodified a2a-go/v2 server's executor: it answers
// "echo: <text>" as an artifact and reports its usage in the final
// status's metadata.
type echoExecutor struct{}

func (echoExecutor) Execute(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if ec.StoredTask == nil && !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		var in string
		for _, p := range ec.Message.Parts {
			in += p.Text()
		}
		if !yield(a2a.NewArtifactEvent(ec, a2a.NewTextPart("echo: "+in)), nil) {
			return
		}
		st := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil)
		st.Metadata = map[string]any{a2ahttp.UsageMetadataKey: map[string]any{"input_tokens": 7, "output_tokens": 3}}
		yield(st, nil)
	}
}

func (echoExecutor) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

// TestBridgeCommand: `tollgate bridge` run beside a `tollgate serve` (both
// through the cobra commands, over TCP) puts an unmodified a2a-go/v2
// server behind the gateway as the orchestrator: a user's task reaches the
// server and its answer and usage come back as the hop's reply. A bridge
// whose server has no card fails with a reason.
func TestBridgeCommand(t *testing.T) {
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
	natsURL := waitURL(t, out)

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	card := &a2a.AgentCard{
		Name: "echo", Description: "an a2a-go/v2 server", Version: "1.0.0",
		SupportedInterfaces: []*a2a.AgentInterface{a2a.NewAgentInterface(srv.URL+"/", a2a.TransportProtocolJSONRPC)},
		DefaultInputModes:   []string{"text/plain"}, DefaultOutputModes: []string{"text/plain"},
		Capabilities: a2a.AgentCapabilities{Streaming: true},
		Skills:       []a2a.AgentSkill{{ID: "echo", Name: "echo", Description: "echo", Tags: []string{"echo"}}},
	}
	mux.Handle(a2asrv.WellKnownAgentCardPath, a2asrv.NewStaticAgentCardHandler(card))
	mux.Handle("/", a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(echoExecutor{})))

	seed := filepath.Join(dir, "keys", "orchestrator.nk")
	bctx, bcancel := context.WithCancel(context.Background())
	bout := &syncBuffer{}
	bdone := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"bridge", "--agent", "orchestrator", "--seed", seed, "--url", srv.URL, "--nats", natsURL})
		cmd.SetOut(bout)
		cmd.SetErr(&syncBuffer{})
		bdone <- cmd.ExecuteContext(bctx)
	}()
	defer func() {
		bcancel()
		if err := <-bdone; err != nil {
			t.Errorf("bridge: %v", err)
		}
	}()
	brokertest.WaitFor(t, 20*time.Second, func() (bool, error) {
		if strings.Contains(bout.String(), "bridging agent orchestrator to "+srv.URL+" (echo)") {
			return true, nil
		}
		return false, errNotYet(bout.String())
	})

	kp, err := broker.LoadSeed(filepath.Join(dir, "keys", "tomas.nk"))
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	tomas, err := agent.Connect(cctx, agent.Config{ID: "tomas", Key: kp, URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	defer tomas.Close()
	reply, err := tomas.Start(cctx, "orchestrator", agent.UserText("brief"))
	if err != nil {
		t.Fatal(err)
	}
	if reply.Status != schemas.StateCompleted || agent.MessageText(reply.Output) != "echo: brief" {
		t.Fatalf("reply through the bridge: %s %q %s", reply.Status, agent.MessageText(reply.Output), reply.Error)
	}
	if reply.Usage == nil || reply.Usage.InputTokens != 7 || reply.Usage.OutputTokens != 3 {
		t.Fatalf("the server's usage did not come back: %+v", reply.Usage)
	}

	// A server with no card: the command fails with a reason, at once.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	_, _, err = tollgate(t, cctx, "bridge", "--agent", "research", "--seed", filepath.Join(dir, "keys", "research.nk"),
		"--url", gone.URL, "--nats", natsURL)
	if err == nil || !strings.Contains(err.Error(), "read the card of "+gone.URL) {
		t.Fatalf("bridge to a server with no card: %v", err)
	}
}

type errNotYet string

func (e errNotYet) Error() string { return "bridge printed no banner yet: " + string(e) }
