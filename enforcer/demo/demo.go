// Package demo runs the incident Tollgate exists for, governed, on an
// embedded gateway: user tomas starts a run at the orchestrator, which
// delegates to research, writer and critic; research hits a transient
// error and re-invokes the orchestrator. Every identity has its own key and
// NATS permissions. In the incident scenario the shipped policy denies the
// re-invocation at its first attempt; in the loop scenario that policy is
// left out and the run limits stop the cycle.
//
// Run assembles the gateway with enforcer/gateway, connects the cast with
// broker/agent, runs the scenario to its end and returns what the ledger
// recorded, verified. Rendering it is the caller's (tollgate demo).
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/schemas"
)

// Scenarios.
const (
	// Incident: the shipped policies deny the re-invocation.
	Incident = "incident"
	// Loop: without the policy that denies it, the run limits stop the
	// cycle and halt the run.
	Loop = "loop"
)

// ErrScenario means Options.Scenario names no scenario.
var ErrScenario = errors.New("demo: unknown scenario")

// runTimeout bounds a scenario's run.
const runTimeout = 60 * time.Second

// Options shape a demo.
type Options struct {
	// Scenario is Incident, Loop or A2A (ErrScenario otherwise).
	Scenario string
	// DataDir keeps the embedded server's data, and the cast's public keys
	// (gateway.DataKeysDir), for replay. Empty: a temporary folder,
	// removed at the end.
	DataDir string
	// ClickHouse, when set, is the DSN the gateway projects the ledger
	// into.
	ClickHouse string
	// CostReport, with ClickHouse, waits until the run is projected and
	// reads its cost from ClickHouse into Result.Cost.
	CostReport bool
	// Say receives progress lines, from the agents' goroutines too: it
	// must be safe for concurrent use. Nil: none.
	Say func(format string, args ...any)
}

// Result is what a demo ran: the run's tree from the ledger, what tripped,
// the alerts, and the verification. Its JSON is what `tollgate demo
// --json` prints.
type Result struct {
	*runtree.Run
	Scenario string `json:"scenario"`
	// Breach is the first limit the run tripped, if any.
	Breach *schemas.RunLimitBreached `json:"breach,omitempty"`
	// GuardrailFindings are what the guardrails found, hop by hop;
	// TaintedHops the hops whose content came from an untrusted source.
	GuardrailFindings []GuardrailFinding `json:"guardrail_findings"`
	TaintedHops       []TaintedHop       `json:"tainted_hops"`
	// Alerts are those published on the run's alert subject.
	Alerts             []schemas.Alert `json:"alerts"`
	LedgerVerified     bool            `json:"ledger_verified"`
	SignaturesVerified bool            `json:"signatures_verified"`
	VerifyError        string          `json:"verify_error,omitempty"`
	DataDir            string          `json:"data_dir,omitempty"`

	// AlertSubject is the subject the alerts were published on.
	AlertSubject string `json:"-"`
	// Cost is the run's cost per dimension as ClickHouse has it
	// (Options.CostReport), and CostDatabase the database it was read
	// from; CostErr is why it could not be read.
	Cost         map[projections.Dimension][]projections.CostRow `json:"-"`
	CostDatabase string                                          `json:"-"`
	CostErr      error                                           `json:"-"`
}

// Run runs a scenario to its end and reads back what the ledger recorded.
// The run itself may end in a denial or a timeout: that is the scenario's
// result, not an error.
func Run(ctx context.Context, o Options) (*Result, error) {
	say := o.Say
	if say == nil {
		say = func(string, ...any) {}
	}
	if o.Scenario != Incident && o.Scenario != Loop && o.Scenario != A2A && o.Scenario != Injection {
		return nil, fmt.Errorf("%w %q: want %s, %s, %s or %s", ErrScenario, o.Scenario, Incident, Loop, A2A, Injection)
	}
	dataDir, keep := o.DataDir, o.DataDir != ""
	if !keep {
		tmp, err := os.MkdirTemp("", "tollgate-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	cfg, keys, err := ConfigFor(o.Scenario, dataDir)
	if err != nil {
		return nil, err
	}
	if o.Scenario == Injection {
		stop, err := injectionSetup(cfg, keys, dataDir)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	if keep { // the cast's public keys, for replay --data to check signatures with
		for _, ic := range append(append([]gateway.IdentityConfig{}, cfg.Users...), cfg.Agents...) {
			if ic.PublicKey == "" {
				continue
			}
			if err := broker.AddPublicKey(gateway.DataKeysDir(dataDir), ic.ID, ic.PublicKey); err != nil {
				return nil, fmt.Errorf("demo keys: %w", err)
			}
		}
	}
	cfg.ClickHouse.DSN = o.ClickHouse
	if o.Scenario == A2A {
		cfg.HTTP.Listen = "127.0.0.1:0"
	}
	files, err := Policies(o.Scenario)
	if err != nil {
		return nil, err
	}
	say("embedded NATS JetStream in %s", dataDir)
	g, err := gateway.Start(ctx, cfg, gateway.Options{Policies: files})
	if err != nil {
		return nil, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Close(stopCtx)
	}()
	if pub := g.IngressNKey(); keep && pub != "" { // replay --data checks the ingress's signatures too
		if err := broker.AddPublicKey(gateway.DataKeysDir(dataDir), schemas.ViaIngress, pub); err != nil {
			return nil, fmt.Errorf("demo keys: %w", err)
		}
	}
	say("%d identities, each with its own nkey and NATS permissions; policies: %s", len(g.Registry().Dir.All()), policyNames(files))

	for _, a := range castFor(o.Scenario) {
		if o.Scenario == A2A && a.id == "critic" {
			stop, err := serveCritic(ctx, g, keys[a.id], say)
			if err != nil {
				return nil, err
			}
			defer stop()
			continue
		}
		c, err := agent.Connect(ctx, agent.Config{ID: a.id, Key: keys[a.id], InProcess: g.Embedded(), Handler: a.handler(say)})
		if err != nil {
			return nil, err
		}
		defer c.Close()
	}
	user, err := agent.Connect(ctx, agent.Config{ID: User, Key: keys[User], InProcess: g.Embedded()})
	if err != nil {
		return nil, err
	}
	defer user.Close()

	runCtx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	topic := "governance for agent-to-agent traffic"
	if o.Scenario == Injection {
		topic = "our Q3 vendors"
	}
	say("%s asks the orchestrator for a brief on %s", User, topic)
	started := time.Now()
	reply := &agent.Reply{}
	if o.Scenario == A2A {
		run, state, err := startOverA2A(runCtx, g, "Write a brief on "+topic, say)
		if err != nil {
			return nil, err
		}
		reply.RunID, reply.Status = run, a2ahttp.HopState(state)
	} else {
		reply, err = user.Start(runCtx, "orchestrator", agent.UserText("Write a brief on "+topic))
		var denied *agent.DeniedError
		if err != nil && !errors.As(err, &denied) && !errors.Is(err, agent.ErrTimedOut) {
			return nil, fmt.Errorf("run: %w", err)
		}
	}
	say("run %s finished in %s: %s", reply.RunID, time.Since(started).Round(time.Millisecond), reply.Status)

	recs, err := waitSettled(runCtx, g.Ledger(), reply.RunID)
	if err != nil {
		return nil, err
	}
	res := &Result{Scenario: o.Scenario, AlertSubject: g.Subjects().Alert(reply.RunID)}
	defer res.collectGuardrails()
	if keep {
		res.DataDir = dataDir
	}
	if res.Run, err = runtree.Build(reply.RunID, recs); err != nil {
		return nil, err
	}
	if len(res.Breaches) > 0 {
		res.Breach = &res.Breaches[0]
	}
	if res.Alerts, err = alerts(ctx, g, reply.RunID); err != nil {
		return nil, err
	}
	v := ledger.Verify(reply.RunID, recs, g.SigningKeys())
	res.LedgerVerified = v.Chain == ledger.ChainIntact
	// Signatures past a broken link are not checked: only an intact chain
	// vouches for them.
	res.SignaturesVerified = res.LedgerVerified && v.Signatures != ledger.SigFailed
	if err := v.Err(); err != nil {
		res.VerifyError = err.Error()
	}
	if o.CostReport && g.Projector() != nil {
		res.CostErr = readCost(runCtx, g, res)
	}
	return res, nil
}

// Config is the demo's gateway config on the data folder dataDir, serving
// in-process only, with the demo's user and cast registered under fresh
// keys, which it returns by identity.
func Config(dataDir string) (*gateway.Config, map[string]nkeys.KeyPair, error) {
	return ConfigFor(Incident, dataDir)
}

// castFor is the cast of a scenario.
func castFor(scenario string) []member {
	if scenario == Injection {
		return injectionCast()
	}
	return cast()
}

// ConfigFor is Config with the cast of scenario (the injection scenario's
// tool is added when it runs).
func ConfigFor(scenario, dataDir string) (*gateway.Config, map[string]nkeys.KeyPair, error) {
	keys := map[string]nkeys.KeyPair{}
	key := func(id string) (string, error) {
		kp, err := broker.NewKey()
		if err != nil {
			return "", err
		}
		keys[id] = kp
		return kp.PublicKey()
	}
	cfg := &gateway.Config{
		NATS:      gateway.NATSConfig{DataDir: dataDir, Listen: gateway.ListenNone},
		Policies:  []string{"embedded"},
		RunLimits: limits.Run{},
	}
	pub, err := key(User)
	if err != nil {
		return nil, nil, err
	}
	cfg.Users = []gateway.IdentityConfig{{ID: User, Type: "user", Team: "research", PublicKey: pub}}
	for _, a := range castFor(scenario) {
		pub, err := key(a.id)
		if err != nil {
			return nil, nil, err
		}
		cfg.Agents = append(cfg.Agents, gateway.IdentityConfig{ID: a.id, Type: "agent", Team: a.team, Tags: a.tags, PublicKey: pub,
			TimeoutSeconds: 30, Workflow: a.workflow})
	}
	cfg.SetDefaults()
	return cfg, keys, cfg.Validate()
}

// Policies returns the shipped policies a scenario runs with: all of them
// for Incident; for Loop, all but the one that denies re-invoking the
// orchestrator, so that the limits alone must stop the cycle.
func Policies(scenario string) ([]policy.File, error) {
	all, err := policy.ReadFS(deploy.Policies(), "deploy/")
	if err != nil {
		return nil, err
	}
	var files []policy.File
	for _, f := range all {
		if scenario == Loop && strings.Contains(f.Name, "no-reinvoke-orchestrator") {
			continue
		}
		files = append(files, f)
	}
	return files, nil
}

func policyNames(files []policy.File) string {
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	return strings.Join(names, ", ")
}

// waitSettled reads the run once it has completed (or halted), or what
// there is when ctx ends.
func waitSettled(ctx context.Context, l *ledger.Ledger, run string) ([]ledger.Record, error) {
	for {
		recs, err := l.Read(ctx, run)
		if err != nil {
			return nil, err
		}
		st, err := ledger.Fold(run, recs)
		if err != nil {
			return nil, err
		}
		if st.Closed() {
			return recs, nil
		}
		select {
		case <-ctx.Done():
			return recs, nil // report what there is
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// alerts reads the alerts published for a run.
func alerts(ctx context.Context, g *gateway.Gateway, run string) ([]schemas.Alert, error) {
	s, err := g.JetStream().Stream(ctx, g.Subjects().Stream(broker.StreamAlerts))
	if err != nil {
		return nil, err
	}
	m, err := s.GetLastMsgForSubject(ctx, g.Subjects().Alert(run))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return []schemas.Alert{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alerts of run %s: %w", run, err)
	}
	var a schemas.Alert
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return nil, fmt.Errorf("alert of run %s: %w", run, err)
	}
	return []schemas.Alert{a}, nil
}

// readCost waits until the gateway's projector has written every ledger
// event, then reads the run's cost per dimension from ClickHouse.
func readCost(ctx context.Context, g *gateway.Gateway, res *Result) error {
	p := g.Projector()
	for {
		lag, err := p.Lag(ctx)
		if err != nil {
			return err
		}
		if lag.Events() == 0 && lag.AckFloor >= lag.StreamLastSeq {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("projection of run %s: %w", res.RunID, ctx.Err())
		case <-p.Done():
			return fmt.Errorf("projector stopped: %w", p.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	pc := g.Config().ClickHouse.Projections()
	r, err := projections.NewReader(ctx, pc)
	if err != nil {
		return err
	}
	defer r.Close()
	if res.Cost, err = r.CostBy(ctx, projections.Dimensions, projections.Filter{RunID: res.RunID}); err != nil {
		return err
	}
	res.CostDatabase = pc.DatabaseName()
	return nil
}
