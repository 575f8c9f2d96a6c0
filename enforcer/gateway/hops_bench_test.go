package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/hopfront"
	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// BenchmarkModelHop measures what a governed model hop adds to a model
// call, in one run: the same chat completions request posted straight to
// the upstream (direct) and through serve's front (gateway: bearer check,
// ingress, enforcer decision and ledger, delivery to the model bridge,
// the upstream call, the reply's ledger entry and delivery back), one
// call at a time. agent-hop is a governed hop from the same task to an
// agent that answers at once, over NATS (the Go client): the part of the
// gateway figure that any hop costs. jetstream is the floor of the bus: one publish with its
// acknowledgement, on the same server.
//
//	go test ./enforcer/gateway -run '^$' -bench BenchmarkModelHop -benchtime 2000x -count 5
func BenchmarkModelHop(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`)
	}))
	defer upstream.Close()

	c := newCast(b, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "research", Tags: []string{"entry"}},
		gateway.IdentityConfig{ID: "gpt", Type: "model"}, gateway.IdentityConfig{ID: "echo"})
	c.cfg.HTTP.Listen = "127.0.0.1:0"
	c.cfg.RunLimits = limits.Run{MaxHops: 1 << 30, MaxEdgeRepeats: 1 << 30, MaxTotalTokens: 1 << 40, MaxCostUSD: 1e9, MaxWallClockSeconds: 1 << 20}
	c.cfg.Models = []gateway.ModelConfig{{Config: models.Config{ID: "gpt", BaseURL: upstream.URL, Prices: models.Price{InputPerMTok: 1, OutputPerMTok: 1}}, Seed: c.seedFile(b, "gpt")}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	g, err := gateway.Start(ctx, c.cfg, gateway.Options{Policies: []policy.File{{Name: "p.cedar", Src: []byte(
		`permit (principal is User, action, resource) when { resource.tags.contains("entry") };
		 permit (principal is Agent, action, resource);`)}}})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close(context.Background())
	tok, _, err := g.Bearer().Issue("research", time.Hour)
	if err != nil {
		b.Fatal(err)
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
		b.Fatal(err)
	}
	defer a.Close()
	echo, err := agent.Connect(ctx, agent.Config{ID: "echo", Key: c.keys["echo"], InProcess: g.Embedded(),
		Handler: func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
			return &agent.Result{Output: agent.AgentText("ok"), Usage: &schemas.Usage{InputTokens: 12, OutputTokens: 3}}, nil
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	tomas, err := agent.Connect(ctx, agent.Config{ID: "tomas", Key: c.keys["tomas"], InProcess: g.Embedded()})
	if err != nil {
		b.Fatal(err)
	}
	defer tomas.Close()
	done := make(chan struct{})
	go func() { _, _ = tomas.Start(ctx, "research", agent.UserText("go")); close(done) }()
	defer func() { close(release); <-done }()
	task := <-tasks

	body := `{"model":"gpt","max_tokens":16,"messages":[{"role":"user","content":"Summarise the quarterly report in one line."}]}`
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	call := func(b *testing.B, url string, headers map[string]string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var out struct {
			Choices []json.RawMessage `json:"choices"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(out.Choices) != 1 {
			b.Fatalf("status %d, %v", resp.StatusCode, err)
		}
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			call(b, upstream.URL+"/chat/completions", nil)
		}
	})
	b.Run("gateway", func(b *testing.B) {
		h := map[string]string{"Authorization": "Bearer " + tok, hopfront.ParentHopHeader: task.Context.HopID, hopfront.RunHeader: task.Context.RunID}
		for b.Loop() {
			call(b, "http://"+g.HTTPAddr()+gateway.ChatCompletionsPath, h)
		}
	})
	b.Run("agent-hop", func(b *testing.B) {
		for b.Loop() {
			r, err := task.Delegate(ctx, "echo", agent.UserText("Summarise the quarterly report in one line."), agent.WithHopKey(schemas.NewID()))
			if err != nil || r.Status != schemas.StateCompleted {
				b.Fatalf("%v %+v", err, r)
			}
		}
	})
	b.Run("jetstream", func(b *testing.B) {
		js := g.JetStream()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCHRAW", Subjects: []string{"benchraw.>"}}); err != nil {
			b.Fatal(err)
		}
		msg := []byte(strings.Repeat("x", 1024))
		for b.Loop() {
			if _, err := js.Publish(ctx, "benchraw.x", msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
