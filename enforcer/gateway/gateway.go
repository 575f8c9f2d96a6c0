// Package gateway assembles a running Tollgate gateway from its config:
// the bus (an embedded NATS server with JetStream in a data folder, or an
// external server), the streams, every identity's credential and
// permissions, the enforcer, tracing, and the optional ClickHouse
// projector. serve, the demo, the test harness (enforcer/enforcertest) and
// the benchmarks all start gateways through Start; nothing else wires one
// together.
//
// It also owns the gateway config file (Config, LoadConfig, AddIdentity)
// and the layout of an embedded gateway's data folder: its store, its lock,
// and the key folder of its identities (DataKeysDir). The tools that read a
// gateway's ledger while it runs or after it stopped (replay, runs,
// projections) open it through OpenLedger, from a Source: a data folder
// (honouring the lock), a NATS server with an operator's key, or a config
// naming one of them.
//
// This is the one package that assembles the others, and the only one
// besides cmd (and the demo, which runs a gateway) that may import both
// the enforcer and projections: the projector is part of a running gateway,
// yet projections itself knows nothing of the enforcer or the broker.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/broker/ingress"
	"github.com/tollgate/tollgate/broker/notify"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
)

// Options change how Start assembles a gateway from its config; the zero
// value is what serve does.
type Options struct {
	// Policies and AuditPolicies, when set, replace the config's policy
	// files (the demo and tests keep theirs in memory).
	Policies      []policy.File
	AuditPolicies []policy.File
	// Logger receives the gateway's logs. Default: discard.
	Logger *slog.Logger
	// TraceOut receives spans when tracing.exporter is stdout.
	TraceOut io.Writer
	// NoEnforcer starts everything but the enforcer; StartEnforcer starts
	// it later.
	NoEnforcer bool
	// CandidatePolicies are offered to the console's what-if besides the
	// running policies and admin.console.policy_dirs (the demo's).
	CandidatePolicies []console.PolicySource
	// LoadConfig, when set, reads the config again for a reload (SIGHUP in
	// serve, ReloadFromSource, and operators' signed `tollgate reload`).
	// Without it, reload requests are refused.
	LoadConfig func() (*Config, error)
	// Enforcer, when set, replaces the enforcer config the gateway config
	// gives (tests set hooks, a clock or limits); Start still fills in the
	// publishing connections, logger and tracer provider it leaves unset.
	Enforcer *enforcer.Config
}

// Gateway is a running Tollgate gateway.
type Gateway struct {
	cfg      *Config
	opts     Options
	subjects broker.Subjects
	log      *slog.Logger
	emb      *broker.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream
	registry enforcer.Registry
	policies *policy.Set
	enf      *enforcer.Enforcer
	ledger   *ledger.Ledger
	tracer   *sdktrace.TracerProvider
	sup      *supervisor
	// key is the gateway's own nkey; extra are the enforcer's publishing
	// connections.
	key   nkeys.KeyPair
	extra []*nats.Conn
	// unlock releases the embedded data folder's lock.
	unlock func()
	// admin is the operators' HTTP listener, when configured, and metrics
	// what its /metrics serves.
	admin   *admin
	metrics *metrics
	// console is the web console on the admin listener, and consoleView
	// what it reads of the running config.
	console     *console.Server
	consoleView *atomic.Pointer[consoleView]
	spend       *spend
	// reloadSub answers tg.ctl.reload; mu guards the parts a reload
	// replaces (cfg, opts, registry, policies) and runs one reload at a
	// time.
	reloadSub *nats.Subscription
	notifier  *notify.Notifier
	mu        sync.Mutex
	reloading sync.Mutex
	// http is the agents' HTTP listener, bearer its token keeper and
	// ingressKey the key the ingress signs with (the http section).
	http       *httpServer
	bearer     *bearer.Keeper
	ingressKey nkeys.KeyPair
	// hops are the model and tool bridges (models, tools sections).
	hops    *hops
	ingress *ingress.Ingress
	a2a     *a2ahttp.Server
	// dir is the identities in force, for the HTTP handlers' goroutines;
	// cardOf the agent cards bridges fetched.
	dir atomic.Pointer[broker.Directory]
	// engine is the policy engine in force, for the same goroutines.
	engine atomic.Pointer[policy.Engine]
	cardMu sync.RWMutex
	cardOf map[string]*a2a.AgentCard
	// stopBridges stops the configured bridges; bridgeWG waits for them.
	stopBridges context.CancelFunc
	bridgeWG    sync.WaitGroup
}

// Start assembles and starts a gateway: it validates cfg, compiles the
// policies, starts or connects to NATS, provisions the streams and every
// identity's delivery consumer, and starts the enforcer and, with a
// ClickHouse DSN, the projector. Close stops it.
func Start(ctx context.Context, cfg *Config, o Options) (_ *Gateway, err error) {
	cfg.SetDefaults()
	if err := cfg.validate(o.Policies == nil); err != nil {
		return nil, fmt.Errorf("gateway config:\n%w", err)
	}
	g := &Gateway{cfg: cfg, opts: o, log: o.Logger}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.subjects, err = broker.NewSubjects(cfg.NATS.SubjectPrefix, cfg.NATS.StreamPrefix); err != nil {
		return nil, err
	}
	if err := g.compile(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.Close(context.Background())
		}
	}()
	g.metrics = g.newMetrics()
	if err := g.startAdmin(); err != nil {
		return nil, err
	}
	if err := g.startHTTP(); err != nil {
		return nil, err
	}
	if err := g.connect(ctx); err != nil {
		return nil, err
	}
	if err := broker.Provision(ctx, g.js, g.subjects, broker.StreamOptions{Replicas: cfg.NATS.Replicas, DeliverMaxAge: cfg.NATS.DeliverMaxAge, LedgerMaxBytes: cfg.NATS.LedgerMaxBytes, Partitions: cfg.NATS.Partitions}); err != nil {
		return nil, err
	}
	for _, id := range g.registry.Dir.All() {
		if err := broker.ProvisionIdentity(ctx, g.js, g.subjects, id.ID, g.cfg.NATS.AgentAckWait); err != nil {
			return nil, err
		}
	}
	g.ledger = ledger.New(g.js, g.subjects.Stream(broker.StreamLedger), g.subjects)
	if err := g.startConsole(ctx); err != nil {
		return nil, err
	}
	if err := g.listenReload(); err != nil {
		return nil, err
	}
	if err := g.mountA2A(ctx); err != nil {
		return nil, err
	}
	if g.tracer, err = tracing.NewProvider(ctx, cfg.Tracing, o.TraceOut); err != nil {
		return nil, err
	}
	if !o.NoEnforcer {
		ec := cfg.EnforcerConfig()
		if o.Enforcer != nil {
			ec = *o.Enforcer
		}
		if err := g.StartEnforcer(ctx, ec); err != nil {
			return nil, err
		}
	}
	if err := g.startHops(ctx); err != nil {
		return nil, err
	}
	if cfg.ClickHouse.DSN != "" {
		pc := cfg.ClickHouse.Projections()
		pc.Logger, pc.LogEvery = g.log, projectorLogEvery
		if _, err := projections.New(g.ledger, pc); err != nil {
			return nil, err
		}
		// In the background, retried with backoff: ClickHouse being down
		// never stops the gateway from governing.
		g.startProjector(pc)
	}
	if cfg.Alerts.Enabled() {
		if g.notifier, err = notify.New(cfg.Alerts, notify.Options{Dial: g.Connect, Subjects: g.subjects, Logger: g.log,
			Registerer: g.metrics.reg}); err != nil {
			return nil, err
		}
		if err := g.notifier.Start(ctx); err != nil {
			g.notifier = nil
			return nil, err
		}
	}
	g.startBridges(ctx)
	g.log.Info("gateway started", "identities", len(g.registry.Dir.All()), "policies", g.policies.Len(), "nats", g.URL())
	return g, nil
}

// projectorLogEvery is how often the projector serve runs logs its
// counters and lag.
const projectorLogEvery = 30 * time.Second

// compile builds the identity directory and the policy engines.
func (g *Gateway) compile() error {
	dir, err := g.cfg.Directory()
	if err != nil {
		return err
	}
	files, audit := g.opts.Policies, g.opts.AuditPolicies
	if files == nil {
		if files, err = g.cfg.ReadPolicies(); err != nil {
			return err
		}
	}
	if audit == nil && len(g.cfg.AuditPolicies) > 0 {
		if audit, err = policy.ReadFiles(g.paths(g.cfg.AuditPolicies)); err != nil {
			return fmt.Errorf("audit policies: %w", err)
		}
	}
	if g.policies, err = policy.Compile(files); err != nil {
		return err
	}
	if g.policies.Len() == 0 {
		return errors.New("policies: the set is empty; default deny would refuse every hop")
	}
	reg := enforcer.Registry{Dir: dir}
	if reg.Engine, err = policy.NewEngine(g.policies, dir); err != nil {
		return err
	}
	if reg.Guard, reg.Checker, err = g.cfg.Guardrails.Guard(); err != nil {
		return err
	}
	if audit != nil {
		set, err := policy.Compile(audit)
		if err != nil {
			return fmt.Errorf("audit policies: %w", err)
		}
		if reg.Audit, err = policy.NewEngine(set, dir); err != nil {
			return fmt.Errorf("audit policies: %w", err)
		}
	}
	g.registry = reg
	g.dir.Store(reg.Dir)
	g.engine.Store(reg.Engine)
	return nil
}

func (g *Gateway) paths(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = g.cfg.Path(p)
	}
	return out
}

// ReadPolicies reads the config's enforced policy files (paths and globs
// relative to the config file).
func (c *Config) ReadPolicies() ([]policy.File, error) {
	paths := make([]string, len(c.Policies))
	for i, p := range c.Policies {
		paths[i] = c.Path(p)
	}
	return policy.ReadFiles(paths)
}

// StartEnforcer starts an enforcer with ec on the gateway's bus; any
// enforcer the gateway ran must have been stopped (StopEnforcer), else it
// returns ErrEnforcerRunning. What ec
// leaves unset of its publishing connections, logger and tracer provider,
// the gateway fills in.
func (g *Gateway) StartEnforcer(ctx context.Context, ec enforcer.Config) error {
	if g.enf != nil {
		return ErrEnforcerRunning
	}
	if ec.Logger == nil {
		ec.Logger = g.log
	}
	if ec.Partitions == 0 {
		ec.Partitions = g.cfg.NATS.Partitions
	}
	if ec.Metrics == nil && g.metrics != nil {
		ec.Metrics = g.metrics.enforcer
	}
	if ec.TracerProvider == nil && g.tracer != nil {
		ec.TracerProvider = g.tracer
	}
	if ec.Publishers == nil {
		pubs, err := g.publishers()
		if err != nil {
			return err
		}
		ec.Publishers = pubs
	}
	enf, err := enforcer.New(g.js, g.subjects, g.registry, ec)
	if err != nil {
		return err
	}
	if err := enf.Start(ctx); err != nil {
		return err
	}
	g.enf = enf
	return nil
}

// StopEnforcer stops the running enforcer, if any, and waits for its work
// in flight.
func (g *Gateway) StopEnforcer(ctx context.Context) error {
	if g.enf == nil {
		return nil
	}
	err := g.enf.Stop(ctx)
	g.enf = nil
	return err
}

// DefaultConnections is how many extra connections the enforcer publishes
// on when the config does not say.
const DefaultConnections = 4

// publishers opens the extra connections the enforcer's shards append and
// forward on, as the gateway's own user; opened once per gateway.
func (g *Gateway) publishers() ([]jetstream.JetStream, error) {
	n := DefaultConnections
	if c := g.cfg.Enforcer.Connections; c != nil {
		n = *c
	}
	var out []jetstream.JetStream
	for i := range n {
		if i < len(g.extra) {
			js, err := newJetStream(g.extra[i])
			if err != nil {
				return nil, err
			}
			out = append(out, js)
			continue
		}
		nc, err := g.Connect(fmt.Sprintf("tollgate enforcer %d", i+1))
		if err != nil {
			return nil, err
		}
		g.extra = append(g.extra, nc)
		js, err := newJetStream(nc)
		if err != nil {
			return nil, err
		}
		out = append(out, js)
	}
	return out, nil
}

// Connect opens another connection as the gateway's own user (with the
// embedded server, in-process). The caller closes it.
func (g *Gateway) Connect(name string) (*nats.Conn, error) {
	return broker.Connect(broker.ConnectConfig{URL: g.cfg.NATS.URL, InProcess: g.emb, Key: g.key, Name: name})
}

// connect starts the embedded server (no URL) or connects to the
// configured one, as the gateway's own privileged user.
func (g *Gateway) connect(ctx context.Context) error {
	cfg := g.cfg
	if cfg.NATS.URL != "" {
		kp, err := broker.LoadSeed(cfg.Path(cfg.NATS.Credentials))
		if err != nil {
			return err
		}
		g.key = kp
		l, err := g.layout(cfg, g.registry.Dir)
		if err != nil {
			return err
		}
		if err := g.externalLayout(ctx, cfg, l, nil); err != nil {
			return err
		}
		if g.nc, err = g.Connect("tollgate gateway"); err != nil {
			return err
		}
		g.js, err = newJetStream(g.nc)
		return err
	}
	key, err := broker.NewKey() // the gateway's own, for in-process use only
	if err != nil {
		return err
	}
	g.key = key
	l, err := g.layout(cfg, g.registry.Dir)
	if err != nil {
		return err
	}
	dataDir := cfg.Path(cfg.NATS.DataDir)
	ec := broker.EmbeddedConfig{DataDir: filepath.Join(dataDir, storeDir), Accounts: g.subjects.AccountsConfig(l), Logger: g.log}
	if cfg.NATS.Listen == ListenNone {
		ec.NoListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.NATS.Listen)
		if err != nil {
			return fmt.Errorf("nats.listen %q: %w", cfg.NATS.Listen, err)
		}
		ec.Host = host
		if ec.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("nats.listen %q: %w", cfg.NATS.Listen, err)
		}
	}
	if err := os.MkdirAll(ec.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// NATS takes no lock on its store: this lock keeps a second gateway,
	// and replay --data, off a folder in use.
	if g.unlock, err = LockDataDir(dataDir); err != nil {
		return err
	}
	if ec.SyncAlways, ec.SyncInterval, err = cfg.NATS.syncOptions(); err != nil {
		return err
	}
	if g.emb, err = broker.StartEmbedded(ctx, ec); err != nil {
		return err
	}
	if g.nc, err = g.Connect("tollgate gateway"); err != nil {
		return err
	}
	g.js, err = newJetStream(g.nc)
	return err
}

// newJetStream sizes the async publish window for the enforcer: every
// submission in flight may have a delivery and a timer in flight.
func newJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(32768))
}

// URL says where the bus is, for people.
func (g *Gateway) URL() string {
	switch {
	case g.cfg.NATS.URL != "":
		return g.cfg.NATS.URL
	case g.emb != nil && g.emb.ClientURL() != "":
		return g.emb.ClientURL() + " (embedded)"
	}
	return "in-process (embedded)"
}

// Config returns the gateway's config.
func (g *Gateway) Config() *Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

// Subjects returns the gateway's subject and stream names.
func (g *Gateway) Subjects() broker.Subjects { return g.subjects }

// Embedded returns the embedded server; nil with an external one.
func (g *Gateway) Embedded() *broker.Embedded { return g.emb }

// Conn and JetStream are the gateway's own (privileged) connection.
func (g *Gateway) Conn() *nats.Conn { return g.nc }

// JetStream returns the JetStream context of the gateway's connection.
func (g *Gateway) JetStream() jetstream.JetStream { return g.js }

// Registry returns the identities and policy engines in force.
func (g *Gateway) Registry() enforcer.Registry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.registry
}

// Policies returns the enforced policy set.
func (g *Gateway) Policies() *policy.Set {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.policies
}

// Enforcer returns the running enforcer; nil when none runs.
func (g *Gateway) Enforcer() *enforcer.Enforcer { return g.enf }

// Ledger returns the run ledger.
func (g *Gateway) Ledger() *ledger.Ledger { return g.ledger }

// Projector returns the ClickHouse projector; nil without a DSN.
func (g *Gateway) Projector() *projections.Projector {
	if g.sup == nil {
		return nil
	}
	return g.sup.cur.Load()
}

// ProjectorState is the projector's state (running, retrying while
// ClickHouse is down); ok is false without a ClickHouse DSN.
func (g *Gateway) ProjectorState() (st ProjectorState, ok bool) {
	if g.sup == nil {
		return ProjectorState{}, false
	}
	return g.sup.State(), true
}

// Close stops the enforcer, then the projector (which writes what it has
// left), then the bus.
func (g *Gateway) Close(ctx context.Context) error {
	var errs []error
	if g.console != nil {
		g.console.Close() // ends the event streams, which Shutdown would wait for
	}
	if g.reloadSub != nil {
		_ = g.reloadSub.Unsubscribe()
	}
	if g.admin != nil {
		errs = append(errs, g.admin.srv.Shutdown(ctx))
	}
	if g.spend != nil {
		g.spend.close()
	}
	if g.notifier != nil {
		errs = append(errs, g.notifier.Close())
	}
	if g.stopBridges != nil {
		g.stopBridges()
		g.bridgeWG.Wait()
	}
	if g.http != nil {
		errs = append(errs, g.http.srv.Shutdown(ctx))
	}
	if g.a2a != nil {
		g.a2a.Close()
	}
	g.stopHops()
	errs = append(errs, g.StopEnforcer(ctx))
	if g.sup != nil {
		errs = append(errs, g.sup.close(ctx))
	}
	if g.tracer != nil {
		errs = append(errs, g.tracer.Shutdown(ctx))
	}
	for _, nc := range g.extra {
		nc.Close()
	}
	if g.nc != nil {
		g.nc.Close()
	}
	if g.emb != nil {
		g.emb.Shutdown()
	}
	if g.unlock != nil {
		g.unlock()
	}
	return errors.Join(errs...)
}

// Reload applies a changed config to the running gateway: identities
// (added, rotated, disabled, removed), operators, policies, audit
// policies, limits and workflows. The new config is checked whole first; a
// config that fails is refused with every problem listed, and the old one
// keeps serving. With the embedded server, the accounts are reloaded and
// the connections of identities that are gone or disabled are closed.
// Settings that need a restart (the nats and enforcer sections) are
// refused. A refused config's error wraps ErrReloadRefused.
func (g *Gateway) Reload(ctx context.Context, cfg *Config, o Options) error {
	g.reloading.Lock()
	defer g.reloading.Unlock()
	cfg.SetDefaults()
	if err := cfg.validate(o.Policies == nil); err != nil {
		g.reloaded(false)
		return fmt.Errorf("%w, the running config stays:\n%w", ErrReloadRefused, err)
	}
	if err := restartOnly(g.cfg, cfg); err != nil {
		g.reloaded(false)
		return fmt.Errorf("%w, the running config stays: %w", ErrReloadRefused, err)
	}
	next := &Gateway{cfg: cfg, opts: o}
	if err := next.compile(); err != nil {
		g.reloaded(false)
		return fmt.Errorf("%w, the running config stays:\n%w", ErrReloadRefused, err)
	}
	for _, id := range next.registry.Dir.All() {
		if err := broker.ProvisionIdentity(ctx, g.js, g.subjects, id.ID, g.cfg.NATS.AgentAckWait); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	// An identity no longer registered (not only disabled) loses what was
	// waiting for it: whoever is registered under its id later starts
	// afresh.
	for _, id := range g.registry.Dir.All() {
		if _, still := next.registry.Dir.Get(id.ID); !still {
			if err := broker.RemoveIdentity(ctx, g.js, g.subjects, id.ID); err != nil {
				return fmt.Errorf("reload: %w", err)
			}
		}
	}
	l, err := g.layout(cfg, next.registry.Dir)
	if err != nil {
		return err
	}
	if g.emb != nil {
		err = g.emb.SetLayout(g.subjects, l)
	} else {
		var prev broker.Layout
		if prev, err = g.layout(g.cfg, g.registry.Dir); err == nil {
			err = g.externalLayout(ctx, cfg, l, &prev)
		}
	}
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	reg := next.registry
	reg.Ingress = g.registry.Ingress
	if g.bearer != nil {
		g.bearer.SetRevoked(cfg.HTTP.RevokedTokens)
	}
	ec := cfg.EnforcerConfig()
	lim := limits.Set{Run: ec.Limits, Workflows: ec.Workflows, PerAgent: ec.PerAgent, Agents: ec.Agents, PerPrincipal: ec.PerPrincipal,
		Quotas: ec.Quotas, QuotaZone: ec.QuotaZone, Targets: ec.Targets, WorkflowRetries: ec.WorkflowRetries, SpendSpikes: ec.SpendSpikes}
	reg.Limits, reg.Operators, reg.OperatorGroups = &lim, ec.Operators, ec.OperatorGroups
	if g.enf != nil {
		g.enf.Reload(reg)
	}
	if o.Logger == nil {
		o.Logger = g.opts.Logger
	}
	if o.LoadConfig == nil {
		o.LoadConfig = g.opts.LoadConfig
	}
	if o.CandidatePolicies == nil {
		o.CandidatePolicies = g.opts.CandidatePolicies
	}
	g.logIdentityChanges(g.cfg, cfg)
	g.mu.Lock()
	g.cfg, g.opts, g.registry, g.policies = cfg, o, reg, next.policies
	g.refreshConsole()
	g.dir.Store(reg.Dir)
	g.engine.Store(reg.Engine)
	g.mu.Unlock()
	g.log.Info("gateway reloaded", "identities", len(reg.Dir.All()), "policies", g.policies.Len())
	g.reloaded(true)
	return nil
}

// reloaded counts a reload's outcome.
func (g *Gateway) reloaded(ok bool) {
	if g.metrics == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "refused"
	}
	g.metrics.reloads.WithLabelValues(outcome).Inc()
}

// layout is the bus layout of cfg over dir, with the gateway's own key and,
// for an external server, the system account's.
func (g *Gateway) layout(cfg *Config, dir *broker.Directory) (broker.Layout, error) {
	pub, err := g.key.PublicKey()
	if err != nil {
		return broker.Layout{}, err
	}
	l := cfg.Layout(dir, pub)
	if cfg.NATS.SystemCredentials != "" {
		kp, err := broker.LoadSeed(cfg.Path(cfg.NATS.SystemCredentials))
		if err != nil {
			return broker.Layout{}, fmt.Errorf("system credentials: %w", err)
		}
		sys, err := kp.PublicKey()
		if err != nil {
			return broker.Layout{}, err
		}
		l.SystemKeys = []string{sys}
	}
	return l, nil
}

// restartOnly reports the settings that differ between two configs and
// can only change with a restart.
func restartOnly(old, cur *Config) error {
	var errs []error
	if old.NATS != cur.NATS {
		errs = append(errs, errors.New("the nats section changed: restart the gateway for that"))
	}
	if !reflect.DeepEqual(old.Alerts, cur.Alerts) {
		errs = append(errs, errors.New("the alerts section changed: restart the gateway for that"))
	}
	if old.HTTP.Listen != cur.HTTP.Listen || old.HTTPKeysDir() != cur.HTTPKeysDir() || old.HTTP.MaxBodyBytes != cur.HTTP.MaxBodyBytes {
		errs = append(errs, errors.New("http.listen, http.keys or http.max_body_bytes changed: restart the gateway for that"))
	}
	if !reflect.DeepEqual(old.Bridges, cur.Bridges) {
		errs = append(errs, errors.New("the bridges changed: restart the gateway for that"))
	}
	if !reflect.DeepEqual(old.Enforcer, cur.Enforcer) {
		errs = append(errs, errors.New("the enforcer section changed: restart the gateway for that"))
	}
	if !reflect.DeepEqual(old.Models, cur.Models) || !reflect.DeepEqual(old.MCPServers, cur.MCPServers) || !reflect.DeepEqual(old.Tools, cur.Tools) {
		errs = append(errs, errors.New("the models, mcp_servers or tools section changed: restart the gateway for that"))
	}
	return errors.Join(errs...)
}

// logIdentityChanges logs, at info, every identity and operator a reload
// adds, removes, disables, enables or gives a new key.
func (g *Gateway) logIdentityChanges(old, cur *Config) {
	index := func(c *Config) map[string]IdentityEntry {
		m := map[string]IdentityEntry{}
		for _, e := range c.Entries() {
			m[e.ID] = e
		}
		return m
	}
	before, after := index(old), index(cur)
	for id, e := range after {
		b, had := before[id]
		switch {
		case !had:
			g.log.Info("identity added", "id", id, "type", e.Type, "disabled", e.Disabled)
		case !b.Disabled && e.Disabled:
			g.log.Info("identity disabled", "id", id, "type", e.Type)
		case b.Disabled && !e.Disabled:
			g.log.Info("identity enabled", "id", id, "type", e.Type)
		}
		if had && b.PublicKey != e.PublicKey {
			g.log.Info("identity key rotated", "id", id, "type", e.Type, "public_key", e.PublicKey)
		}
	}
	for id, b := range before {
		if _, ok := after[id]; !ok {
			g.log.Info("identity removed", "id", id, "type", b.Type)
		}
	}
}
