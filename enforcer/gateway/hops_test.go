package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/hopfront"
	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/broker/tools"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// seedFile writes id's seed where a model's or tool's seed points.
func (c *cast) seedFile(t testing.TB, id string) string {
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
		{Config: models.Config{ID: "gpt", BaseURL: "http://127.0.0.1:1/v1"}, Seed: other.seedFile(t, "gpt")},
		{Config: models.Config{ID: "claude", BaseURL: "ftp://x"}},
	}
	c.cfg.MCPServers = []tools.ServerConfig{{ID: "web", URL: "http://127.0.0.1:1/mcp"}}
	c.cfg.Tools = []gateway.ToolConfig{{Config: tools.Config{ID: "research", Server: "nowhere"}, Seed: c.seedFile(t, "research")}}
	_, err := gateway.Start(context.Background(), c.cfg, gateway.Options{Policies: policies})
	if err == nil {
		t.Fatal("a config with broken hop sections started")
	}
	for _, want := range []string{
		`model "gpt": seed holds`,
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
	c.cfg.Models = []gateway.ModelConfig{{Config: models.Config{ID: "gpt", BaseURL: upstream.URL, Prices: models.Price{InputPerMTok: 1e6}}, Seed: c.seedFile(t, "gpt")}}
	c.cfg.MCPServers = []tools.ServerConfig{{ID: "web", URL: web.URL, Untrusted: true}}
	c.cfg.Tools = []gateway.ToolConfig{{Config: tools.Config{ID: "web-fetch", Server: "web", Tool: "fetch", RateLimit: ratelimit.Rate{Count: 1, Period: time.Minute}}, Seed: c.seedFile(t, "web-fetch")}}
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
	var model, tool, over *agent.Reply
	var overErr error
	connect("research", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		var err error
		if model, err = task.Delegate(ctx, "gpt", models.ChatMessage(map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}})); err != nil {
			return nil, err
		}
		if tool, err = task.Delegate(ctx, "web-fetch", tools.CallMessage(nil)); err != nil {
			return nil, err
		}
		over, overErr = task.Delegate(ctx, "web-fetch", tools.CallMessage(nil))
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
	// The tool's rate limit (1/min) is the enforcer's check, kept in the
	// gateway's shared rate bucket: the second call is denied.
	var denied *agent.DeniedError
	if !errors.As(overErr, &denied) || denied.Denial.Reason != schemas.ReasonRate || !strings.Contains(denied.Denial.Message, "rate limit of 1/") {
		t.Fatalf("second call %+v %v, want denied over the rate limit", over, overErr)
	}
	kv, err := g.JetStream().KeyValue(ctx, g.Subjects().Bucket(broker.BucketRate))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, limits.TargetKey("web-fetch")); err != nil {
		t.Fatalf("the tool's bucket is not in the shared store: %v", err)
	}
}

// TestHopsHTTP: an agent calls the model (plain and streamed) and the MCP
// tool over serve's HTTP listener with its bearer token, from inside its
// task; the ingress submits each call as a hop of that task, and the
// ledger has them, untainted (the agent's own calls, not outside ones).
func TestHopsHTTP(t *testing.T) {
	gate := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		if s, _ := req["stream"].(bool); !s {
			_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"content": "ok"}}},
				"usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 1}})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"choices":[{"delta":{"content":"str"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-gate
		fmt.Fprint(w, `data: {"choices":[{"delta":{"content":"eam"}}]}`+"\n\n"+`data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}`+"\n\ndata: [DONE]\n\n")
	}))
	defer upstream.Close()
	var fetched atomic.Int64
	ms := mcp.NewServer(&mcp.Implementation{Name: "web", Version: "1"}, nil)
	mcp.AddTool(ms, &mcp.Tool{Name: "fetch"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		fetched.Add(1)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "page"}}}, nil, nil
	})
	web := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ms }, nil))
	defer web.Close()

	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "research", Tags: []string{"entry"}},
		gateway.IdentityConfig{ID: "gpt", Type: "model"}, gateway.IdentityConfig{ID: "web-fetch", Type: "tool"})
	c.cfg.HTTP.Listen = "127.0.0.1:0"
	// The stream below is checked chunk by chunk as the upstream sends it:
	// with guardrails on, the front would hold its short text back until
	// scanned (streamguard_test.go covers that).
	c.cfg.Guardrails.Disabled = true
	c.cfg.Models = []gateway.ModelConfig{{Config: models.Config{ID: "gpt", BaseURL: upstream.URL, Prices: models.Price{InputPerMTok: 1e6}}, Seed: c.seedFile(t, "gpt")}}
	c.cfg.MCPServers = []tools.ServerConfig{{ID: "web", URL: web.URL}}
	c.cfg.Tools = []gateway.ToolConfig{{Config: tools.Config{ID: "web-fetch", Server: "web", Tool: "fetch", RateLimit: ratelimit.Rate{Count: 1, Period: time.Minute}},
		Seed: c.seedFile(t, "web-fetch")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The tool is named in policy as its MCP server's tool: web/fetch.
	g, err := gateway.Start(ctx, c.cfg, gateway.Options{Policies: []policy.File{{Name: "p.cedar", Src: []byte(
		`permit (principal is User, action, resource) when { resource.tags.contains("entry") };
		 permit (principal is Agent, action in [Action::"invoke", Action::"call_model"], resource);
		 permit (principal == Agent::"research", action == Action::"call_tool", resource == Tool::"web/fetch");`)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(context.Background())
	tok, _, err := g.Bearer().Issue("research", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tasks := make(chan *agent.Task, 1)
	release := make(chan struct{})
	a, err := agent.Connect(ctx, agent.Config{ID: "research", Key: c.keys["research"], InProcess: g.Embedded(),
		Handler: func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
			tasks <- task
			<-release
			return &agent.Result{Output: agent.AgentText("done")}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tomas, err := agent.Connect(ctx, agent.Config{ID: "tomas", Key: c.keys["tomas"], InProcess: g.Embedded()})
	if err != nil {
		t.Fatal(err)
	}
	defer tomas.Close()
	done := make(chan error, 1)
	go func() { _, err := tomas.Start(ctx, "research", agent.UserText("go")); done <- err }()
	task := <-tasks
	base := "http://" + g.HTTPAddr()
	headers := map[string]string{"Authorization": "Bearer " + tok, hopfront.ParentHopHeader: task.Context.HopID, hopfront.RunHeader: task.Context.RunID}
	post := func(body string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+gateway.ChatCompletionsPath, strings.NewReader(body))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	resp := post(`{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`)
	var plain struct {
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&plain); err != nil || resp.StatusCode != 200 || len(plain.Choices) != 1 || plain.Choices[0].Message.Content != "ok" {
		t.Fatalf("plain call: %d %+v %v", resp.StatusCode, plain, err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+gateway.ResponsesPath, strings.NewReader(`{"model":"gpt","input":"hi"}`))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var response struct{ Object, Status string }
	err = json.NewDecoder(rresp.Body).Decode(&response)
	rresp.Body.Close()
	if err != nil || rresp.StatusCode != 200 || response.Object != "response" || response.Status != "completed" {
		t.Fatalf("responses call: %d %+v %v", rresp.StatusCode, response, err)
	}

	resp = post(`{"model":"gpt","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`)
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
			if len(events) == 1 {
				close(gate) // the first chunk is here while the upstream still holds the rest
			}
		}
	}
	if len(events) != 3 || !strings.Contains(events[0], `"str"`) || !strings.Contains(events[1], `"eam"`) || events[2] != "[DONE]" {
		t.Fatalf("stream events %q", events)
	}

	hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		for k, v := range headers {
			r.Header.Set(k, v)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "research", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: base + gateway.MCPPath, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	list, err := cs.ListTools(ctx, nil)
	if err != nil || len(list.Tools) != 1 || list.Tools[0].Name != "web-fetch" {
		t.Fatalf("tools/list: %v %+v, want web-fetch (permitted as Tool::\"web/fetch\")", err, list)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "web-fetch"})
	if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "page" {
		t.Fatalf("tool call: %v %+v", err, res)
	}
	// Over the tool's rate limit (1/min): the enforcer denies the call, the
	// MCP server never sees it.
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "web-fetch"})
	if err != nil || !res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "denied by the gateway (rate): web-fetch is over its rate limit of 1/") {
		t.Fatalf("second tool call: %v %+v, want a rate denial", err, res)
	}
	if n := fetched.Load(); n != 1 {
		t.Fatalf("the MCP server was called %d times, want 1", n)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs, err := g.Ledger().Read(ctx, task.Context.RunID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ledger.Fold(task.Context.RunID, recs)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, h := range st.Hops {
		if h.ParentID != task.Context.HopID {
			continue
		}
		calls = append(calls, fmt.Sprintf("%s %s %d %s %s", h.Action, h.To, h.Usage.Tokens(), h.Status, h.Reason))
		if h.Tainted {
			t.Errorf("hop to %s tainted %v: an agent's own call over HTTP is not an outside call", h.To, h.TaintSources)
		}
	}
	slices.Sort(calls)
	if want := []string{"call_model gpt 6 completed ", "call_model gpt 6 completed ", "call_model gpt 9 completed ",
		"call_tool web-fetch 0 completed ", "call_tool web-fetch 0 denied rate"}; !slices.Equal(calls, want) {
		t.Fatalf("hops under the task %v, want %v", calls, want)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
