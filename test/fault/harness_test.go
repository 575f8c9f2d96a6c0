package fault_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger"
)

var (
	flagSeed     = flag.Int64("fault.seed", 0, "seed of the random kill moments; 0 picks one (printed, so a failure can be replayed)")
	flagFull     = flag.Bool("fault.full", false, "full counts: 100 kills per scenario, more runs in flight")
	flagKills    = flag.Int("fault.kills", 0, "kills per kill scenario (default 20, 100 with -fault.full)")
	flagWorkers  = flag.Int("fault.workers", 0, "runs in flight at once (default 16, 48 with -fault.full)")
	flagInterval = flag.Duration("fault.interval", 0, "mean time between kills (default 600ms, 2s with -fault.full)")
)

// counts are a scenario's sizes, from the flags.
type counts struct {
	kills, workers int
	interval       time.Duration
}

func sizes() counts {
	c := counts{kills: 20, workers: 16, interval: 600 * time.Millisecond}
	if *flagFull {
		c = counts{kills: 100, workers: 48, interval: 2 * time.Second}
	}
	if *flagKills > 0 {
		c.kills = *flagKills
	}
	if *flagWorkers > 0 {
		c.workers = *flagWorkers
	}
	if *flagInterval > 0 {
		c.interval = *flagInterval
	}
	return c
}

// The binaries TestMain builds once.
var bins struct{ tollgate, agent, nats string }

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "tollgate-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.tollgate = filepath.Join(dir, "tollgate")
	bins.agent = filepath.Join(dir, "agentproc")
	bins.nats = filepath.Join(dir, "nats-server")
	for _, b := range []struct{ out, pkg string }{
		{bins.tollgate, "github.com/tollgate/tollgate/cmd/tollgate"},
		{bins.agent, "github.com/tollgate/tollgate/test/fault/agentproc"},
		{bins.nats, "github.com/nats-io/nats-server/v2"},
	} {
		if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// policies: users start runs at entry agents, agents delegate to agents.
const policies = `@id("users-start-runs-at-entry-agents")
permit (principal is User, action == Action::"invoke", resource is Agent)
when { resource.tags.contains("entry") };

@id("agents-delegate-to-agents")
permit (principal is Agent, action == Action::"invoke", resource is Agent);
`

// The cast: tomas (the test process) starts runs at the orchestrator,
// which delegates to research and then to writer. Each reports tokens.
var cast = []agentSpec{
	{id: "orchestrator", delegate: "research,writer", tokens: 50, entry: true},
	{id: "research", tokens: 100},
	{id: "writer", tokens: 200},
}

// runTokens is what a completed run spends: every hop's tokens once.
const runTokens = 350

type agentSpec struct {
	id, delegate string
	tokens       int
	entry        bool
	extra        []string
}

// fileConfig is the config file the suite writes.
type fileConfig struct {
	NATS         natsSection              `yaml:"nats"`
	Agents       []gateway.IdentityConfig `yaml:"agents"`
	Users        []gateway.IdentityConfig `yaml:"users"`
	Operators    []gateway.OperatorConfig `yaml:"operators"`
	Policies     []string                 `yaml:"policies"`
	PerAgent     map[string]any           `yaml:"per_agent,omitempty"`
	PerPrincipal map[string]string        `yaml:"per_principal,omitempty"`
	Enforcer     map[string]any           `yaml:"enforcer,omitempty"`
	ClickHouse   map[string]any           `yaml:"clickhouse,omitempty"`
	Admin        map[string]any           `yaml:"admin,omitempty"`
}

type natsSection struct {
	URL               string        `yaml:"url,omitempty"`
	Credentials       string        `yaml:"credentials,omitempty"`
	AccountsFile      string        `yaml:"accounts_file,omitempty"`
	SystemCredentials string        `yaml:"system_credentials,omitempty"`
	DataDir           string        `yaml:"data_dir,omitempty"`
	Listen            string        `yaml:"listen,omitempty"`
	AgentAckWait      time.Duration `yaml:"agent_ack_wait,omitempty"`
	LedgerMaxBytes    int64         `yaml:"ledger_max_bytes,omitempty"`
}

// options shape a system.
type options struct {
	// external runs a nats-server process and serve against it; else
	// serve embeds NATS.
	external bool
	// instances is how many serve processes run (external only).
	instances int
	// hopTimeout is every hop's timeout; default 60s.
	hopTimeout time.Duration
	// ledgerMaxBytes caps the ledger stream.
	ledgerMaxBytes int64
	// agents replaces the cast.
	agents []agentSpec
	// clickhouse, when set, is the DSN serve projects the ledger to.
	clickhouse string
	// runCacheBytes bounds the enforcer's run cache (0: the default).
	runCacheBytes int
	// pprof serves Go's profiles on an admin listener (adminAddr, with
	// pprofToken).
	pprof bool
}

// pprofToken is the admin.pprof_token of a system started with pprof.
const pprofToken = "fault-suite-pprof-token"

// system is a gateway, its bus and its agents, all separate processes.
type system struct {
	t      *testing.T
	opts   options
	dir    string
	keys   map[string]nkeys.KeyPair
	cfg    fileConfig
	config string
	url    string
	// runLog is where the agents write one line per handler run.
	runLog string
	// adminAddr is serve's admin listener (options.pprof only).
	adminAddr string

	nats   *proc
	serves []*proc
	agents []*proc
}

func start(t *testing.T, o options) *system {
	t.Helper()
	if o.instances == 0 {
		o.instances = 1
	}
	if o.hopTimeout == 0 {
		o.hopTimeout = 60 * time.Second
	}
	if o.agents == nil {
		o.agents = cast
	}
	s := &system{t: t, opts: o, dir: t.TempDir(), keys: map[string]nkeys.KeyPair{}}
	s.config = filepath.Join(s.dir, "tollgate.yaml")
	s.runLog = filepath.Join(s.dir, "runs.log")
	for _, a := range o.agents {
		ic := gateway.IdentityConfig{ID: a.id, PublicKey: s.newKey(a.id)}
		if a.entry {
			ic.Tags = []string{"entry"}
		}
		s.cfg.Agents = append(s.cfg.Agents, ic)
	}
	s.cfg.Users = []gateway.IdentityConfig{{ID: "tomas", PublicKey: s.newKey("tomas")}}
	s.cfg.Operators = []gateway.OperatorConfig{{ID: "ops", PublicKey: s.newKey("ops")}}
	s.cfg.Policies = []string{"policy.cedar"}
	s.cfg.PerAgent = map[string]any{"timeout_seconds": int(o.hopTimeout / time.Second)}
	s.cfg.PerPrincipal = map[string]string{"run_rate": "1000000/min"}
	// A killed enforcer's submissions come back after ack_wait; an
	// agent's unacknowledged tasks after agent_ack_wait.
	s.cfg.Enforcer = map[string]any{"ack_wait": "3s"}
	if o.runCacheBytes > 0 {
		s.cfg.Enforcer["run_cache_bytes"] = o.runCacheBytes
	}
	if o.pprof {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.adminAddr = l.Addr().String()
		l.Close()
		s.cfg.Admin = map[string]any{"listen": s.adminAddr, "pprof_token_sha256": console.HashToken(pprofToken)}
	}
	if o.clickhouse != "" {
		s.cfg.ClickHouse = map[string]any{"dsn": o.clickhouse, "database": "tollgate", "flush_interval": "200ms"}
	}
	if err := os.WriteFile(filepath.Join(s.dir, "policy.cedar"), []byte(policies), 0o600); err != nil {
		t.Fatal(err)
	}
	nats := natsSection{AgentAckWait: 3 * time.Second, LedgerMaxBytes: o.ledgerMaxBytes}
	if o.external {
		s.startNATS(&nats)
	} else {
		port := brokertest.FreePort(t)
		nats.DataDir, nats.Listen = "data", fmt.Sprintf("127.0.0.1:%d", port)
		s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	}
	s.cfg.NATS = nats
	s.writeConfig()
	for i := range o.instances {
		p := s.newProc(fmt.Sprintf("serve-%d", i), bins.tollgate, "serve", "-c", s.config)
		p.ready = "tollgate serving on"
		s.serves = append(s.serves, p)
		p.start()
	}
	for _, a := range o.agents {
		args := []string{"-url", s.url, "-id", a.id, "-seed", filepath.Join(s.dir, a.id+".nk"), "-log", s.runLog,
			"-tokens", fmt.Sprint(a.tokens)}
		if a.delegate != "" {
			args = append(args, "-delegate", a.delegate)
		}
		args = append(args, a.extra...)
		p := s.newProc("agent-"+a.id, bins.agent, args...)
		p.ready = "agent ready"
		s.agents = append(s.agents, p)
		p.start()
	}
	return s
}

// startNATS writes the accounts file from the config (as `tollgate nats
// accounts` does) and starts a nats-server process that includes it.
func (s *system) startNATS(n *natsSection) {
	t := s.t
	for _, seed := range []string{"gateway", "system"} {
		s.newKey("_" + seed)
	}
	*n = natsSection{URL: "nats://127.0.0.1:1", Credentials: "_gateway.nk", AccountsFile: "accounts.conf",
		SystemCredentials: "_system.nk", AgentAckWait: n.AgentAckWait, LedgerMaxBytes: n.LedgerMaxBytes}
	s.cfg.NATS = *n
	s.writeConfig()
	cfg, err := gateway.LoadConfig(s.config)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := gateway.AccountsConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "accounts.conf"), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	port := brokertest.FreePort(t)
	conf := filepath.Join(s.dir, "nats-server.conf")
	full := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream: {store_dir: %q}\ninclude accounts.conf\n", port, filepath.Join(s.dir, "store"))
	if err := os.WriteFile(conf, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	n.URL = s.url
	s.nats = s.newProc("nats-server", bins.nats, "-c", conf)
	s.nats.ready = "Server is ready"
	s.nats.start()
}

func (s *system) newKey(id string) string {
	s.t.Helper()
	kp, err := broker.NewKey()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := broker.WriteSeed(filepath.Join(s.dir, id+".nk"), kp); err != nil {
		s.t.Fatal(err)
	}
	s.keys[id] = kp
	pub, err := kp.PublicKey()
	if err != nil {
		s.t.Fatal(err)
	}
	return pub
}

func (s *system) writeConfig() {
	s.t.Helper()
	b, err := yaml.Marshal(&s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.config, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// client connects an identity of the system with the agent client.
func (s *system) client(id string, h agent.Handler) *agent.Client {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := agent.Connect(ctx, agent.Config{ID: id, Key: s.keys[id], URL: s.url, Handler: h})
	if err != nil {
		s.t.Fatalf("connect %s: %v", id, err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// reader is an operator's view of the ledger: direct gets through its
// account's imports, never a consumer.
func (s *system) reader() *ledger.Ledger {
	s.t.Helper()
	subj := broker.DefaultSubjects()
	nc, err := broker.Connect(broker.ConnectConfig{URL: s.url, Key: s.keys["ops"], InboxPrefix: broker.InboxPrefix("ops"), Name: "fault-suite operator"})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.NewWithAPIPrefix(nc, subj.JSAPIPrefix())
	if err != nil {
		s.t.Fatal(err)
	}
	return ledger.New(js, subj.Stream(broker.StreamLedger), subj)
}

// admin is a connection in the gateway account (external NATS only).
func (s *system) admin() jetstream.JetStream {
	s.t.Helper()
	nc, err := broker.Connect(broker.ConnectConfig{URL: s.url, Key: s.keys["_gateway"], Name: "fault-suite admin"})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return js
}

// proc is a process of the system. Its output is kept across restarts.
type proc struct {
	t     *testing.T
	name  string
	bin   string
	args  []string
	dir   string
	ready string // the line that says it is up

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
	starts int
}

func (s *system) newProc(name, bin string, args ...string) *proc {
	p := &proc{t: s.t, name: name, bin: bin, args: args, dir: s.dir, out: &syncBuffer{}}
	s.t.Cleanup(func() {
		p.stop()
		if s.t.Failed() {
			s.t.Logf("%s output:\n%s", p.name, p.out.tail(6000))
		}
	})
	return p
}

// start starts the process and waits for its ready line.
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	p.starts++
	before := strings.Count(p.out.String(), p.ready)
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.exited = exited
	cmd := p.cmd
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(p.out.String(), p.ready) <= before {
		select {
		case <-exited:
			p.t.Fatalf("%s exited:\n%s", p.name, p.out.tail(4000))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready within 60s:\n%s", p.name, p.out.tail(4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// stop sends SIGTERM, then SIGKILL after 20s.
func (p *proc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// pid is the running process's id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
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

var _ = nats.DefaultURL

// markKill notes in the agents' run log that the process of agent id was
// killed: its handler runs logged after this line are its next life's.
func (s *system) markKill(id string) {
	f, err := os.OpenFile(s.runLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s kill %s\n", killMark, id); err != nil {
		s.t.Fatal(err)
	}
}
