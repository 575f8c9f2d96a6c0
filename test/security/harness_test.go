package security_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// tollgateBin is the tollgate binary TestMain builds once.
var tollgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-security-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tollgateBin = filepath.Join(dir, "tollgate")
	out, err := exec.Command("go", "build", "-o", tollgateBin, "github.com/tollgate/tollgate/cmd/tollgate").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tollgate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// variant is how serve reaches NATS.
type variant string

const (
	// embedded: serve runs its own NATS server (no nats.url).
	embedded variant = "embedded"
	// external: serve connects to a nats-server process whose config
	// includes the accounts file serve writes.
	external variant = "external"
)

var variants = []variant{embedded, external}

// policies are the Cedar policies of every gateway the suite starts: users
// start runs at entry agents, agents delegate to agents, and only the
// orchestrator may start runs of its own (start_run).
const policies = `@id("users-start-runs-at-entry-agents")
permit (principal is User, action == Action::"invoke", resource is Agent)
when { resource.tags.contains("entry") };

@id("agents-delegate-to-agents")
permit (principal is Agent, action == Action::"invoke", resource is Agent);

@id("orchestrator-and-spawner-may-start-runs")
permit (principal is Agent, action == Action::"start_run", resource is Agent)
when { principal == Agent::"orchestrator" || principal == Agent::"spawner" };
`

// setup shapes a gateway's config.
type setup struct {
	// rejectRate and runRate set per_agent.reject_rate_limit and
	// per_principal.run_rate ("" keeps the defaults).
	rejectRate, runRate string
	// admin serves the admin listener (admin.listen) on a free port.
	admin bool
	// clickhouse, when set, is the ClickHouse section serve projects into.
	clickhouse map[string]any
	// alerts, when set, is the alerts section (the notifier's sinks).
	alerts map[string]any
	// serveArgs are extra arguments of serve (--log-level debug).
	serveArgs []string
	// extra, when set, adds to the config before serve starts.
	extra func(t *testing.T, g *gw)
}

// The cast of every gateway. tomas is the user whose runs are the
// victims; orchestrator and research serve the legitimate runs; writer is
// an entry agent that stays offline until a test connects it (its
// deliveries wait in DELIVER); sink is an entry agent for floods of runs;
// mallory is the attacking agent, spawner an attacking agent that policy
// lets start runs, and eve an attacking user; ops and ops2 are operators.
var (
	castAgents = []gateway.IdentityConfig{
		{ID: "orchestrator", Tags: []string{"entry"}},
		{ID: "research"},
		{ID: "writer", Tags: []string{"entry"}},
		{ID: "sink", Tags: []string{"entry"}},
		{ID: "mallory"},
		{ID: "spawner"},
	}
	castUsers     = []string{"tomas", "eve"}
	castOperators = []string{"ops", "ops2"}
)

// fileConfig is the gateway config file the suite writes, as an operator
// would after `tollgate agent add`.
type fileConfig struct {
	NATS         natsSection              `yaml:"nats"`
	Agents       []gateway.IdentityConfig `yaml:"agents"`
	Users        []gateway.IdentityConfig `yaml:"users"`
	Operators    []gateway.OperatorConfig `yaml:"operators"`
	Policies     []string                 `yaml:"policies"`
	PerAgent     map[string]string        `yaml:"per_agent,omitempty"`
	PerPrincipal map[string]string        `yaml:"per_principal,omitempty"`
	Admin        map[string]string        `yaml:"admin,omitempty"`
	ClickHouse   map[string]any           `yaml:"clickhouse,omitempty"`
	Alerts       map[string]any           `yaml:"alerts,omitempty"`
	HTTP         map[string]string        `yaml:"http,omitempty"`
	Models       []gateway.ModelConfig    `yaml:"models,omitempty"`
}

type natsSection struct {
	URL               string `yaml:"url,omitempty"`
	Credentials       string `yaml:"credentials,omitempty"`
	AccountsFile      string `yaml:"accounts_file,omitempty"`
	SystemCredentials string `yaml:"system_credentials,omitempty"`
	DataDir           string `yaml:"data_dir,omitempty"`
	Listen            string `yaml:"listen,omitempty"`
}

// gw is a running `tollgate serve` process and what the suite knows of it.
type gw struct {
	t       testing.TB
	variant variant
	dir     string
	// config is the config file; cfg what it holds.
	config string
	cfg    fileConfig
	keys   map[string]nkeys.KeyPair
	url    string
	subj   broker.Subjects

	cmd *exec.Cmd
	out *syncBuffer

	// nats is the nats-server process and admin a connection in the
	// gateway account (external variant only).
	nats  *brokertest.External
	admin jetstream.JetStream

	ops  *opReader
	cast *legitCast
	// adminAddr is the admin listener's address, when setup.admin.
	adminAddr string
	// serveArgs are serve's extra arguments (setup.serveArgs).
	serveArgs []string
}

// startGateway writes a config for the cast, starts serve (and, for the
// external variant, a nats-server process first), and connects the
// legitimate cast and an operator reader.
func startGateway(t *testing.T, v variant, s setup) *gw {
	t.Helper()
	g := &gw{t: t, variant: v, dir: t.TempDir(), keys: map[string]nkeys.KeyPair{}, subj: broker.DefaultSubjects(), out: &syncBuffer{}, serveArgs: s.serveArgs}
	g.config = filepath.Join(g.dir, "tollgate.yaml")
	for _, a := range castAgents {
		a.PublicKey = g.newKey(t, a.ID)
		g.cfg.Agents = append(g.cfg.Agents, a)
	}
	for _, u := range castUsers {
		g.cfg.Users = append(g.cfg.Users, gateway.IdentityConfig{ID: u, PublicKey: g.newKey(t, u)})
	}
	for _, op := range castOperators {
		g.cfg.Operators = append(g.cfg.Operators, gateway.OperatorConfig{ID: op, PublicKey: g.newKey(t, op)})
	}
	g.cfg.Policies = []string{"policy.cedar"}
	if err := os.WriteFile(filepath.Join(g.dir, "policy.cedar"), []byte(policies), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.rejectRate != "" {
		g.cfg.PerAgent = map[string]string{"reject_rate_limit": s.rejectRate}
	}
	if s.runRate != "" {
		g.cfg.PerPrincipal = map[string]string{"run_rate": s.runRate}
	}
	if s.admin {
		g.adminAddr = fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
		g.cfg.Admin = map[string]string{"listen": g.adminAddr}
	}
	g.cfg.ClickHouse, g.cfg.Alerts = s.clickhouse, s.alerts
	if s.extra != nil {
		s.extra(t, g)
	}

	switch v {
	case embedded:
		port := brokertest.FreePort(t)
		g.cfg.NATS = natsSection{DataDir: "data", Listen: fmt.Sprintf("127.0.0.1:%d", port)}
		g.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	case external:
		g.startNATS(t)
	}
	g.writeConfig(t)
	g.startServe(t)
	if v == external {
		g.connectAdmin(t)
	}
	g.ops = g.operator(t, "ops")
	g.cast = g.startCast(t)
	return g
}

// startNATS bootstraps the accounts file from the config (as `tollgate
// nats accounts` does) and starts a nats-server process that includes it.
func (g *gw) startNATS(t *testing.T) {
	t.Helper()
	for _, seed := range []string{"gateway.nk", "system.nk"} {
		kp, err := broker.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		g.keys["_"+seed] = kp
		if err := broker.WriteSeed(filepath.Join(g.dir, seed), kp); err != nil {
			t.Fatal(err)
		}
	}
	g.cfg.NATS = natsSection{URL: "nats://127.0.0.1:1", Credentials: "gateway.nk", AccountsFile: "accounts.conf", SystemCredentials: "system.nk"}
	g.writeConfig(t)
	cfg, err := gateway.LoadConfig(g.config)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := gateway.AccountsConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.dir, "accounts.conf"), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	g.nats = brokertest.StartExternal(t, g.dir, "include accounts.conf\n")
	g.url = g.nats.URL
	g.cfg.NATS.URL = g.url
}

func (g *gw) newKey(t *testing.T, id string) string {
	t.Helper()
	kp, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteSeed(filepath.Join(g.dir, id+".nk"), kp); err != nil {
		// A rotated key replaces the old seed file.
		_ = os.Remove(filepath.Join(g.dir, id+".nk"))
		if err := broker.WriteSeed(filepath.Join(g.dir, id+".nk"), kp); err != nil {
			t.Fatal(err)
		}
	}
	g.keys[id] = kp
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func (g *gw) writeConfig(t testing.TB) {
	t.Helper()
	b, err := yaml.Marshal(&g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startServe starts `tollgate serve` and waits until it serves.
func (g *gw) startServe(t *testing.T) {
	t.Helper()
	g.cmd = exec.Command(tollgateBin, append([]string{"serve", "-c", g.config}, g.serveArgs...)...)
	g.cmd.Dir = g.dir
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = g.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = g.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serve output (%s):\n%s", g.variant, g.out.tail(8000))
		}
	})
	brokertest.WaitFor(t, 60*time.Second, func() (bool, error) {
		select {
		case <-exited:
			t.Fatalf("serve exited:\n%s", g.out.String())
		default:
		}
		if out := g.out.String(); !strings.Contains(out, "tollgate serving on") {
			return false, fmt.Errorf("serve did not start:\n%s", out)
		}
		return true, nil
	})
}

// pid is the serve process's id.
func (g *gw) pid() int { return g.cmd.Process.Pid }

// reload rewrites the config file and sends serve SIGHUP; it returns once
// serve has logged the outcome, and fails the test if it refused.
func (g *gw) reload(t testing.TB) {
	t.Helper()
	refused := strings.Count(g.out.String(), `msg="reload refused`)
	before := strings.Count(g.out.String(), "msg=reloaded ") + refused
	g.writeConfig(t)
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 60*time.Second, "serve logs the reload", func() bool {
		s := g.out.String()
		return strings.Count(s, "msg=reloaded ")+strings.Count(s, `msg="reload refused`) > before
	})
	if strings.Count(g.out.String(), `msg="reload refused`) > refused {
		t.Fatalf("serve refused the reload:\n%s", g.out.tail(4000))
	}
}

// connectAdmin opens a connection in the gateway account with the
// gateway's own credentials, to look at the streams the attacks aim at.
func (g *gw) connectAdmin(t *testing.T) {
	t.Helper()
	nc, err := broker.Connect(broker.ConnectConfig{URL: g.url, Key: g.keys["_gateway.nk"], Name: "security-test admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if g.admin, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
}

// vmRSS returns a process's resident set size in bytes.
func vmRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// eachVariant runs fn against a fresh gateway of each variant.
func eachVariant(t *testing.T, s setup, fn func(t *testing.T, g *gw)) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) {
			fn(t, startGateway(t, v, s))
		})
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) tail(n int) string {
	str := s.String()
	if len(str) > n {
		return "…" + str[len(str)-n:]
	}
	return str
}

// connOpts are the options of every raw connection: no reconnects, so a
// connection the server closes stays closed.
func connOpts(extra ...nats.Option) []nats.Option {
	return append([]nats.Option{nats.MaxReconnects(0)}, extra...)
}
