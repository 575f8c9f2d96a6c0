package gateway

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
)

// consoleView is what the console reads of the running config; Reload
// swaps it whole.
type consoleView struct {
	cfg        console.Config
	keys       ledger.Keys
	identities []broker.Identity
	operators  map[string]string
	policies   func() ([]console.PolicySource, error)
}

// startConsole mounts the web console on the admin listener (unless
// admin.console.disabled) and starts its live feed.
func (g *Gateway) startConsole(ctx context.Context) error {
	if g.admin == nil || g.cfg.Admin.Console.Disabled {
		return nil
	}
	g.consoleView = &atomic.Pointer[consoleView]{}
	g.refreshConsole()
	view := func() *consoleView { return g.consoleView.Load() }
	deps := console.Deps{
		Ledger:      g.ledger,
		Config:      func() console.Config { return view().cfg },
		SigningKeys: func() ledger.Keys { return view().keys },
		Identities:  func() []broker.Identity { return view().identities },
		Operators:   func() map[string]string { return view().operators },
		OperatorConfig: func() operator.Config {
			subj := g.subjects
			oc := operator.Config{Subjects: &subj, InProcess: g.emb}
			if u := g.Config().NATS.URL; u != "" {
				oc.URL, oc.InProcess = u, nil
			}
			return oc
		},
		Policies: func() ([]console.PolicySource, error) { return view().policies() },
		Logger:   g.log,
	}
	if g.cfg.ClickHouse.DSN != "" {
		g.spend = &spend{cfg: g.cfg.ClickHouse.Projections()}
		deps.Spend = g.spend
	}
	g.console = console.New(deps)
	if err := g.console.Start(ctx); err != nil {
		return err
	}
	g.admin.mux.Handle(console.Prefix+"/", g.console)
	g.admin.mux.Handle(console.Prefix, g.console)
	return nil
}

// refreshConsole takes the console's view of the current config; Reload
// calls it holding g.mu.
func (g *Gateway) refreshConsole() {
	if g.consoleView == nil {
		return
	}
	cfg := g.cfg
	v := &consoleView{cfg: cfg.Admin.Console, keys: g.SigningKeys(), operators: map[string]string{}}
	for _, id := range g.registry.Dir.All() {
		v.identities = append(v.identities, *id)
	}
	for _, op := range cfg.Operators {
		v.operators[op.ID] = op.PublicKey
	}
	running, extra := g.opts.Policies, g.opts.CandidatePolicies
	v.policies = func() ([]console.PolicySource, error) {
		files := running
		if files == nil {
			var err error
			if files, err = cfg.ReadPolicies(); err != nil {
				return nil, fmt.Errorf("the running policies: %w", err)
			}
		}
		out := []console.PolicySource{{Name: "running policies", Files: files}}
		for _, dir := range cfg.Admin.Console.PolicyDirs {
			fs, err := policy.ReadPaths([]string{cfg.Path(dir)})
			if err != nil {
				return nil, fmt.Errorf("admin.console.policy_dirs %s: %w", dir, err)
			}
			out = append(out, console.PolicySource{Name: dir, Files: fs})
		}
		return append(out, extra...), nil
	}
	g.consoleView.Store(v)
}

// ConsoleURL is where the console is served, "" without one.
func (g *Gateway) ConsoleURL() string {
	if g.console == nil {
		return ""
	}
	return "http://" + g.AdminAddr() + console.Prefix + "/"
}
