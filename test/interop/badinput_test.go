package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

type rpcReply struct {
	Error *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
	Result json.RawMessage `json:"result"`
}

// post sends body to the gateway's path with token and version headers.
func (e *env) post(path, token, version string, body []byte) (int, rpcReply) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if version != "" {
		req.Header.Set("A2A-Version", version)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r rpcReply
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatalf("%s: not JSON-RPC: %s", path, b)
	}
	return resp.StatusCode, r
}

func sendBody(method, text string, meta map[string]any) []byte {
	msg := map[string]any{"messageId": schemas.NewID(), "role": "ROLE_USER", "parts": []any{map[string]any{"text": text}}}
	if meta != nil {
		msg["metadata"] = meta
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": map[string]any{"message": msg}})
	return b
}

// TestIngressBadInput: every bad request gets the A2A error that says why,
// and nothing reaches an agent.
func TestIngressBadInput(t *testing.T) {
	e := newEnv(t)
	c := startCast(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob := e.token("alice"), e.token("bob")

	// A task of alice's, for the cases that name one.
	res, err := e.client("planner", alice).SendMessage(ctx, userText("mine"))
	if err != nil {
		t.Fatal(err)
	}
	aliceTask := res.(*a2a.Task)
	// And an open one (the sleeper works until cancelled).
	sleep := userText("sleep")
	sleep.Config = &a2a.SendMessageConfig{ReturnImmediately: true}
	res, err = e.client("sleeper", alice).SendMessage(ctx, sleep)
	if err != nil {
		t.Fatal(err)
	}
	openTask := res.(*a2a.Task)
	defer func() { _, _ = e.client("sleeper", alice).CancelTask(ctx, &a2a.CancelTaskRequest{ID: openTask.ID}) }()
	plannerCalls, researcherCalls := c.planner.calls.Load(), c.researcher.calls.Load()

	key, err := bearer.LoadOrCreateKey(filepath.Join(e.cfg.HTTPKeysDir(), "bearer.key"))
	if err != nil {
		t.Fatal(err)
	}
	past, _ := bearer.New(key, bearer.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }))
	expired, _, _ := past.Issue("alice", time.Hour)
	foreign, _ := bearer.New(bearer.GenerateKey())
	forged, _, _ := foreign.Issue("alice", time.Hour)
	revoked, revokedClaims, _ := e.g.Bearer().Issue("alice", time.Hour)
	next := *e.cfg
	next.HTTP.RevokedTokens = []string{revokedClaims.ID}
	if err := e.g.Reload(ctx, &next, gateway.Options{Policies: policies}); err != nil {
		t.Fatal(err)
	}

	getOther, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": map[string]any{"id": aliceTask.ID}})
	cases := []struct {
		name, path, token, version string
		body                       []byte
		status, code               int
		says                       string
	}{
		{"malformed JSON", "/planner/", alice, "1.0", []byte(`{"jsonrpc":"2.0","id":1,"method":`), 200, -32700, ""},
		{"not JSON-RPC 2.0", "/planner/", alice, "1.0", []byte(`{"jsonrpc":"1.0","id":1,"method":"SendMessage","params":{}}`), 200, -32600, ""},
		{"unknown method", "/planner/", alice, "1.0", []byte(`{"jsonrpc":"2.0","id":1,"method":"RunEverything","params":{}}`), 200, -32601, ""},
		{"wrong A2A version", "/planner/", alice, "2.0", sendBody("SendMessage", "hi", nil), 200, -32009, "2.0"},
		{"no token", "/planner/", "", "1.0", sendBody("SendMessage", "hi", nil), 200, -31401, "no bearer token"},
		{"expired token", "/planner/", expired, "1.0", sendBody("SendMessage", "hi", nil), 200, -31401, "expired"},
		{"revoked token", "/planner/", revoked, "1.0", sendBody("SendMessage", "hi", nil), 200, -31401, "revoked"},
		{"token of another gateway", "/planner/", forged, "1.0", sendBody("SendMessage", "hi", nil), 200, -31401, "not issued by this gateway"},
		{"no token, v0.3", "/planner/", "", "", []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hi"}]}}}`), 200, -31401, "no bearer token"},
		{"another identity's task", "/planner/", bob, "1.0", getOther, 200, -32001, ""},
		{"oversized body", "/planner/", alice, "1.0", sendBody("SendMessage", strings.Repeat("x", 2<<20), nil), 413, -32600, "over the limit"},
		{"parent task not a task id", "/researcher/", bob, "1.0", sendBody("SendMessage", "hi", map[string]any{a2ahttp.ParentTaskKey: "nonsense"}), 200, -32602, a2ahttp.ParentTaskKey},
		{"a parent task that is not the caller's", "/researcher/", bob, "1.0", sendBody("SendMessage", "hi", map[string]any{a2ahttp.ParentTaskKey: string(openTask.ID)}), 200, -31403, "(parent)"},
		{"unknown agent", "/nobody/", alice, "1.0", sendBody("SendMessage", "hi", nil), 404, -32001, "nobody"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, r := e.post(tc.path, tc.token, tc.version, tc.body)
			if status != tc.status || r.Error == nil || r.Error.Code != tc.code || !strings.Contains(r.Error.Message, tc.says) {
				t.Fatalf("HTTP %d, error %+v; want HTTP %d, code %d saying %q", status, r.Error, tc.status, tc.code, tc.says)
			}
		})
	}
	if c.planner.calls.Load() != plannerCalls || c.researcher.calls.Load() != researcherCalls {
		t.Fatalf("bad input reached an agent: planner %d -> %d, researcher %d -> %d", plannerCalls, c.planner.calls.Load(), researcherCalls, c.researcher.calls.Load())
	}
	// The denied delegation is recorded where the design says: bob is no
	// member of alice's run, so in a rejection entry of its own, not in
	// her run.
	found := false
	err = e.g.Ledger().ScanAll(ctx, time.Time{}, func(run string, raw []byte, _ uint64) error {
		if strings.HasPrefix(run, ledger.RejectedPrefix) && strings.Contains(string(raw), `"from":"bob"`) && strings.Contains(string(raw), `"reason":"parent"`) {
			found = true
		}
		if run == openTask.ContextID && strings.Contains(string(raw), `"from":"bob"`) {
			t.Errorf("bob's denial was written into alice's run")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("the denial of bob's delegation under alice's task is not in the ledger")
	}
}
