package agent_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// An agent serves the tasks delivered to it and delegates from inside a
// task; a user starts a run. Every hop passes the gateway, which derives
// the depth and the principal from the ledger and stamps them on the
// delivery.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "agent-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A gateway on an embedded NATS server, serving in-process only, with
	// a user and two agents, each with its own key.
	keys := map[string]nkeys.KeyPair{}
	cfg := &gateway.Config{NATS: gateway.NATSConfig{DataDir: dir, Listen: gateway.ListenNone}}
	for _, id := range []gateway.IdentityConfig{
		{ID: "tomas", Type: "user"}, {ID: "orchestrator", Tags: []string{"entry"}}, {ID: "writer"},
	} {
		kp, _ := broker.NewKey()
		keys[id.ID] = kp
		id.PublicKey, _ = kp.PublicKey()
		if id.Type == "user" {
			cfg.Users = append(cfg.Users, id)
		} else {
			cfg.Agents = append(cfg.Agents, id)
		}
	}
	g, err := gateway.Start(ctx, cfg, gateway.Options{Policies: []policy.File{{Name: "p.cedar", Src: []byte(
		`permit (principal is User, action, resource) when { resource.tags.contains("entry") };
		 permit (principal is Agent, action, resource is Agent);`)}}})
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close(context.Background())

	connect := func(id string, h agent.Handler) *agent.Client {
		c, err := agent.Connect(ctx, agent.Config{ID: id, Key: keys[id], InProcess: g.Embedded(), Handler: h})
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	writer := connect("writer", func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		fmt.Printf("writer: %q at depth %d for %s\n", agent.MessageText(t.Message), t.Context.Depth, t.Context.OnBehalfOf)
		return &agent.Result{Output: agent.AgentText("a draft"), Usage: &schemas.Usage{OutputTokens: 120, CostUSD: 0.002}}, nil
	})
	defer writer.Close()
	orchestrator := connect("orchestrator", func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		r, err := t.Delegate(ctx, "writer", agent.UserText("draft it"))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: agent.AgentText("brief: " + agent.MessageText(r.Output))}, nil
	})
	defer orchestrator.Close()
	tomas := connect("tomas", nil)
	defer tomas.Close()

	reply, err := tomas.Start(ctx, "orchestrator", agent.UserText("write a brief"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("tomas: %s, %q\n", reply.Status, agent.MessageText(reply.Output))
	// Output:
	// writer: "draft it" at depth 1 for tomas
	// tomas: completed, "brief: a draft"
}
