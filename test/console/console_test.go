// Package console_test drives the web console in a real browser against a
// live `tollgate serve` process: the demo's incident and a run held open
// are made through the serve's NATS by the agent client, then
// browser.mjs (Playwright with Debian's chromium, axe-core) checks the
// runs list, the run graph with its denied edge, the time slider, the
// what-if, the spend page and an operator's halt, and writes a screenshot
// of each page. The halt is then checked from outside, in the ledger, as
// an operator reads it over NATS.
//
// Needs node, npm and chromium (test/run installs them; CI=true makes
// their absence a failure, not a skip). With ClickHouse
// (TOLLGATE_CLICKHOUSE_DSN) the gateway projects into a fresh database
// and the spend page must draw its chart. TOLLGATE_UPDATE_DOCS=1 copies
// the screenshots to docs/console/.
package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/demo"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/projections/projectionstest"
	"github.com/tollgate/tollgate/schemas"
)

// fileConfig is the serve config the test writes.
type fileConfig struct {
	NATS       map[string]string         `yaml:"nats"`
	Agents     []gateway.IdentityConfig  `yaml:"agents"`
	Users      []gateway.IdentityConfig  `yaml:"users"`
	Operators  []gateway.OperatorConfig  `yaml:"operators"`
	Policies   []string                  `yaml:"policies"`
	Admin      adminSection              `yaml:"admin"`
	ClickHouse map[string]string         `yaml:"clickhouse,omitempty"`
	Workflows  map[string]map[string]any `yaml:"workflows,omitempty"`
}

type adminSection struct {
	Listen  string         `yaml:"listen"`
	Console console.Config `yaml:"console"`
}

// need finds a tool the browser test needs; without it the test fails in
// CI and is skipped elsewhere.
func need(t *testing.T, name string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (test/run installs it: apt-get install -y %s)", name, name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func TestConsoleInBrowser(t *testing.T) {
	node := need(t, "node")
	npm := need(t, "npm")
	chromium := need(t, "chromium", os.Getenv("CHROMIUM"), "/usr/bin/chromium")
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(here, "node_modules", "playwright-core")); err != nil {
		out, err := exec.Command(npm, "ci", "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			t.Fatalf("npm ci in test/console: %v\n%s", err, out)
		}
	}
	bin := filepath.Join(t.TempDir(), "tollgate")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/tollgate/tollgate/cmd/tollgate").CombinedOutput(); err != nil {
		t.Fatalf("build tollgate: %v\n%s", err, out)
	}

	dir := t.TempDir()
	cfg, keys, err := demo.Config(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	token, hash, err := console.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	op, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	opPub, _ := op.PublicKey()
	opSeed, _ := op.Seed()
	enforcertest.AddRetries(t, cfg, keys)
	writePolicies(t, filepath.Join(dir, "policies"), demo.Incident)
	writePolicies(t, filepath.Join(dir, "candidates"), demo.Loop)
	natsPort, adminPort := brokertest.FreePort(t), brokertest.FreePort(t)
	fc := fileConfig{
		NATS:      map[string]string{"data_dir": "data", "listen": fmt.Sprintf("127.0.0.1:%d", natsPort)},
		Agents:    cfg.Agents,
		Users:     cfg.Users,
		Operators: []gateway.OperatorConfig{{ID: "oncall", PublicKey: opPub}},
		Policies:  []string{"policies/*.cedar"},
		Admin: adminSection{Listen: fmt.Sprintf("127.0.0.1:%d", adminPort), Console: console.Config{
			Tokens: []console.Token{{Name: "auditors", SHA256: hash}}, PolicyDirs: []string{"candidates"},
			TraceURL: "http://localhost:16686/trace/{trace_id}", Payloads: true}},
	}
	spend := "0"
	if os.Getenv(projectionstest.EnvDSN) != "" || os.Getenv("CI") == "true" {
		db := projectionstest.New(t) // dropped when the test ends
		fc.ClickHouse = map[string]string{"dsn": db.Config.DSN, "database": db.Name}
		spend = "1"
	}
	b, err := yaml.Marshal(&fc)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	serve(t, bin, dir, config)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reply, err := demo.Play(ctx, demo.Bus{URL: url}, demo.Incident, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	incident := reply.RunID
	retryRun := enforcertest.RunRetries(ctx, t, agent.Config{URL: url}, keys, demo.User)
	liveRun := holdRun(ctx, t, url, keys)

	loopURL := demoConsole(t, bin, demo.Loop)
	injectionURL := demoConsole(t, bin, demo.Injection)

	shots := filepath.Join(here, "screenshots")
	cmd := exec.CommandContext(ctx, node, "browser.mjs")
	cmd.Dir = here
	cmd.Env = append(os.Environ(),
		"CONSOLE_URL="+fmt.Sprintf("http://127.0.0.1:%d/console/", adminPort), "CONSOLE_TOKEN="+token,
		"OPERATOR_ID=oncall", "OPERATOR_SEED="+string(opSeed), "INCIDENT_RUN="+incident, "LIVE_RUN="+liveRun, "RETRY_RUN="+retryRun,
		"SCREENSHOTS="+shots, "CHROMIUM="+chromium, "SPEND="+spend, "LOOP_URL="+loopURL, "INJECTION_URL="+injectionURL)
	out, err := cmd.CombinedOutput()
	t.Logf("browser:\n%s", out)
	if err != nil {
		t.Fatalf("browser test: %v", err)
	}

	// The halt the browser asked for is in the ledger, signed off by the
	// operator, as the operator reads it over NATS.
	tree := readRun(ctx, t, url, op, liveRun)
	if tree.Halt == nil || tree.Halt.By != "oncall" || tree.Halt.Reason != "stuck: halted from the console" || tree.Status != ledger.RunHalted {
		t.Fatalf("live run after the browser's halt: status %s, halt %+v", tree.Status, tree.Halt)
	}
	for _, name := range []string{"login.png", "runs.png", "run.png", "hop.png", "run-slider.png", "whatif.png", "spend.png", "halted.png", "loop.png", "injection.png", "retry.png"} {
		st, err := os.Stat(filepath.Join(shots, name))
		if err != nil || st.Size() < 5000 {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if os.Getenv("TOLLGATE_UPDATE_DOCS") == "1" {
			b, err := os.ReadFile(filepath.Join(shots, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(here, "..", "..", "docs", "console", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func writePolicies(t *testing.T, dir, scenario string) {
	t.Helper()
	files, err := demo.Policies(scenario)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Name)), f.Src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := policy.ReadPaths([]string{dir}); err != nil {
		t.Fatal(err)
	}
}

// serve starts `tollgate serve` and waits until it serves.
func serve(t *testing.T, bin, dir, config string) {
	t.Helper()
	out := &strings.Builder{}
	cmd := exec.Command(bin, "serve", "-c", config)
	cmd.Dir = dir
	w := &lockedWriter{b: out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serve output:\n%s", w.String())
		}
	})
	brokertest.Eventually(t, 60*time.Second, "serve starts", func() bool {
		select {
		case <-exited:
			t.Fatalf("serve exited:\n%s", w.String())
		default:
		}
		return strings.Contains(w.String(), "tollgate serving on")
	})
}

// demoConsole starts `tollgate demo --scenario <scenario> --console` as a
// new user would, and returns the URL it prints once it serves.
func demoConsole(t *testing.T, bin, scenario string) string {
	t.Helper()
	w := &lockedWriter{b: &strings.Builder{}}
	cmd := exec.Command(bin, "demo", "--scenario", scenario, fmt.Sprintf("--console=127.0.0.1:%d", brokertest.FreePort(t)))
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // Ctrl-C, as the demo says
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("demo --console did not stop on Ctrl-C")
		}
	})
	var url string
	brokertest.Eventually(t, 60*time.Second, "demo --console prints its URL", func() bool {
		select {
		case <-exited:
			t.Fatalf("demo --console exited:\n%s", w.String())
		default:
		}
		for _, f := range strings.Fields(w.String()) {
			if strings.HasPrefix(f, "http://") && strings.Contains(f, "#token=") {
				url = f
			}
		}
		return url != ""
	})
	return url
}

// holdRun starts a run of the demo's user at an orchestrator that keeps
// the root hop open (until the test ends), and returns it once delivered.
func holdRun(ctx context.Context, t *testing.T, url string, keys map[string]nkeys.KeyPair) string {
	t.Helper()
	got := make(chan string, 1)
	orch, err := agent.Connect(ctx, agent.Config{ID: "orchestrator", Key: keys["orchestrator"], URL: url,
		Handler: func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
			got <- task.Context.RunID
			<-ctx.Done()
			return nil, ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orch.Close)
	user, err := agent.Connect(ctx, agent.Config{ID: demo.User, Key: keys[demo.User], URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(user.Close)
	go func() {
		_, _ = user.Start(ctx, "orchestrator", agent.UserText("hold this. Note to the LLM: summarise only."))
	}()
	select {
	case run := <-got:
		return run
	case <-time.After(30 * time.Second):
		t.Fatal("the held run never reached the orchestrator")
	}
	return ""
}

// readRun reads and verifies a run as the operator, over NATS.
func readRun(ctx context.Context, t *testing.T, url string, op nkeys.KeyPair, run string) *runtree.Run {
	t.Helper()
	subj := broker.DefaultSubjects()
	nc, err := broker.Connect(broker.ConnectConfig{URL: url, Key: op, InboxPrefix: broker.InboxPrefix("oncall"), Name: "test operator"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithAPIPrefix(nc, subj.JSAPIPrefix())
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(js, subj.Stream(broker.StreamLedger), subj)
	var tree *runtree.Run
	brokertest.Eventually(t, 20*time.Second, "the halt is in the ledger", func() bool {
		v, err := l.ReadVerified(ctx, run, nil)
		if err != nil || !v.OK() {
			return false
		}
		tree, err = runtree.FromVerified(v)
		return err == nil && tree.Halt != nil
	})
	if len(tree.Halt.Cancelled) != 1 || tree.Hops[0].Status != string(schemas.StateCanceled) {
		t.Fatalf("the halt did not cancel the held hop: %+v, hop status %s", tree.Halt, tree.Hops[0].Status)
	}
	return tree
}

// lockedWriter collects a process's output for several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
