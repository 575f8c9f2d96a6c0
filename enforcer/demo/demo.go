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
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/console"
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
	// into, in Database (default DefaultDatabase: the demo's own, never a
	// gateway's, whatever database the DSN names).
	ClickHouse string
	Database   string
	// CostReport, with ClickHouse, waits until the run is projected and
	// reads its cost from ClickHouse into Result.Cost.
	CostReport bool
	// Console, when set, serves the admin listener with the web console
	// on this address (host:port; port 0 picks one) and lets Hold look at
	// the gateway before it stops.
	Console string
	// Hold, when set, is called with the running gateway once the run is
	// read back; the gateway stops when it returns (tollgate demo
	// --console waits for Ctrl-C there).
	Hold func(ctx context.Context, g *gateway.Gateway, res *Result) error
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
	// Alerts are those published on the run's alert subject;
	// SpendSpikes the spend-spike alerts published while it ran.
	Alerts             []schemas.Alert `json:"alerts"`
	SpendSpikes        []schemas.Alert `json:"spend_spikes"`
	LedgerVerified     bool            `json:"ledger_verified"`
	SignaturesVerified bool            `json:"signatures_verified"`
	VerifyError        string          `json:"verify_error,omitempty"`
	DataDir            string          `json:"data_dir,omitempty"`

	// ConsoleURL is the web console's address with the login token in its
	// fragment (Options.Console).
	ConsoleURL string `json:"console_url,omitempty"`

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
	if o.ClickHouse != "" {
		cfg.ClickHouse.Database = cmp.Or(o.Database, DefaultDatabase)
	}
	if o.Scenario == A2A {
		cfg.HTTP.Listen = "127.0.0.1:0"
	}
	files, err := Policies(o.Scenario)
	if err != nil {
		return nil, err
	}
	gopts := gateway.Options{Policies: files}
	var token string
	if o.Console != "" {
		if token, err = consoleConfig(cfg, o.Console, &gopts); err != nil {
			return nil, err
		}
	}
	say("embedded NATS JetStream in %s", dataDir)
	g, err := gateway.Start(ctx, cfg, gopts)
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

	runCtx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	var reply *agent.Reply
	if o.Scenario == A2A {
		reply, err = playA2A(ctx, runCtx, g, keys, say)
	} else {
		reply, err = Play(runCtx, Bus{InProcess: g.Embedded()}, o.Scenario, keys, say)
	}
	if err != nil {
		return nil, err
	}

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
	// The spend counted so far goes to the fleet's counters now, not at
	// the next flush: a spike it shows is alerted before it is read.
	if e := g.Enforcer(); e != nil {
		if err := e.FlushSpend(ctx); err != nil {
			return nil, err
		}
	}
	if res.SpendSpikes, err = spikeAlerts(ctx, g); err != nil {
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
	if _, projecting := g.ProjectorState(); o.CostReport && projecting {
		res.CostErr = readCost(runCtx, g, res)
	}
	if u := g.ConsoleURL(); u != "" {
		res.ConsoleURL = u + "runs/" + reply.RunID + "#token=" + token
	}
	if o.Hold != nil {
		if err := o.Hold(ctx, g, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Serve connects the demo's cast (every agent but the user) to a gateway's
// bus with base's connection settings (URL or InProcess, Subjects) and the
// keys Config returned, and serves their tasks until the returned func is
// called. The demo on a cluster (test/cluster) runs the cast with it.
func Serve(ctx context.Context, base agent.Config, keys map[string]nkeys.KeyPair, say func(string, ...any)) (func(), error) {
	if say == nil {
		say = func(string, ...any) {}
	}
	var clients []*agent.Client
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for _, a := range cast() {
		cfg := base
		cfg.ID, cfg.Key, cfg.Handler = a.id, keys[a.id], a.handler(say)
		c, err := agent.Connect(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("demo cast %s: %w", a.id, err)
		}
		clients = append(clients, c)
	}
	return closeAll, nil
}

// WaitSettled reads a run's ledger once the run has completed (or
// halted), or what there is when ctx ends.
func WaitSettled(ctx context.Context, l *ledger.Ledger, run string) ([]ledger.Record, error) {
	return waitSettled(ctx, l, run)
}

// DefaultDatabase is the ClickHouse database the demo projects into.
const DefaultDatabase = "tollgate_demo"

// Config is the demo's gateway config on the data folder dataDir, serving
// in-process only, with the demo's user and cast registered under fresh
// keys, which it returns by identity.
func Config(dataDir string) (*gateway.Config, map[string]nkeys.KeyPair, error) {
	return ConfigFor(Incident, dataDir)
}

// castFor is the cast of a scenario.
func castFor(scenario string) []member {
	switch scenario {
	case Injection:
		return injectionCast()
	case Loop:
		return loopCast()
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
	if scenario == Loop {
		// Watch spend on a demo's time scale: a burst within seconds of
		// the start is a spike.
		cfg.SpendSpikes = limits.SpendSpikes{Factor: 3, Short: 10 * time.Second, Baseline: time.Minute,
			MinCostUSD: 0.1, Cooldown: time.Hour, Warmup: time.Nanosecond}
	}
	cfg.SetDefaults()
	return cfg, keys, cfg.Validate()
}

// playA2A runs the a2a scenario on g: the critic is an A2A server behind
// the gateway's bridge, and the user starts the run over the A2A HTTP
// ingress.
func playA2A(ctx, runCtx context.Context, g *gateway.Gateway, keys map[string]nkeys.KeyPair, say func(string, ...any)) (*agent.Reply, error) {
	for _, a := range castFor(A2A) {
		if a.id == "critic" {
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
	topic := "governance for agent-to-agent traffic"
	say("%s asks the orchestrator for a brief on %s", User, topic)
	started := time.Now()
	run, state, err := startOverA2A(runCtx, g, "Write a brief on "+topic, say)
	if err != nil {
		return nil, err
	}
	reply := &agent.Reply{RunID: run, Status: a2ahttp.HopState(state)}
	say("run %s finished in %s: %s", reply.RunID, time.Since(started).Round(time.Millisecond), reply.Status)
	return reply, nil
}

// Bus says how the cast reaches a gateway: in-process (an embedded
// server) or by URL.
type Bus struct {
	URL       string
	InProcess *broker.Embedded
}

// Play connects the cast of a scenario (with keys, as Config made them)
// to a running gateway that registers it under those keys and enforces the
// scenario's policies, lets the user start the scenario's run, and returns
// the run's reply once the run is over. The run may end in a denial or a
// timeout: that is the scenario's result, not an error.
func Play(ctx context.Context, bus Bus, scenario string, keys map[string]nkeys.KeyPair, say func(format string, args ...any)) (*agent.Reply, error) {
	if say == nil {
		say = func(string, ...any) {}
	}
	for _, a := range castFor(scenario) {
		c, err := agent.Connect(ctx, agent.Config{ID: a.id, Key: keys[a.id], URL: bus.URL, InProcess: bus.InProcess, Handler: a.handler(say)})
		if err != nil {
			return nil, err
		}
		defer c.Close()
	}
	user, err := agent.Connect(ctx, agent.Config{ID: User, Key: keys[User], URL: bus.URL, InProcess: bus.InProcess})
	if err != nil {
		return nil, err
	}
	defer user.Close()
	topic := "governance for agent-to-agent traffic"
	if scenario == Injection {
		topic = "our Q3 vendors"
	}
	say("%s asks the orchestrator for a brief on %s", User, topic)
	started := time.Now()
	reply, err := user.Start(ctx, "orchestrator", agent.UserText("Write a brief on "+topic))
	var denied *agent.DeniedError
	if err != nil && !errors.As(err, &denied) && !errors.Is(err, agent.ErrTimedOut) {
		return nil, fmt.Errorf("run: %w", err)
	}
	say("run %s finished in %s: %s", reply.RunID, time.Since(started).Round(time.Millisecond), reply.Status)
	return reply, nil
}

// consoleConfig serves the console on addr with a fresh token, which it
// returns, and offers the other scenario's policies to the what-if.
func consoleConfig(cfg *gateway.Config, addr string, o *gateway.Options) (string, error) {
	token, hash, err := console.NewToken()
	if err != nil {
		return "", err
	}
	cfg.Admin.Listen = addr
	cfg.Admin.Console.Tokens = []console.Token{{Name: "demo", SHA256: hash}}
	cfg.Admin.Console.Payloads = true
	for sc, name := range map[string]string{Incident: "shipped policies (incident scenario)",
		Loop: "shipped policies without no-reinvoke-orchestrator (loop scenario)"} {
		files, err := Policies(sc)
		if err != nil {
			return "", err
		}
		o.CandidatePolicies = append(o.CandidatePolicies, console.PolicySource{Name: name, Files: files})
	}
	slices.SortFunc(o.CandidatePolicies, func(a, b console.PolicySource) int { return strings.Compare(a.Name, b.Name) })
	return token, cfg.Validate()
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

// spikeAlerts reads the spend-spike alerts published so far.
func spikeAlerts(ctx context.Context, g *gateway.Gateway) ([]schemas.Alert, error) {
	s, err := g.JetStream().Stream(ctx, g.Subjects().Stream(broker.StreamAlerts))
	if err != nil {
		return nil, err
	}
	out := []schemas.Alert{}
	for _, scope := range []string{"agent", "team"} {
		m, err := s.GetLastMsgForSubject(ctx, g.Subjects().AlertFleet(schemas.AlertSpendSpike, scope+".*"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("spend-spike alerts: %w", err)
		}
		var a schemas.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			return nil, fmt.Errorf("spend-spike alert: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// readCost waits until the gateway's projector has written every ledger
// event, then reads the run's cost per dimension from ClickHouse.
func readCost(ctx context.Context, g *gateway.Gateway, res *Result) error {
	// The gateway starts its projector in the background.
	p := g.Projector()
	for p == nil {
		select {
		case <-ctx.Done():
			st, _ := g.ProjectorState()
			return fmt.Errorf("projector not running (%s %s): %w", st.State, st.LastError, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		p = g.Projector()
	}
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
