package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
)

// gateway is a running Tollgate: the bus (embedded or not), its streams and
// consumers, and the enforcer.
type gateway struct {
	cfg      *Config
	subjects broker.Subjects
	emb      *broker.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream
	dir      *broker.Directory
	enf      *enforcer.Enforcer
	ledger   *ledger.Ledger
	log      *slog.Logger
	tracer   *sdktrace.TracerProvider
	// proj projects the ledger into ClickHouse when a DSN is configured.
	proj *projections.Projector
	// key is the gateway's own nkey; extra are the enforcer's publishing
	// connections.
	key   nkeys.KeyPair
	extra []*nats.Conn
	// unlock releases the embedded data folder's lock.
	unlock func()
}

// gatewayOptions override parts of the config for the demo.
type gatewayOptions struct {
	// policies, when set, replace the config's policy files.
	policies []policy.File
	log      *slog.Logger
	// traceOut receives spans when tracing.exporter is stdout.
	traceOut io.Writer
}

// compilePolicies reads and compiles policy files (paths relative to the
// config file) into an engine over dir; nil when there are no paths.
func compilePolicies(cfg *Config, paths []string, dir *broker.Directory) (*policy.Engine, *policy.Set, error) {
	var abs []string
	for _, p := range paths {
		abs = append(abs, cfg.path(p))
	}
	files, err := policy.ReadFiles(abs)
	if err != nil {
		return nil, nil, err
	}
	set, err := policy.Compile(files)
	if err != nil {
		return nil, nil, err
	}
	engine, err := policy.NewEngine(set, dir)
	return engine, set, err
}

func startGateway(ctx context.Context, cfg *Config, opts gatewayOptions) (_ *gateway, err error) {
	log := opts.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	subjects, err := broker.NewSubjects(cfg.NATS.SubjectPrefix, cfg.NATS.StreamPrefix)
	if err != nil {
		return nil, err
	}
	dir, err := cfg.Directory()
	if err != nil {
		return nil, err
	}
	var engine, audit *policy.Engine
	var set *policy.Set
	if opts.policies != nil {
		if set, err = policy.Compile(opts.policies); err != nil {
			return nil, err
		}
		engine, err = policy.NewEngine(set, dir)
	} else {
		engine, set, err = compilePolicies(cfg, cfg.Policies, dir)
	}
	if err != nil {
		return nil, err
	}
	if len(cfg.AuditPolicies) > 0 {
		if audit, _, err = compilePolicies(cfg, cfg.AuditPolicies, dir); err != nil {
			return nil, fmt.Errorf("audit policies: %w", err)
		}
	}
	g := &gateway{cfg: cfg, subjects: subjects, dir: dir, log: log}
	defer func() {
		if err != nil {
			g.close(context.Background())
		}
	}()
	if err := g.connect(ctx); err != nil {
		return nil, err
	}
	if err := broker.Provision(ctx, g.js, subjects, broker.StreamOptions{Replicas: cfg.NATS.Replicas, DeliverMaxAge: cfg.NATS.DeliverMaxAge}); err != nil {
		return nil, err
	}
	for _, id := range dir.All() {
		if err := broker.ProvisionIdentity(ctx, g.js, subjects, id.ID, 0); err != nil {
			return nil, err
		}
	}
	ecfg := cfg.enforcerConfig()
	ecfg.Logger = log
	if g.tracer, err = tracing.NewProvider(ctx, cfg.Tracing, opts.traceOut); err != nil {
		return nil, err
	}
	if g.tracer != nil {
		ecfg.TracerProvider = g.tracer
	}
	if ecfg.Publishers, err = g.publishers(); err != nil {
		return nil, err
	}
	g.enf, err = enforcer.New(g.js, subjects, enforcer.Registry{Dir: dir, Engine: engine, Audit: audit}, ecfg)
	if err != nil {
		return nil, err
	}
	if err := g.enf.Start(ctx); err != nil {
		return nil, err
	}
	g.ledger = g.enf.Ledger()
	if cfg.ClickHouse.DSN != "" {
		if g.proj, err = projections.New(g.js, subjects, cfg.ClickHouse.gatewayProjector(log)); err != nil {
			return nil, err
		}
		if err := g.proj.Start(ctx); err != nil {
			g.proj = nil
			return nil, err
		}
	}
	log.Info("gateway started", "agents", len(dir.All()), "policies", set.Len(), "nats", g.url())
	return g, nil
}

// connect starts the embedded server (no URL) or connects to the
// configured one, as the gateway's own privileged user.
// defaultConnections is how many extra connections the enforcer publishes
// on when the config does not say.
const defaultConnections = 4

// publishers opens the extra connections the enforcer's shards append and
// forward on, as the gateway's own user.
func (g *gateway) publishers() ([]jetstream.JetStream, error) {
	n := defaultConnections
	if c := g.cfg.Enforcer.Connections; c != nil {
		n = *c
	}
	var out []jetstream.JetStream
	for i := range n {
		nc, err := broker.Connect(broker.ConnectConfig{URL: g.cfg.NATS.URL, InProcess: g.emb, Key: g.key,
			Name: fmt.Sprintf("tollgate enforcer %d", i+1)})
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

func (g *gateway) connect(ctx context.Context) error {
	cfg := g.cfg
	if cfg.NATS.URL != "" {
		kp, err := broker.LoadSeed(cfg.path(cfg.NATS.Credentials))
		if err != nil {
			return err
		}
		g.key = kp
		g.nc, err = broker.Connect(broker.ConnectConfig{URL: cfg.NATS.URL, Key: kp, Name: "tollgate gateway"})
		if err != nil {
			return err
		}
		g.js, err = newJetStream(g.nc)
		return err
	}
	key, err := broker.NewKey() // the gateway's own, for in-process use only
	if err != nil {
		return err
	}
	pub, err := key.PublicKey()
	if err != nil {
		return err
	}
	operators := map[string]string{}
	for _, op := range cfg.Operators {
		operators[op.ID] = op.PublicKey
	}
	ec := broker.EmbeddedConfig{DataDir: filepath.Join(cfg.path(cfg.NATS.DataDir), "jetstream"), Users: g.subjects.NkeyUsers(g.dir, pub, operators)}
	if cfg.NATS.Listen == "none" {
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
	if g.unlock, err = lockDataDir(cfg.path(cfg.NATS.DataDir)); err != nil {
		return err
	}
	if g.emb, err = broker.StartEmbedded(ctx, ec); err != nil {
		return err
	}
	g.key = key
	g.nc, err = broker.Connect(broker.ConnectConfig{InProcess: g.emb, Key: key, Name: "tollgate gateway"})
	if err != nil {
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

func (g *gateway) url() string {
	switch {
	case g.cfg.NATS.URL != "":
		return g.cfg.NATS.URL
	case g.emb != nil && g.emb.ClientURL() != "":
		return g.emb.ClientURL() + " (embedded)"
	}
	return "in-process (embedded)"
}

// close stops the enforcer, then the projector (which writes what it has
// left), then the bus.
func (g *gateway) close(ctx context.Context) error {
	var errs []error
	if g.enf != nil {
		errs = append(errs, g.enf.Stop(ctx))
	}
	if g.proj != nil {
		errs = append(errs, g.proj.Stop(ctx))
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
