package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/broker/tools"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
)

// seedFile writes id's seed where a model's or tool's key_file points.
func (c *cast) seedFile(t *testing.T, id string) string {
	t.Helper()
	seed, err := c.keys[id].Seed()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), id+".nk")
	if err := os.WriteFile(p, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHopsConfigErrors: the models, mcp_servers and tools sections are
// checked against the identities, every problem listed at once.
func TestHopsConfigErrors(t *testing.T) {
	c := newCast(t, gateway.IdentityConfig{ID: "gpt", Type: "model"}, gateway.IdentityConfig{ID: "research"})
	other := newCast(t, gateway.IdentityConfig{ID: "gpt", Type: "model"})
	c.cfg.Models = []gateway.ModelConfig{
		{Config: models.Config{ID: "gpt", BaseURL: "http://127.0.0.1:1/v1"}, KeyFile: other.seedFile(t, "gpt")},
		{Config: models.Config{ID: "claude", BaseURL: "ftp://x"}},
	}
	c.cfg.MCPServers = []tools.ServerConfig{{ID: "web", URL: "http://127.0.0.1:1/mcp"}}
	c.cfg.Tools = []gateway.ToolConfig{{Config: tools.Config{ID: "research", Server: "nowhere"}, KeyFile: c.seedFile(t, "research")}}
	_, err := gateway.Start(context.Background(), c.cfg, gateway.Options{Policies: policies})
	if err == nil {
		t.Fatal("a config with broken hop sections started")
	}
	for _, want := range []string{
		`model "gpt": key_file holds`,
		`model "claude": base_url "ftp://x" is not an http(s) URL`,
		`model "claude": not a registered identity`,
		`tool "research": server "nowhere" is not a configured mcp server`,
		`tool "research": registered as a Agent, want type tool`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestHopsServe: serve starts the bridges of its config: a Go agent calls
// the model and the tool through the gateway, and a tool of an untrusted
// MCP server is registered untrusted.
func TestHopsServe(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"content": "ok"}}},
			"usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 1}})
	}))
	defer upstream.Close()
	ms := mcp.NewServer(&mcp.Implementation{Name: "web", Version: "1"}, nil)
	mcp.AddTool(ms, &mcp.Tool{Name: "fetch"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "page"}}}, nil, nil
	})
	web := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ms }, nil))
	defer web.Close()

	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "research", Tags: []string{"entry"}},
		gateway.IdentityConfig{ID: "gpt", Type: "model"}, gateway.IdentityConfig{ID: "web-fetch", Type: "tool"})
	c.cfg.Models = []gateway.ModelConfig{{Config: models.Config{ID: "gpt", BaseURL: upstream.URL, Prices: models.Price{InputPerMTok: 1e6}}, KeyFile: c.seedFile(t, "gpt")}}
	c.cfg.MCPServers = []tools.ServerConfig{{ID: "web", URL: web.URL, Untrusted: true}}
	c.cfg.Tools = []gateway.ToolConfig{{Config: tools.Config{ID: "web-fetch", Server: "web", Tool: "fetch"}, KeyFile: c.seedFile(t, "web-fetch")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, c.cfg, gateway.Options{Policies: []policy.File{{Name: "p.cedar", Src: []byte(
		`permit (principal is User, action, resource) when { resource.tags.contains("entry") };
		 permit (principal is Agent, action, resource);`)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(context.Background())
	if id, _ := g.Registry().Dir.Get("web-fetch"); id == nil || !id.Untrusted {
		t.Fatal("a tool of an untrusted MCP server is not registered untrusted")
	}
	connect := func(id string, h agent.Handler) *agent.Client {
		a, err := agent.Connect(ctx, agent.Config{ID: id, Key: c.keys[id], InProcess: g.Embedded(), Handler: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	var model, tool *agent.Reply
	connect("research", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		var err error
		if model, err = task.Delegate(ctx, "gpt", models.ChatMessage(map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}})); err != nil {
			return nil, err
		}
		if tool, err = task.Delegate(ctx, "web-fetch", tools.CallMessage(nil)); err != nil {
			return nil, err
		}
		return &agent.Result{Output: agent.AgentText("done")}, nil
	})
	rep, err := connect("tomas", nil).Start(ctx, "research", agent.UserText("go"))
	if err != nil || rep.Status != "completed" {
		t.Fatalf("run: %v %+v", err, rep)
	}
	if agent.MessageText(model.Output) != "ok" || model.Usage == nil || model.Usage.CostUSD != 5 {
		t.Fatalf("model reply %q usage %+v, want ok costing 5 (5 tokens at 1e6/Mtok)", agent.MessageText(model.Output), model.Usage)
	}
	if agent.MessageText(tool.Output) != "page" {
		t.Fatalf("tool reply %q", agent.MessageText(tool.Output))
	}
}
