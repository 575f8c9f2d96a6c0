package interop

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestBridgeFromConfig: a bridge declared in the gateway config (as serve
// runs it) puts an A2A server behind the gateway; the card the ingress
// serves is the server's own, pointing at the gateway.
func TestBridgeFromConfig(t *testing.T) {
	echo := &executor{do: func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		return "configured: " + ec.Message.Parts[0].Text(), nil, nil
	}}
	serverURL := make(chan string, 1)
	e := newEnvWith(t, func(e *env) {
		seed := filepath.Join(t.TempDir(), "jsagent.nk")
		if err := broker.WriteSeed(seed, e.keys["jsagent"]); err != nil {
			t.Fatal(err)
		}
		url := a2aServer(t, "configured-echo", echo)
		serverURL <- url
		e.cfg.Bridges = []gateway.BridgeConfig{{Agent: "jsagent", URL: url, Seed: seed}}
	})
	<-serverURL
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := e.token("alice")
	var card *a2a.AgentCard
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := agentcard.NewResolver(httpClientFor(alice)).Resolve(ctx, e.base+"/jsagent")
		if err == nil && c.Name == "configured-echo" {
			card = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingress never served the bridged server's card: %v %v", c, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(card.SupportedInterfaces[0].URL, e.base+"/jsagent") {
		t.Fatalf("card interfaces point at %s, not the gateway", card.SupportedInterfaces[0].URL)
	}
	res, err := e.client("jsagent", alice).SendMessage(ctx, userText("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if task := res.(*a2a.Task); task.Status.State != a2a.TaskStateCompleted || !strings.Contains(text(task), "configured: hello") {
		t.Fatalf("through the configured bridge: %s %q", task.Status.State, text(task))
	}
}
