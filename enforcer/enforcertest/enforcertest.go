// Package enforcertest runs a whole Tollgate gateway inside a test: a real
// embedded NATS JetStream server with one nkey user and permission set per
// identity, the provisioned streams and delivery consumers, the compiled
// policies, and a running enforcer. Tests connect as any identity, with its
// real credential, through Conn or Agent.
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
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
)

// Options shape a test gateway.
type Options struct {
	// Identities are registered with fresh keys unless they carry one.
	Identities []broker.Identity
	// Policies are the Cedar policy files.
	Policies []policy.File
	// AuditPolicies are evaluated but only recorded, never enforced.
	AuditPolicies []policy.File
	// Config tunes the enforcer; AckWait defaults to 2 s so that crash
	// tests see redeliveries quickly.
	Config enforcer.Config
	// NoEnforcer leaves the enforcer stopped (start it with StartEnforcer).
	NoEnforcer bool
}

// Gateway is a running test gateway.
type Gateway struct {
	*brokertest.Bus
	Dir      *broker.Directory
	Engine   *policy.Engine
	Audit    *policy.Engine
	Enforcer *enforcer.Enforcer
	Ledger   *ledger.Ledger
	Keys     map[string]nkeys.KeyPair

	t      testing.TB
	cancel context.CancelFunc
	done   chan error
}

// Start starts a gateway for t; it is stopped when the test ends.
func Start(t testing.TB, o Options) *Gateway {
	t.Helper()
	g := &Gateway{t: t, Keys: map[string]nkeys.KeyPair{}}
	ids := make([]broker.Identity, len(o.Identities))
	for i, id := range o.Identities {
		if id.PublicKey == "" {
			kp, pub := brokertest.NewKey(t)
			id.PublicKey = pub
			g.Keys[id.ID] = kp
		}
		ids[i] = id
	}
	dir, err := broker.NewDirectory(ids)
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	g.Dir = dir
	subjects := broker.DefaultSubjects()
	// The server starts knowing only the gateway's key; the identities'
	// users and permissions are installed with a reload, as serve does.
	g.Bus = brokertest.Start(t, brokertest.Options{})
	if err := g.Server.SetUsers(subjects.NkeyUsers(dir, g.GatewayKey, nil)); err != nil {
		t.Fatalf("install users: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range dir.All() {
		if err := broker.ProvisionIdentity(ctx, g.JS, subjects, id.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	set, err := policy.Compile(o.Policies)
	if err != nil {
		t.Fatalf("policies: %v", err)
	}
	g.Engine, err = policy.NewEngine(set, dir)
	if err != nil {
		t.Fatalf("policy engine: %v", err)
	}
	if o.AuditPolicies != nil {
		aset, err := policy.Compile(o.AuditPolicies)
		if err != nil {
			t.Fatalf("audit policies: %v", err)
		}
		if g.Audit, err = policy.NewEngine(aset, dir); err != nil {
			t.Fatal(err)
		}
	}
	g.Ledger = ledger.New(g.JS, subjects.Stream(broker.StreamLedger), subjects)
	if !o.NoEnforcer {
		g.StartEnforcer(o.Config)
	}
	t.Cleanup(g.StopEnforcer)
	return g
}

// StartEnforcer starts a (new) enforcer with cfg; any running one must have
// been stopped.
func (g *Gateway) StartEnforcer(cfg enforcer.Config) *enforcer.Enforcer {
	g.t.Helper()
	if cfg.AckWait == 0 {
		cfg.AckWait = 2 * time.Second
	}
	e, err := enforcer.New(g.JS, g.Subjects, enforcer.Registry{Dir: g.Dir, Engine: g.Engine, Audit: g.Audit}, cfg)
	if err != nil {
		g.t.Fatalf("enforcer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		cancel()
		g.t.Fatalf("start enforcer: %v", err)
	}
	g.Enforcer, g.cancel = e, cancel
	return e
}

// StopEnforcer stops the running enforcer, if any, and waits for it.
func (g *Gateway) StopEnforcer() {
	if g.Enforcer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Enforcer.Stop(ctx); err != nil {
		g.t.Errorf("stop enforcer: %v", err)
	}
	g.cancel()
	g.Enforcer = nil
}

// Conn connects as identity id with its own key and inbox prefix. Async
// errors (permission violations) go to errs when it is not nil.
func (g *Gateway) Conn(id string, errs chan<- error) *nats.Conn {
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
