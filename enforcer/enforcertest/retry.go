package enforcertest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/schemas"
)

// AddRetries prepares the retry scenario's configuration on a config
// that has a writer: the writer gets a retry policy (two attempts on
// rate_limited, no jitter), and two agents join, reviewer (whose fallback
// is editor) and editor, with their keys put in keys.
func AddRetries(t testing.TB, cfg *gateway.Config, keys map[string]nkeys.KeyPair) {
	t.Helper()
	noJitter := 0.0
	for i := range cfg.Agents {
		if cfg.Agents[i].ID == "writer" {
			cfg.Agents[i].Retry = limits.Retry{MaxAttempts: 2, On: []string{"rate_limited"}, Backoff: 50 * time.Millisecond, Jitter: &noJitter}
		}
	}
	for _, id := range []string{"reviewer", "editor"} {
		kp, err := broker.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		keys[id] = kp
		a := gateway.IdentityConfig{ID: id, Type: "agent", Team: "content", PublicKey: pub, TimeoutSeconds: 30}
		if id == "reviewer" {
			a.Fallback = []string{"editor"}
		}
		cfg.Agents = append(cfg.Agents, a)
	}
}

// RunRetries runs the retry scenario (configured by AddRetries) and
// returns its run: user asks the orchestrator for a brief; the writer
// fails once with a retryable error (the gateway delivers the hop again
// and the second attempt completes) and the reviewer, which nobody
// serves, is re-routed to its fallback, the editor. Every agent connects
// as base says (URL or in-process), with its key from keys; all are gone
// when it returns.
func RunRetries(ctx context.Context, t testing.TB, base agent.Config, keys map[string]nkeys.KeyPair, user string) string {
	t.Helper()
	var writes atomic.Int64
	handlers := map[string]agent.Handler{
		"orchestrator": func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
			for _, to := range []string{"writer", "reviewer"} {
				if _, err := task.Delegate(ctx, to, agent.UserText("your part")); err != nil {
					return nil, err
				}
			}
			return &agent.Result{Output: agent.AgentText("done")}, nil
		},
		"writer": func(context.Context, *agent.Task) (*agent.Result, error) {
			if writes.Add(1) == 1 {
				return &agent.Result{Status: schemas.StateFailed, Error: "model overloaded", ErrorClass: "rate_limited",
					Usage: &schemas.Usage{InputTokens: 10, CostUSD: 0.001}}, nil
			}
			return &agent.Result{Output: agent.AgentText("draft"), Usage: &schemas.Usage{InputTokens: 20, CostUSD: 0.002}}, nil
		},
		"editor": func(context.Context, *agent.Task) (*agent.Result, error) {
			return &agent.Result{Output: agent.AgentText("reviewed"), Usage: &schemas.Usage{InputTokens: 5, CostUSD: 0.0005}}, nil
		},
		user: nil,
	}
	clients := map[string]*agent.Client{}
	for id, h := range handlers {
		cfg := base
		cfg.ID, cfg.Key, cfg.Handler = id, keys[id], h
		c, err := agent.Connect(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[id] = c
	}
	reply, err := clients[user].Start(ctx, "orchestrator", agent.UserText("brief"))
	if err != nil || reply.Status != schemas.StateCompleted {
		t.Fatalf("the run with a retry and a fallback: %v %+v", err, reply)
	}
	return reply.RunID
}
