package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer/demo"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/projections"
)

type demoOptions struct {
	dataDir  string
	json     bool
	scenario string
	// clickhouse, when set, is the DSN the run is projected into.
	clickhouse string
	// console, when set, serves the web console there until interrupted.
	console string
	// database is the ClickHouse database the demo writes.
	database string
}

// defaultConsoleListen is where demo --console serves the console.
const defaultConsoleListen = "127.0.0.1:8250"

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
the run limits must stop the cycle), a2a (the incident over the A2A HTTP
binding: tomas calls the orchestrator with an unmodified A2A client through
the gateway's HTTP ingress, and the critic is an unmodified A2A server
behind a bridge; see docs/a2a.md), injection (research reads a poisoned page
through an untrusted MCP tool and passes its hidden instruction to the writer:
the guardrail flags it, the taint follows, and the policy stops the writer's
tainted call to the privileged payments agent; --json reports
guardrail_findings and tainted_hops).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data", "", "keep the embedded server's data in this folder (default: a temporary one, removed)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as one JSON object")
	cmd.Flags().StringVar(&o.scenario, "scenario", demo.Incident, "incident, loop, a2a or injection")
	cmd.Flags().StringVar(&o.console, "console", "", "after the run, serve the web console on this address (host:port; bare --console: "+defaultConsoleListen+") and print its URL; Ctrl-C stops")
	cmd.Flags().Lookup("console").NoOptDefVal = defaultConsoleListen
	cmd.Flags().StringVar(&o.clickhouse, "clickhouse", "", "also project the run into this ClickHouse (DSN) and print its cost report from there")
	cmd.Flags().StringVar(&o.database, "database", demo.DefaultDatabase, "the ClickHouse database the demo writes (its own: never point it at a gateway's)")
	return cmd
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) error {
	// Agents report from their own goroutines.
	var sayMu sync.Mutex
	say := func(format string, args ...any) {
		sayMu.Lock()
		defer sayMu.Unlock()
		fmt.Fprintf(stderr, "▸ "+format+"\n", args...)
	}
	do := demo.Options{Scenario: o.scenario, DataDir: o.dataDir, ClickHouse: o.clickhouse, Database: o.database, CostReport: !o.json, Say: say, Console: o.console}
	if o.console != "" {
		do.Hold = func(ctx context.Context, g *gateway.Gateway, res *demo.Result) error {
			if o.json {
				if err := writeJSON(stdout, res); err != nil {
					return err
				}
			} else if err := printDemo(stdout, res); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "\nWeb console: open\n\n    %s\n\nto see the run as a picture (the link carries a login token for this demo). Ctrl-C stops.\n", res.ConsoleURL)
			<-ctx.Done()
			return nil
		}
	}
	res, err := demo.Run(ctx, do)
	if errors.Is(err, demo.ErrScenario) {
		return fmt.Errorf("--scenario %q: want incident, loop, a2a or injection", o.scenario)
	}
	if err != nil {
		return err
	}
	if o.console != "" {
		return nil // printed while the console was served
	}
	if o.json {
		return writeJSON(stdout, res)
	}
	return printDemo(stdout, res)
}

// printDemo prints a demo's result for people.
func printDemo(stdout io.Writer, res *demo.Result) error {
	fmt.Fprintln(stdout)
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if b := res.Breach; b != nil {
		fmt.Fprintf(stdout, "\nThe loop was stopped by %s after %d hops (%d allowed): %s → %s (value %g, bound %g), action %s.\n",
			b.Limit, len(res.Hops), res.Allowed(), b.From, b.To, b.Value, b.Bound, b.Action)
	}
	for _, a := range res.Alerts {
		fmt.Fprintf(stdout, "Alert on %s: %s (by %s; %d open hops cancelled)\n", res.AlertSubject, a.Message, a.By, len(a.OpenHops))
	}
	for _, a := range res.SpendSpikes {
		var edges []string
		for _, e := range a.TopEdges {
			edges = append(edges, fmt.Sprintf("%s $%.2f (%d hops)", e.Key, e.CostUSD, e.Hops))
		}
		fmt.Fprintf(stdout, "Spend-spike alert: %s; top edges: %s\n", a.Message, strings.Join(edges, ", "))
	}
	verdict := "verified: hash chain intact, every admitted envelope's signature checks"
	if res.VerifyError != "" {
		verdict = "FAILED: " + res.VerifyError
	}
	fmt.Fprintf(stdout, "\nLedger: %d events, head %.16s…, %s\n", res.Events, res.HeadHash, verdict)
	if res.CostErr != nil {
		return res.CostErr
	}
	if res.Cost != nil {
		fmt.Fprintf(stdout, "\nFrom ClickHouse (database %s), run %s:\n\n", res.CostDatabase, res.RunID)
		if err := projections.WriteCost(stdout, projections.Dimensions, res.Cost); err != nil {
			return err
		}
	}
	if res.DataDir != "" {
		fmt.Fprintf(stdout, "Data kept in %s\n", res.DataDir)
	}
	return nil
}
