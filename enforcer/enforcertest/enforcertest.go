// Package enforcertest runs a whole Tollgate gateway inside a test, the way
// serve runs one (enforcer/gateway.Start): a real embedded NATS JetStream
// server on a random port with its store in the test's temp folder, one
// credential and permission set per identity, the provisioned streams and
// delivery consumers, the compiled policies, and a running enforcer. Tests
// connect as any identity, with its real credential, through Conn or Agent.
package enforcertest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Options shape a test gateway.
type Options struct {
	// Identities are registered with fresh keys unless they carry one.
	Identities []broker.Identity
	// Operators are registered with fresh keys, as the config's operators.
	Operators []string
	// Policies are the Cedar policy files.
	Policies []policy.File
	// AuditPolicies are evaluated but only recorded, never enforced.
	AuditPolicies []policy.File
	// Config tunes the enforcer; AckWait defaults to 2 s so that crash
	// tests see redeliveries quickly.
	Config enforcer.Config
	// NoEnforcer leaves the enforcer stopped (start it with StartEnforcer).
	NoEnforcer bool
	// Partitions partitions the runs (nats.partitions).
	Partitions int
}

// Gateway is a running test gateway.
type Gateway struct {
	// Gateway is the gateway as serve would run it.
	Gateway  *gateway.Gateway
	Server   *broker.Embedded
	Subjects broker.Subjects
	// Conn and JS are the gateway's own (privileged) connection.
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Dir      *broker.Directory
	Engine   *policy.Engine
	Audit    *policy.Engine
	Enforcer *enforcer.Enforcer
	Ledger   *ledger.Ledger
	// Keys are the identities' and operators' keys.
	Keys map[string]nkeys.KeyPair

	t testing.TB
	// tools is the registry with what a gateway registers on the tools of
	// its tools: section (Identity.Resource, RateLimit), which the test
	// gateway has no section for; nil when no identity carries them.
	tools *enforcer.Registry
}

// Start starts a gateway for t; it is stopped when the test ends.
func Start(t testing.TB, o Options) *Gateway {
	t.Helper()
	g := &Gateway{t: t, Keys: map[string]nkeys.KeyPair{}}
	cfg := &gateway.Config{NATS: gateway.NATSConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", Partitions: o.Partitions}}
	for _, id := range o.Identities {
		if id.PublicKey == "" {
			kp, pub := brokertest.NewKey(t)
			id.PublicKey = pub
			g.Keys[id.ID] = kp
		}
		ic := gateway.IdentityConfig{ID: id.ID, Type: typeName(id.Type), Team: id.Team, Tags: id.Tags, PublicKey: id.PublicKey,
			RequireSignature: &id.RequireSignature, TimeoutSeconds: int(id.Timeout / time.Second), Workflow: id.Workflow, Disabled: id.Disabled,
			Untrusted: id.Untrusted}
		if id.Type == schemas.TypeUser {
			cfg.Users = append(cfg.Users, ic)
		} else {
			cfg.Agents = append(cfg.Agents, ic)
		}
	}
	for _, op := range o.Operators {
		kp, pub := brokertest.NewKey(t)
		g.Keys[op] = kp
		cfg.Operators = append(cfg.Operators, gateway.OperatorConfig{ID: op, PublicKey: pub})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gw, err := gateway.Start(ctx, cfg, gateway.Options{Policies: o.Policies, AuditPolicies: o.AuditPolicies, NoEnforcer: true})
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := gw.Close(ctx); err != nil {
			t.Errorf("stop gateway: %v", err)
		}
	})
	reg := gw.Registry()
	if tr := toolRegistry(t, reg, gw.Policies(), o.Identities); tr != nil {
		reg, g.tools = *tr, tr
	}
	g.Gateway, g.Server, g.Subjects = gw, gw.Embedded(), gw.Subjects()
	g.Conn, g.JS, g.Ledger = gw.Conn(), gw.JetStream(), gw.Ledger()
	g.Dir, g.Engine, g.Audit = reg.Dir, reg.Engine, reg.Audit
	if !o.NoEnforcer {
		g.StartEnforcer(o.Config)
	}
	return g
}

func typeName(t schemas.PrincipalType) string {
	for name, pt := range gateway.IdentityTypes {
		if pt == t {
			return name
		}
	}
	return string(t)
}

// StartEnforcer starts a (new) enforcer with cfg; any running one must have
// been stopped.
func (g *Gateway) StartEnforcer(cfg enforcer.Config) *enforcer.Enforcer {
	g.t.Helper()
	if cfg.AckWait == 0 {
		cfg.AckWait = 2 * time.Second
	}
	if cfg.Publishers == nil {
		cfg.Publishers = []jetstream.JetStream{} // the gateway's own connection, as the tests always had
	}
	if err := g.Gateway.StartEnforcer(context.Background(), cfg); err != nil {
		g.t.Fatalf("start enforcer: %v", err)
	}
	g.Enforcer = g.Gateway.Enforcer()
	if g.tools != nil {
		g.Enforcer.Reload(*g.tools)
	}
	return g.Enforcer
}

// toolRegistry returns reg with the tool identities' Resource and
// RateLimit set as ids carry them (a serve sets them from its tools:
// section), its engines rebuilt over that directory; nil when no identity
// carries either.
func toolRegistry(t testing.TB, reg enforcer.Registry, set *policy.Set, ids []broker.Identity) *enforcer.Registry {
	t.Helper()
	extra := map[string]broker.Identity{}
	for _, id := range ids {
		if id.Resource != "" || !id.RateLimit.Unlimited() {
			extra[id.ID] = id
		}
	}
	if len(extra) == 0 {
		return nil
	}
	var all []broker.Identity
	for _, id := range reg.Dir.All() {
		c := *id
		if e, ok := extra[id.ID]; ok {
			c.Resource, c.RateLimit = e.Resource, e.RateLimit
		}
		all = append(all, c)
	}
	dir, err := broker.NewDirectory(all)
	if err != nil {
		t.Fatalf("tool identities: %v", err)
	}
	reg.Dir = dir
	if reg.Engine, err = policy.NewEngine(set, dir); err != nil {
		t.Fatalf("tool identities: %v", err)
	}
	if reg.Audit != nil {
		if reg.Audit, err = policy.NewEngine(reg.Audit.Set(), dir); err != nil {
			t.Fatalf("tool identities: %v", err)
		}
	}
	return &reg
}

// StopEnforcer stops the running enforcer, if any, and waits for it.
func (g *Gateway) StopEnforcer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Gateway.StopEnforcer(ctx); err != nil {
		g.t.Errorf("stop enforcer: %v", err)
	}
	g.Enforcer = nil
}

// NewConn opens another privileged (gateway) connection, as a second
// gateway process would have; it is closed when the test ends.
func (g *Gateway) NewConn() (*nats.Conn, jetstream.JetStream) {
	g.t.Helper()
	nc, err := g.Gateway.Connect("gateway-test-2")
	if err != nil {
		g.t.Fatalf("connect: %v", err)
	}
	g.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		g.t.Fatal(err)
	}
	return nc, js
}

// ConnAs connects as identity id with its own key and inbox prefix. Async
// errors (permission violations) go to errs when it is not nil.
func (g *Gateway) ConnAs(id string, errs chan<- error) *nats.Conn {
	g.t.Helper()
	kp := g.Keys[id]
	if kp == nil {
		g.t.Fatalf("no key for %s", id)
	}
	cc := broker.ConnectConfig{URL: g.Server.ClientURL(), Key: kp, InboxPrefix: broker.InboxPrefix(id), Name: id}
	if errs != nil {
		cc.ErrorHandler = func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}
	}
	nc, err := broker.Connect(cc)
	if err != nil {
		g.t.Fatalf("connect as %s: %v", id, err)
	}
	g.t.Cleanup(nc.Close)
	return nc
}

// Agent connects identity id as an agent client serving h (nil for a
// caller that only starts runs).
func (g *Gateway) Agent(id string, h agent.Handler) *agent.Client {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.Connect(ctx, agent.Config{ID: id, Key: g.Keys[id], URL: g.Server.ClientURL(), Handler: h})
	if err != nil {
		g.t.Fatalf("agent %s: %v", id, err)
	}
	g.t.Cleanup(c.Close)
	return c
}

// Deliveries reads every delivery made to id so far, straight from the
// DELIVER stream (as the gateway, without consuming the agent's consumer).
func (g *Gateway) Deliveries(id string) []*jetstream.RawStreamMsg {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := g.JS.OrderedConsumer(ctx, g.Subjects.Stream(broker.StreamDeliver), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{g.Subjects.DeliverFor(id)},
	})
	if err != nil {
		g.t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		g.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for n := info.NumPending; n > 0; {
		batch, err := cons.FetchNoWait(int(n))
		if err != nil {
			g.t.Fatal(err)
		}
		for m := range batch.Messages() {
			meta, _ := m.Metadata()
			out = append(out, &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Header: m.Headers(), Data: m.Data()})
			n--
		}
		if batch.Error() != nil {
			g.t.Fatal(batch.Error())
		}
	}
	return out
}
