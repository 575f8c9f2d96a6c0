package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

type demoOptions struct {
	dataDir  string
	json     bool
	scenario string
	// clickhouse, when set, is the DSN the run is projected into.
	clickhouse string
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the overnight-loop incident through the gateway, in one process",
		Long: `Run the incident Tollgate exists for, governed, on the embedded default:
user tomas starts a run at the orchestrator, which delegates to research,
writer and critic. Research hits a transient error and re-invokes the
orchestrator. Every agent has its own key and NATS permissions; the shipped
policy denies the re-invocation at its first attempt.

The demo prints the run tree from the ledger (who called whom, the decision,
depth, tokens and cost) and the ledger verification.

Scenarios: incident (default), loop (the deny-orchestrator policy removed, so
the run limits must stop the cycle).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data", "", "keep the embedded server's data in this folder (default: a temporary one, removed)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as one JSON object")
	cmd.Flags().StringVar(&o.scenario, "scenario", "incident", "incident or loop")
	cmd.Flags().StringVar(&o.clickhouse, "clickhouse", "", "also project the run into this ClickHouse (DSN) and print its cost report from there")
	return cmd
}

// demoResult is what --json prints.
type demoResult struct {
	*runtree.Run
	Scenario string `json:"scenario"`
	// Breach is the first limit the run tripped, if any.
	Breach *schemas.RunLimitBreached `json:"breach,omitempty"`
	// Alerts are those published on the run's alert subject.
	Alerts             []schemas.Alert `json:"alerts"`
	LedgerVerified     bool            `json:"ledger_verified"`
	SignaturesVerified bool            `json:"signatures_verified"`
	VerifyError        string          `json:"verify_error,omitempty"`
	DataDir            string          `json:"data_dir,omitempty"`
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) error {
	// Agents report from their own goroutines.
	var sayMu sync.Mutex
	say := func(format string, args ...any) {
		sayMu.Lock()
		defer sayMu.Unlock()
		fmt.Fprintf(stderr, "▸ "+format+"\n", args...)
	}
	if o.scenario != "incident" && o.scenario != "loop" {
		return fmt.Errorf("--scenario %q: want incident or loop", o.scenario)
	}
	dataDir, keep := o.dataDir, o.dataDir != ""
	if !keep {
		tmp, err := os.MkdirTemp("", "tollgate-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	cfg, keys, err := demoConfig(dataDir)
	if err != nil {
		return err
	}
	if keep { // the cast's public keys, for replay --data to check signatures with
		if err := writeDemoKeys(dataDir, cfg); err != nil {
			return err
		}
	}
	cfg.ClickHouse.DSN = o.clickhouse
	files, err := demoPolicies(o.scenario)
	if err != nil {
		return err
	}
	say("embedded NATS JetStream in %s", dataDir)
	g, err := gateway.Start(ctx, cfg, gateway.Options{Policies: files})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Close(stopCtx)
	}()
	say("%d identities, each with its own nkey and NATS permissions; policies: %s", len(g.Registry().Dir.All()), policyNames(files))

	clients := map[string]*agent.Client{}
	for _, a := range demoCast {
		c, err := agent.Connect(ctx, agent.Config{ID: a.id, Key: keys[a.id], InProcess: g.Embedded(), Handler: a.handler(say)})
		if err != nil {
			return err
		}
		defer c.Close()
		clients[a.id] = c
	}
	tomas, err := agent.Connect(ctx, agent.Config{ID: "tomas", Key: keys["tomas"], InProcess: g.Embedded()})
	if err != nil {
		return err
	}
	defer tomas.Close()

	runCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	topic := "governance for agent-to-agent traffic"
	say("tomas asks the orchestrator for a brief on %s", topic)
	started := time.Now()
	reply, err := tomas.Start(runCtx, "orchestrator", agent.UserText("Write a brief on "+topic))
	var denied *agent.DeniedError
	if err != nil && !errors.As(err, &denied) && !errors.Is(err, agent.ErrTimedOut) {
		return fmt.Errorf("run: %w", err)
	}
	say("run %s finished in %s: %s", reply.RunID, time.Since(started).Round(time.Millisecond), reply.Status)

	recs, err := waitRunSettled(runCtx, g.Ledger(), reply.RunID)
	if err != nil {
		return err
	}
	res := &demoResult{Scenario: o.scenario}
	if keep {
		res.DataDir = dataDir
	}
	res.Run, err = runtree.Build(reply.RunID, recs)
	if err != nil {
		return err
	}
	if len(res.Breaches) > 0 {
		res.Breach = &res.Breaches[0]
	}
	if res.Alerts, err = runAlerts(ctx, g, reply.RunID); err != nil {
		return err
	}
	verr := ledger.Verify(reply.RunID, recs)
	res.LedgerVerified = verr == nil
	serr := ledger.VerifySignatures(recs, func(id string) ed25519.PublicKey {
		if i, ok := g.Registry().Dir.Get(id); ok {
			return i.SigningKey()
		}
		return nil
	})
	res.SignaturesVerified = serr == nil
	if err := errors.Join(verr, serr); err != nil {
		res.VerifyError = err.Error()
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintln(stdout)
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if res.Breach != nil {
		b := res.Breach
		fmt.Fprintf(stdout, "\nThe loop was stopped by %s after %d hops (%d allowed): %s → %s (value %g, bound %g), action %s.\n",
			b.Limit, len(res.Hops), countAllowed(res.Run), b.From, b.To, b.Value, b.Bound, b.Action)
	}
	for _, a := range res.Alerts {
		fmt.Fprintf(stdout, "Alert on %s: %s (by %s; %d open hops cancelled)\n", g.Subjects().Alert(a.RunID), a.Message, a.By, len(a.OpenHops))
	}
	verdict := "verified: hash chain intact, every admitted envelope's signature checks"
	if res.VerifyError != "" {
		verdict = "FAILED: " + res.VerifyError
	}
	fmt.Fprintf(stdout, "\nLedger: %d events, head %.16s…, %s\n", res.Events, res.HeadHash, verdict)
	if g.Projector() != nil {
		if err := writeDemoCost(runCtx, stdout, g, reply.RunID); err != nil {
			return err
		}
	}
	if keep {
		fmt.Fprintf(stdout, "Data kept in %s\n", dataDir)
	}
	return nil
}

func countAllowed(r *runtree.Run) int {
	n := 0
	for _, h := range r.Hops {
		if h.Decision != "denied" {
			n++
		}
	}
	return n
}

// runAlerts reads the alerts published for a run.
func runAlerts(ctx context.Context, g *gateway.Gateway, run string) ([]schemas.Alert, error) {
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

// waitRunSettled reads the run once it has completed (or halted).
func waitRunSettled(ctx context.Context, l *ledger.Ledger, run string) ([]ledger.Record, error) {
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

func demoPolicies(scenario string) ([]policy.File, error) {
	all, err := policy.ReadFS(deploy.Policies(), "deploy/")
	if err != nil {
		return nil, err
	}
	var files []policy.File
	for _, f := range all {
		if scenario == "loop" && strings.Contains(f.Name, "no-reinvoke-orchestrator") {
			continue // the loop scenario: the limits alone must stop the cycle
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

// demoConfig registers the demo's cast with fresh keys.
func demoConfig(dataDir string) (*gateway.Config, map[string]nkeys.KeyPair, error) {
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
		NATS:      gateway.NATSConfig{DataDir: dataDir, Listen: "none"},
		Policies:  []string{"embedded"},
		RunLimits: limits.Run{},
	}
	pub, err := key("tomas")
	if err != nil {
		return nil, nil, err
	}
	cfg.Users = []gateway.IdentityConfig{{ID: "tomas", Type: "user", Team: "research", PublicKey: pub}}
	for _, a := range demoCast {
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
