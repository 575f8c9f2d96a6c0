package security_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// watched is a raw connection whose closing the test waits for.
type watched struct {
	nc     *nats.Conn
	closed chan struct{}
}

func (g *gw) watch(t *testing.T, id string) *watched {
	t.Helper()
	w := &watched{closed: make(chan struct{})}
	nc, err := broker.Connect(broker.ConnectConfig{URL: g.url, Key: g.keys[id], InboxPrefix: broker.InboxPrefix(id), Name: "watched " + id,
		Options: connOpts(nats.ClosedHandler(func(*nats.Conn) { close(w.closed) }))})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	w.nc = nc
	return w
}

func (w *watched) wantClosed(t *testing.T, why string) {
	t.Helper()
	select {
	case <-w.closed:
	case <-time.After(20 * time.Second):
		t.Fatalf("the live connection is still open after %s", why)
	}
}

// cannotConnect asserts that a key no longer gets a connection.
func (g *gw) cannotConnect(t *testing.T, who string, kp nkeys.KeyPair) {
	t.Helper()
	nc, err := broker.Connect(broker.ConnectConfig{URL: g.url, Key: kp, Options: connOpts()})
	if err == nil {
		nc.Close()
		t.Fatalf("%s still connects", who)
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Logf("%s refused with %v", who, err)
	}
}

func (g *gw) identity(id string) *gateway.IdentityConfig {
	for i := range g.cfg.Agents {
		if g.cfg.Agents[i].ID == id {
			return &g.cfg.Agents[i]
		}
	}
	return nil
}

// TestIdentityLifecycle: identities disabled, rotated, removed and added
// in the config file take effect on the running serve at SIGHUP: a
// disabled or removed identity's live connection is closed and it cannot
// connect again, a rotated key replaces the old one, an added identity is
// served at once; a config that does not load is refused whole.
func TestIdentityLifecycle(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		t.Run("Disable", func(t *testing.T) {
			live := g.watch(t, "mallory")
			g.identity("mallory").Disabled = true
			g.reload(t)
			live.wantClosed(t, "mallory was disabled")
			g.cannotConnect(t, "mallory", g.keys["mallory"])
			g.cast.legit(t)
		})
		t.Run("Reenable", func(t *testing.T) {
			g.identity("mallory").Disabled = false
			g.reload(t)
			a := g.attacker(t, "mallory")
			a.barrier(t, "after-reenable") // served again
		})
		t.Run("Rotate", func(t *testing.T) {
			live := g.watch(t, "writer")
			g.keys["writer-old"] = g.keys["writer"]
			g.identity("writer").PublicKey = g.newKey(t, "writer")
			g.reload(t)
			live.wantClosed(t, "writer's key was rotated")
			g.cannotConnect(t, "writer's old key", g.keys["writer-old"])
			g.agentClient(t, "writer", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
				return &agent.Result{Output: agent.AgentText("writer, new key")}, nil
			})
			r, err := g.cast.tomas.Start(testCtx(t, 30*time.Second), "writer", agent.UserText("draft"))
			if err != nil || agent.MessageText(r.Output) != "writer, new key" {
				t.Fatalf("a run to the rotated writer: %+v %v", r, err)
			}
		})
		t.Run("Remove", func(t *testing.T) {
			live := g.watch(t, "sink")
			var kept []gateway.IdentityConfig
			for _, a := range g.cfg.Agents {
				if a.ID != "sink" {
					kept = append(kept, a)
				}
			}
			g.cfg.Agents = kept
			g.reload(t)
			live.wantClosed(t, "sink was removed")
			g.cannotConnect(t, "sink", g.keys["sink"])
			_, err := g.cast.tomas.Start(testCtx(t, 30*time.Second), "sink", agent.UserText("x"))
			var denied *agent.DeniedError
			if !errors.As(err, &denied) {
				t.Fatalf("a run to the removed sink: %v", err)
			}
			g.cast.legit(t)
		})
		t.Run("Add", func(t *testing.T) {
			g.cfg.Agents = append(g.cfg.Agents, gateway.IdentityConfig{ID: "critic", PublicKey: g.newKey(t, "critic")})
			g.reload(t)
			g.agentClient(t, "critic", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
				return &agent.Result{Output: agent.AgentText("critic: fine")}, nil
			})
			r, err := g.cast.tomas.Start(testCtx(t, 30*time.Second), "orchestrator", agent.UserText("to:critic"))
			if err != nil || agent.MessageText(r.Output) != "critic: fine" {
				t.Fatalf("a run through the added critic: %+v %v", r, err)
			}
		})
		t.Run("BrokenConfigRefused", func(t *testing.T) {
			before := strings.Count(g.out.String(), `msg="reload refused`)
			saved := g.cfg.Policies
			g.cfg.Policies = []string{"missing.cedar"}
			g.identity("research").Disabled = true // would cut research off if it applied
			g.writeConfig(t)
			if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			brokertest.Eventually(t, 30*time.Second, "serve refuses the broken config", func() bool {
				return strings.Count(g.out.String(), `msg="reload refused`) > before
			})
			g.cfg.Policies = saved
			g.identity("research").Disabled = false
			g.writeConfig(t)
			g.cast.legit(t) // research still served
		})
	})
}
