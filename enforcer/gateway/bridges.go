package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
)

// BridgeConfig declares an existing A2A server that serve puts behind the
// gateway as a registered agent (broker/a2ahttp.Bridge).
type BridgeConfig struct {
	// Agent is the registered agent id the server answers as.
	Agent string `yaml:"agent"`
	// URL is the A2A server's base URL (its card is read from there).
	URL string `yaml:"url"`
	// Seed is the agent's nkey seed file (its bus credential), relative to
	// the config file.
	Seed string `yaml:"seed"`
}

func (c *Config) validateBridges() error {
	var errs []error
	seen := map[string]bool{}
	for i, b := range c.Bridges {
		switch {
		case b.Agent == "" || b.URL == "" || b.Seed == "":
			errs = append(errs, fmt.Errorf("bridges[%d]: agent, url and seed are required", i))
		case seen[b.Agent]:
			errs = append(errs, fmt.Errorf("bridges[%d]: agent %q is bridged twice", i, b.Agent))
		}
		seen[b.Agent] = true
		found := false
		for _, a := range c.Agents {
			found = found || a.ID == b.Agent
		}
		if b.Agent != "" && !found {
			errs = append(errs, fmt.Errorf("bridges[%d]: %q is not an agent of this config", i, b.Agent))
		}
	}
	return errors.Join(errs...)
}

// startBridges starts the configured bridges in the background: a server
// that is not up yet is tried again until it is, or until the gateway
// closes; the gateway serves meanwhile.
func (g *Gateway) startBridges(ctx context.Context) {
	if len(g.cfg.Bridges) == 0 {
		return
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.stopBridges = cancel
	for _, bc := range g.cfg.Bridges {
		g.bridgeWG.Add(1)
		go func() {
			defer g.bridgeWG.Done()
			g.runBridge(bctx, bc)
		}()
	}
}

func (g *Gateway) runBridge(ctx context.Context, bc BridgeConfig) {
	kp, err := broker.LoadSeed(g.cfg.Path(bc.Seed))
	if err != nil {
		g.log.Error("bridge: agent key", "agent", bc.Agent, "err", err)
		return
	}
	ac := agent.Config{ID: bc.Agent, Key: kp, InProcess: g.emb, URL: g.cfg.NATS.URL, Subjects: &g.subjects, Logger: g.log}
	for attempt := 0; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		b, err := a2ahttp.StartBridge(sctx, a2ahttp.BridgeConfig{Agent: ac, ServerURL: bc.URL, Logger: g.log})
		cancel()
		if err == nil {
			g.SetAgentCard(bc.Agent, b.Card())
			g.log.Info("bridge started", "agent", bc.Agent, "server", bc.URL, "card", b.Card().Name)
			<-ctx.Done()
			b.Close()
			return
		}
		if attempt%10 == 0 {
			g.log.Warn("bridge: A2A server not reachable yet; retrying", "agent", bc.Agent, "server", bc.URL, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}
