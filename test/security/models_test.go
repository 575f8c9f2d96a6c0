package security_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/hopfront"
	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestModelHopsFromOutside: serve's model front, attacked over HTTP with
// real bearer tokens minted by `tollgate agent token`. An agent cannot
// bill a model call to a task that is not its own, cannot call without
// naming its task, a model identity's own token is no caller's, a missing
// or forged token gets nothing; none of these reach the upstream. The
// owner of the task calls and is answered.
func TestModelHopsFromOutside(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"content": "ok"}}},
			"usage": map[string]any{"prompt_tokens": 3, "completion_tokens": 1}})
	}))
	defer up.Close()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	g := startGateway(t, embedded, setup{extra: func(t *testing.T, g *gw) {
		g.cfg.Agents = append(g.cfg.Agents, gateway.IdentityConfig{ID: "gpt", Type: "model", PublicKey: g.newKey(t, "gpt")})
		g.cfg.HTTP = map[string]string{"listen": httpAddr, "keys": "http-keys"}
		g.cfg.Models = []gateway.ModelConfig{{Config: models.Config{ID: "gpt", BaseURL: up.URL}, Seed: "gpt.nk"}}
		// Agents may call models: the policy file gets a permit for it.
		g.cfg.Policies = append(g.cfg.Policies, "models.cedar")
		writeFile(t, g.dir, "models.cedar", `permit (principal is Agent, action == Action::"call_model", resource is Model);`)
	}})
	token := func(id string) string {
		out, err := exec.Command(tollgateBin, "agent", "token", id, "-c", g.config, "--json").CombinedOutput()
		if err != nil {
			t.Fatalf("tollgate agent token %s: %v\n%s", id, err, out)
		}
		var tok struct{ Token string }
		if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
			t.Fatalf("token output %q: %v", out, err)
		}
		return tok.Token
	}
	run := g.cast.open(t) // the orchestrator holds the run's root hop open
	post := func(tok, hop string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+gateway.ChatCompletionsPath,
			strings.NewReader(`{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if hop != "" {
			req.Header.Set(hopfront.ParentHopHeader, hop)
			req.Header.Set(hopfront.RunHeader, run.ID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Error struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Error.Code
	}
	mallory, orch := token("mallory"), token("orchestrator")
	forged := orch[:len(orch)-4] + "AAAA"
	for _, c := range []struct {
		name, tok, hop string
		status         int
		code           string
	}{
		{"no token", "", run.RootHop, http.StatusUnauthorized, "unauthenticated"},
		{"forged token", forged, run.RootHop, http.StatusUnauthorized, "unauthenticated"},
		{"the model's own token", token("gpt"), run.RootHop, http.StatusForbidden, "not_a_caller"},
		{"no parent hop", mallory, "", http.StatusBadRequest, "parent_hop"},
		{"another agent's task", mallory, run.RootHop, http.StatusForbidden, "parent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if status, code := post(c.tok, c.hop); status != c.status || code != c.code {
				t.Fatalf("status %d %q, want %d %q", status, code, c.status, c.code)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the upstream was called %d times by refused requests", n)
	}
	if status, code := post(orch, run.RootHop); status != http.StatusOK {
		t.Fatalf("the task's owner: status %d %q", status, code)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the upstream was called %d times, want 1", n)
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
