package tools

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// BridgeConfig starts a bridge: one MCP server, the governed tools of it,
// and how each tool identity reaches the bus.
type BridgeConfig struct {
	Server ServerConfig
	Tools  []Config
	// Agents are the tool identities' connections by tool id (Key, URL or
	// InProcess, Subjects); the bridge sets ID and Handler.
	Agents map[string]agent.Config
	// HTTP is the client the MCP server is called with; nil:
	// http.DefaultClient.
	HTTP *http.Client
}

// Bridge serves the hops of one MCP server's governed tools.
type Bridge struct {
	server ServerConfig
	http   *http.Client
	tools  map[string]*served
	order  []string

	mu      sync.Mutex
	session *mcp.ClientSession
	clients []*agent.Client
}

// served is one governed tool. Its rate_limit is not the bridge's to
// check: the enforcer denies a call over it before it is forwarded
// (broker.Identity.RateLimit).
type served struct {
	cfg Config
}

// StartBridge connects every tool identity of the server and starts
// serving. The MCP server is connected at the first call.
func StartBridge(ctx context.Context, bc BridgeConfig) (*Bridge, error) {
	if err := bc.Server.Validate(); err != nil {
		return nil, err
	}
	b := &Bridge{server: bc.Server, http: bc.HTTP, tools: map[string]*served{}}
	servers := map[string]ServerConfig{bc.Server.ID: bc.Server}
	var errs []error
	for _, t := range bc.Tools {
		t.SetDefaults()
		if err := t.Validate(servers); err != nil {
			errs = append(errs, err)
			continue
		}
		b.tools[t.ID] = &served{cfg: t}
		b.order = append(b.order, t.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, id := range b.order {
		ac, ok := bc.Agents[id]
		if !ok {
			b.Close()
			return nil, fmt.Errorf("tool %q: no connection configured", id)
		}
		s := b.tools[id]
		ac.ID, ac.Handler = id, func(ctx context.Context, t *agent.Task) (*agent.Result, error) { return b.handle(ctx, s, t) }
		c, err := agent.Connect(ctx, ac)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("tool %q: %w", id, err)
		}
		b.clients = append(b.clients, c)
	}
	return b, nil
}

// Close stops serving and closes the MCP session.
func (b *Bridge) Close() {
	for _, c := range b.clients {
		c.Close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session != nil {
		_ = b.session.Close()
		b.session = nil
	}
}

// connect returns the MCP session, connecting it when there is none.
func (b *Bridge) connect(ctx context.Context) (*mcp.ClientSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session != nil {
		return b.session, nil
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "tollgate", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: b.server.URL, HTTPClient: b.http, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		return nil, fmt.Errorf("mcp server %q: connect: %w", b.server.ID, err)
	}
	b.session = cs
	return cs, nil
}

// drop forgets a session that failed, so the next call reconnects.
func (b *Bridge) drop(cs *mcp.ClientSession) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session == cs {
		_ = cs.Close()
		b.session = nil
	}
}

// Tools lists the server's governed tools as MCP tools named by their
// tool identity, with the server's descriptions and schemas.
func (b *Bridge) Tools(ctx context.Context) ([]*mcp.Tool, error) {
	cs, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*mcp.Tool{}
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			b.drop(cs)
			return nil, fmt.Errorf("mcp server %q: tools/list: %w", b.server.ID, err)
		}
		byName[t.Name] = t
	}
	var out []*mcp.Tool
	for _, id := range b.order {
		s := b.tools[id]
		up, ok := byName[s.cfg.Tool]
		if !ok {
			continue // configured but not served (yet)
		}
		t := *up
		t.Name = id
		if m, ok := t.InputSchema.(map[string]any); !ok || m["type"] != "object" {
			t.InputSchema = map[string]any{"type": "object"}
		}
		out = append(out, &t)
	}
	return out, nil
}

// handle serves one tool hop.
func (b *Bridge) handle(ctx context.Context, s *served, t *agent.Task) (*agent.Result, error) {
	args, err := ArgumentsFrom(t.Message)
	if err != nil {
		return &agent.Result{Status: schemas.StateRejected, Error: err.Error()}, nil
	}
	usage := &schemas.Usage{CostUSD: s.cfg.CostPerCallUSD}
	cs, err := b.connect(ctx)
	if err != nil {
		return &agent.Result{Status: schemas.StateFailed, Error: err.Error()}, nil
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: s.cfg.Tool, Arguments: args})
	if err != nil {
		if ctx.Err() == nil {
			b.drop(cs)
		}
		return &agent.Result{Status: schemas.StateFailed, Error: fmt.Sprintf("tool %s: %v", s.cfg.ID, err), Usage: usage}, nil
	}
	out, err := ResultMessage(res)
	if err != nil {
		return &agent.Result{Status: schemas.StateFailed, Error: err.Error(), Usage: usage}, nil
	}
	r := &agent.Result{Output: out, Usage: usage}
	if res.IsError {
		r.Status, r.Error = schemas.StateFailed, "the tool reported an error: "+resultText(res)
	}
	return r, nil
}

func resultText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, "\n")
}
