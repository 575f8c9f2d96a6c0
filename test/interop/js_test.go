package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/bearer"
)

// jsDir holds the JS SDK suite; npm ci installs it (test/run does).
const jsDir = "js"

// needJS skips without the installed JS SDK, except in CI, where its
// absence is a failure.
func needJS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@a2a-js", "sdk")); err == nil {
			return
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the JS interop suite needs node and `npm ci` in test/interop/js (test/run installs it)")
	}
	t.Skip("node or test/interop/js/node_modules missing: run npm ci in test/interop/js")
}

// jsServers starts server.mjs: two unmodified @a2a-js/sdk servers, one
// v1.0, one with legacyCompat (v0.3 card and JSON-RPC).
func jsServers(t *testing.T) (v1, legacy string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", "server.mjs")
	cmd.Dir, cmd.Stderr = jsDir, os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	var urls struct{ V1, Legacy string }
	select {
	case l := <-line:
		if err := json.Unmarshal([]byte(l), &urls); err != nil || urls.V1 == "" {
			t.Fatalf("server.mjs printed %q: %v", l, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server.mjs did not start")
	}
	return urls.V1, urls.Legacy
}

type jsResult struct {
	State, Text, ContextID, Error string
	Code                          any
}

// jsClient runs client.mjs: an unmodified @a2a-js/sdk client calling agent
// at the gateway (mode v1 or v03).
func (e *env) jsClient(agent, token, mode, text string) jsResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.mjs", e.base, agent, token, mode, text)
	cmd.Dir, cmd.Stderr = jsDir, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("client.mjs %s %s: %v", agent, mode, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r jsResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		e.t.Fatalf("client.mjs printed %q", out)
	}
	return r
}

// TestJSInterop: the JS SDK (1.3.0) in both directions through the
// gateway: JS clients (v1.0, and v0.3 through legacyCompat) call a Go
// server and JS servers behind bridges; a Go client calls the JS servers
// (the v1.0 one over v1.0, the legacyCompat one over v0.3, as its card
// says); denials and bad tokens reach the JS client as A2A errors.
func TestJSInterop(t *testing.T) {
	needJS(t)
	e := newEnv(t)
	startCast(t, e)
	v1URL, legacyURL := jsServers(t)
	e.bridge("jsagent", v1URL)
	legacy := e.bridge("jslegacy", legacyURL)
	for _, iface := range legacy.Card().SupportedInterfaces {
		if iface.ProtocolVersion != "0.3" {
			t.Fatalf("the legacy JS server's card offers %s %s: the bridge would not need v0.3", iface.ProtocolBinding, iface.ProtocolVersion)
		}
	}
	alice := e.token("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Go client -> gateway -> bridge -> JS servers.
	for _, id := range []string{"jsagent", "jslegacy"} {
		res, err := e.client(id, alice).SendMessage(ctx, userText("from go"))
		if err != nil {
			t.Fatalf("go -> %s: %v", id, err)
		}
		task := res.(*a2a.Task)
		if task.Status.State != a2a.TaskStateCompleted || !strings.Contains(text(task), id+" (js) echoes: from go") {
			t.Fatalf("go -> %s: %s %q", id, task.Status.State, text(task))
		}
		if u := a2ahttp.UsageOf(task.Metadata); u == nil || u.InputTokens != 7 || u.OutputTokens != 3 {
			t.Fatalf("go -> %s: the JS server's usage did not come through: %v", id, task.Metadata)
		}
	}

	// JS clients -> gateway -> Go and JS servers.
	cases := []struct{ agent, mode, want string }{
		{"planner", "v1", "plan from researched: from js"},
		{"planner", "v03", "plan from researched: from js"},
		{"jsagent", "v1", "jsagent (js) echoes: from js"},
		{"jsagent", "v03", "jsagent (js) echoes: from js"},
		{"jslegacy", "v1", "jslegacy (js) echoes: from js"},
	}
	for _, tc := range cases {
		t.Run(tc.agent+" "+tc.mode, func(t *testing.T) {
			r := e.jsClient(tc.agent, alice, tc.mode, "from js")
			if r.Error != "" || r.State != "TASK_STATE_COMPLETED" || !strings.Contains(r.Text, tc.want) {
				t.Fatalf("js %s -> %s: %+v", tc.mode, tc.agent, r)
			}
			v, err := e.g.Ledger().ReadVerified(ctx, r.ContextID, e.g.SigningKeys())
			if err != nil || !v.OK() {
				t.Fatalf("ledger of js %s -> %s: %v %+v", tc.mode, tc.agent, err, v)
			}
		})
	}
	t.Run("denied", func(t *testing.T) {
		for _, mode := range []string{"v1", "v03"} {
			r := e.jsClient("researcher", alice, mode, "x")
			if r.Error == "" || !strings.Contains(r.Error, "policy") {
				t.Fatalf("js %s -> researcher (denied): %+v", mode, r)
			}
		}
	})
	t.Run("bad token", func(t *testing.T) {
		other, _ := bearer.New(bearer.GenerateKey())
		forged, _, _ := other.Issue("alice", time.Hour)
		r := e.jsClient("planner", forged, "v1", "x")
		if r.Error == "" || !strings.Contains(strings.ToLower(r.Error), "not issued by this gateway") {
			t.Fatalf("js with a forged token: %+v", r)
		}
	})
}
