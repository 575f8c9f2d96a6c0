package models_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// upstream is an OpenAI-compatible chat completions server written for the
// tests: "Hello world!" with usage 12/3, streamed in three chunks when
// asked; with noUsage it reports none; with endless it streams until the
// client goes away.
type upstream struct {
	*httptest.Server
	noUsage, endless bool
	gate             chan struct{} // when set, the stream waits for it after its first chunk
	calls            atomic.Int64
	sent             atomic.Int64  // chunks an endless stream sent
	gone             chan struct{} // closed when an endless stream's client left
	last             atomic.Value  // map[string]any: the last request body
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{gone: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-test" {
		http.Error(w, "not found or unauthorized", http.StatusUnauthorized)
		return
	}
	var req map[string]any
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.last.Store(req)
	usage := map[string]any{"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
	if stream, _ := req["stream"].(bool); !stream {
		out := map[string]any{"id": "c1", "object": "chat.completion", "model": req["model"],
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "Hello world!"}}}}
		if !u.noUsage {
			out["usage"] = usage
		}
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
	chunk := func(s string) map[string]any {
		return map[string]any{"id": "c1", "object": "chat.completion.chunk", "model": req["model"],
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": s}}}}
	}
	if u.endless {
		for {
			send(chunk(strings.Repeat("token ", 10)))
			u.sent.Add(1)
			select {
			case <-r.Context().Done():
				close(u.gone)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	for i, s := range []string{"Hello", " world", "!"} {
		send(chunk(s))
		if i == 0 && u.gate != nil {
			<-u.gate
		}
	}
	opts, _ := req["stream_options"].(map[string]any)
	if inc, _ := opts["include_usage"].(bool); inc && !u.noUsage {
		send(map[string]any{"id": "c1", "object": "chat.completion.chunk", "choices": []any{}, "usage": usage})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

var price = models.Price{InputPerMTok: 2.5, OutputPerMTok: 10}

const modelPolicy = `
permit (principal is User, action == Action::"invoke", resource is Agent) when { resource.tags.contains("entry") };
permit (principal is Agent, action == Action::"call_model", resource is Model) when { principal.team == "research" };
`

// rig is a gateway with user tomas, agents research (team research) and
// intern (team interns), model gpt served by a bridge to up.
type rig struct {
	g  *enforcertest.Gateway
	up *upstream
	b  *models.Bridge
}

func newRig(t *testing.T, lim limits.Run) *rig {
	return newRigWith(t, lim, nil)
}

func newRigWith(t *testing.T, lim limits.Run, operators []string) *rig {
	t.Helper()
	t.Setenv("TOLLGATE_TEST_UPSTREAM_KEY", "sk-test")
	up := newUpstream(t)
	g := enforcertest.Start(t, enforcertest.Options{
		Identities: []broker.Identity{
			{ID: "tomas", Type: schemas.TypeUser},
			{ID: "research", Type: schemas.TypeAgent, Team: "research", Tags: []string{"entry"}},
			{ID: "intern", Type: schemas.TypeAgent, Team: "interns", Tags: []string{"entry"}},
			{ID: "gpt", Type: schemas.TypeModel, Team: "models"},
		},
		Policies:   []policy.File{{Name: "models.cedar", Src: []byte(modelPolicy)}},
		Operators:  operators,
		NoEnforcer: true,
	})
	ops := map[string]string{}
	for _, id := range operators {
		ops[id], _ = g.Keys[id].PublicKey()
	}
	g.StartEnforcer(enforcer.Config{Limits: lim, Operators: ops})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := models.StartBridge(ctx, models.BridgeConfig{
		Model: models.Config{ID: "gpt", BaseURL: up.URL + "/v1", Model: "gpt-test", APIKeyEnv: "TOLLGATE_TEST_UPSTREAM_KEY", Prices: price},
		Agent: agent.Config{Key: g.Keys["gpt"], URL: g.Server.ClientURL()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &rig{g: g, up: up, b: b}
}

// call has tomas start a run at caller, which calls gpt with req; it
// returns the model's reply (or the error) and the run's folded state.
func (r *rig) call(t *testing.T, caller string, req map[string]any) (*agent.Reply, *ledger.State, error) {
	t.Helper()
	type out struct {
		reply *agent.Reply
		err   error
	}
	got := make(chan out, 1)
	r.g.Agent(caller, func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		parsed, err := models.RequestFrom(models.ChatMessage(req))
		if err != nil {
			return nil, err
		}
		est := parsed.Estimate(price, 1024)
		rep, err := task.Delegate(ctx, "gpt", models.ChatMessage(req), agent.WithEstimate(est))
		got <- out{rep, err}
		return &agent.Result{Output: agent.AgentText("done")}, nil
	})
	tomas := r.g.Agent("tomas", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	top, err := tomas.Start(ctx, caller, agent.UserText("summarise"))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	o := <-got
	return o.reply, r.state(t, top.RunID), o.err
}

func (r *rig) state(t *testing.T, run string) *ledger.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := r.g.Ledger.Read(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ledger.Fold(run, recs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// modelHop is the run's call_model hop.
func modelHop(t *testing.T, st *ledger.State) *ledger.Hop {
	t.Helper()
	for _, h := range st.Hops {
		if h.To == "gpt" {
			if h.Action != schemas.ActionCallModel {
				t.Fatalf("hop to gpt has action %q, want call_model", h.Action)
			}
			return h
		}
	}
	t.Fatal("no hop to gpt in the ledger")
	return nil
}

func chat(text string, extra map[string]any) map[string]any {
	req := map[string]any{"model": "anything", "messages": []any{map[string]any{"role": "user", "content": text}}, "max_tokens": float64(64)}
	for k, v := range extra {
		req[k] = v
	}
	return req
}

func wantUsage(t *testing.T, got *schemas.Usage, in, out int64) {
	t.Helper()
	want := price.Cost(in, out)
	if got == nil || got.InputTokens != in || got.OutputTokens != out || math.Abs(got.CostUSD-want) > 1e-12 {
		t.Fatalf("usage %+v, want %d in, %d out, $%g", got, in, out, want)
	}
}

// TestModelHop: a plain call is a governed call_model hop; the upstream
// sees the configured model name and key, and the reply settles the
// run's budget with the upstream's usage priced from the table.
func TestModelHop(t *testing.T) {
	r := newRig(t, limits.Run{})
	rep, st, err := r.call(t, "research", chat("Summarise the report.", nil))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != schemas.StateCompleted || agent.MessageText(rep.Output) != "Hello world!" {
		t.Fatalf("reply %s %q", rep.Status, agent.MessageText(rep.Output))
	}
	if obj, ok := models.CompletionFrom(rep.Output); !ok || obj["id"] != "c1" {
		t.Fatalf("completion object not returned: %v", obj)
	}
	if m := r.up.last.Load().(map[string]any)["model"]; m != "gpt-test" {
		t.Fatalf("upstream got model %v, want gpt-test", m)
	}
	h := modelHop(t, st)
	wantUsage(t, h.Usage, 12, 3)
	if h.Estimate == nil || h.Estimate.OutputTokens != 64 {
		t.Fatalf("estimate %+v, want the request's max_tokens (64) reserved", h.Estimate)
	}
	if st.Spent.Tokens != 15 || math.Abs(st.Spent.CostUSD-price.Cost(12, 3)) > 1e-12 {
		t.Fatalf("run spent %+v, want the model's usage", st.Spent)
	}
}

// TestModelHopDenied: a caller no policy lets call the model is denied;
// the upstream is never called.
func TestModelHopDenied(t *testing.T) {
	r := newRig(t, limits.Run{})
	_, _, err := r.call(t, "intern", chat("Summarise the report.", nil))
	var denied *agent.DeniedError
	if !errors.As(err, &denied) || denied.Denial.Reason != schemas.ReasonPolicy {
		t.Fatalf("err %v, want a policy denial", err)
	}
	if n := r.up.calls.Load(); n != 0 {
		t.Fatalf("upstream called %d times for a denied hop", n)
	}
}

// TestModelStreamUsage: a stream's usage comes from its final chunk; an
// upstream that reports none is charged by counting, never $0.
func TestModelStreamUsage(t *testing.T) {
	t.Run("final chunk", func(t *testing.T) {
		r := newRig(t, limits.Run{})
		rep, st, err := r.call(t, "research", chat("Summarise the report.", map[string]any{"stream": true}))
		if err != nil || agent.MessageText(rep.Output) != "Hello world!" {
			t.Fatalf("reply %v %v", rep, err)
		}
		opts, _ := r.up.last.Load().(map[string]any)["stream_options"].(map[string]any)
		if opts["include_usage"] != true {
			t.Fatalf("stream_options %v: include_usage not asked for", opts)
		}
		wantUsage(t, modelHop(t, st).Usage, 12, 3)
	})
	t.Run("counted", func(t *testing.T) {
		r := newRig(t, limits.Run{})
		r.up.noUsage = true
		_, st, err := r.call(t, "research", chat("Summarise the report.", map[string]any{"stream": true}))
		if err != nil {
			t.Fatal(err)
		}
		// "Summarise the report." is 21 characters (6 tokens counted),
		// "Hello world!" 12 (3 tokens).
		wantUsage(t, modelHop(t, st).Usage, 6, 3)
	})
}

// TestModelStreamCutAtReservation: an upstream that streams past what the
// call reserved is cut; what it streamed is charged and the hop fails.
func TestModelStreamCutAtReservation(t *testing.T) {
	r := newRig(t, limits.Run{})
	r.up.endless = true
	rep, st, err := r.call(t, "research", chat("Write forever.", map[string]any{"stream": true, "max_tokens": float64(40)}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != schemas.StateFailed || !strings.Contains(rep.Error, "outgrew the 40 tokens") {
		t.Fatalf("reply %s %q, want failed: outgrew", rep.Status, rep.Error)
	}
	select {
	case <-r.up.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream stream was not closed")
	}
	h := modelHop(t, st)
	if h.Usage == nil || h.Usage.OutputTokens <= 40 || h.Usage.CostUSD <= 0 {
		t.Fatalf("usage %+v, want the streamed tokens (> 40) charged", h.Usage)
	}
	if st.Spent.Tokens != h.Usage.Tokens() || st.Spent.CostUSD != h.Usage.CostUSD {
		t.Fatalf("the run spent %+v, want the cut stream's %+v", st.Spent, h.Usage)
	}
}

// TestModelStreamCutWhenRunHalted: an operator halts the run while the
// model streams: the gateway cancels the hop, the bridge cuts the
// upstream stream, and the caller is told. What was streamed before the
// cut is charged: the bridge's late reply settles the hop the halt closed
// (hop.completed with settles), and the run's spend holds its tokens.
func TestModelStreamCutWhenRunHalted(t *testing.T) {
	r := newRigWith(t, limits.Run{}, []string{"oncall"})
	r.up.endless = true
	runs := make(chan string, 1)
	got := make(chan error, 1)
	r.g.Agent("research", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		runs <- task.Context.RunID
		_, err := task.Delegate(ctx, "gpt", models.ChatMessage(chat("Write forever.", map[string]any{"stream": true, "max_tokens": float64(100000)})),
			agent.WithEstimate(schemas.Usage{OutputTokens: 100000}))
		got <- err
		return nil, err
	})
	tomas := r.g.Agent("tomas", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { _, _ = tomas.Start(ctx, "research", agent.UserText("go")) }()
	run := <-runs
	for r.up.calls.Load() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the upstream was never called")
		case <-time.After(10 * time.Millisecond):
		}
	}
	op, err := operator.Connect(operator.Config{ID: "oncall", Key: r.g.Keys["oncall"], URL: r.g.Server.ClientURL(), Subjects: &r.g.Subjects})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := op.Halt(ctx, run, "runaway stream"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.up.gone:
	case <-ctx.Done():
		t.Fatal("the upstream stream was not cut after the halt")
	}
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("the caller was not told its model call was cut")
		}
	case <-ctx.Done():
		t.Fatal("the caller's call did not end")
	}
	// Each chunk of the endless stream is 60 characters: 15 tokens counted.
	st := brokertest.WaitFor(t, 10*time.Second, func() (*ledger.State, error) {
		st := r.state(t, run)
		if h := modelHop(t, st); !h.Settled {
			return nil, fmt.Errorf("the model hop is %s, not settled yet", h.Status)
		}
		return st, nil
	})
	if !st.Halted {
		t.Fatal("the run is not halted in the ledger")
	}
	h := modelHop(t, st)
	sent := r.up.sent.Load()
	if h.Status != ledger.HopStatus(schemas.StateCanceled) || h.Usage == nil || h.Usage.OutputTokens < 15 || h.Usage.OutputTokens > 15*sent {
		t.Fatalf("hop %s usage %+v, want canceled with the streamed tokens (15 to %d) charged", h.Status, h.Usage, 15*sent)
	}
	wantUsage(t, h.Usage, h.Usage.InputTokens, h.Usage.OutputTokens)
	if st.Spent.Tokens != h.Usage.Tokens() || math.Abs(st.Spent.CostUSD-h.Usage.CostUSD) > 1e-12 || st.Reserved.Tokens != 0 {
		t.Fatalf("run spent %+v reserved %+v, want the cut stream's %+v and nothing reserved", st.Spent, st.Reserved, h.Usage)
	}
	// The bridge replied once: one settle, and no other close of the hop.
	var settles int
	recs, err := r.g.Ledger.Read(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Event.Type == schemas.EventHopCompleted && rec.Event.HopID == h.ID {
			settles++
		}
	}
	if settles != 1 {
		t.Fatalf("%d hop.completed for the cut hop, want the one settle", settles)
	}
}
