package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
)

func newRunsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "List runs and export them from the ledger (auditors)"}
	cmd.AddCommand(newRunsListCmd(), newRunsExportCmd())
	return cmd
}

type runsListOptions struct {
	src   sourceFlags
	since string
	sel   runtree.Selection
	limit int
	json  bool
}

func newRunsListCmd() *cobra.Command {
	var o runsListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the runs of the ledger, newest first",
		Long: `List the runs recorded in the LEDGER stream, newest first: when each started,
its status, who started it, its workflow, hops, denials, spend and the first
limit it tripped.

Filters: --since (a duration such as 24h or 7d, or a date), --agent (runs in
which the agent called or was called, denied attempts included), --status
(running, completed, failed, canceled, rejected, halted; repeatable).
Entries of rejected submissions that belonged to no run (` + ledger.RejectedPrefix + `*) are
left out unless --rejects is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runsList(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &o)
		},
	}
	o.src.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.since, "since", "", "only runs started since: a duration (24h, 90m, 7d) or a date (2006-01-02, RFC 3339)")
	cmd.Flags().StringVar(&o.sel.Agent, "agent", "", "only runs in which this agent called or was called")
	cmd.Flags().StringSliceVar(&o.sel.Statuses, "status", nil, "only runs with this status: running, completed, failed, canceled, rejected, halted")
	cmd.Flags().BoolVar(&o.sel.Rejects, "rejects", false, "also list the entries of rejected submissions that belonged to no run")
	cmd.Flags().IntVar(&o.limit, "limit", 100, "list at most this many runs (0: all)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the runs as a JSON array")
	return cmd
}

func runsList(ctx context.Context, stdout, stderr io.Writer, o *runsListOptions) error {
	since, err := parseSince(o.since, time.Now())
	if err != nil {
		return err
	}
	for _, st := range o.sel.Statuses {
		if !slices.Contains(runtree.Statuses(), st) {
			return fmt.Errorf("--status %q: want one of %s", st, strings.Join(runtree.Statuses(), ", "))
		}
	}
	if o.limit < 0 {
		return errors.New("--limit must not be negative")
	}
	ctx, cancel := context.WithTimeout(ctx, o.src.timeout)
	defer cancel()
	l, err := o.src.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	runs, unreadable, err := runtree.List(ctx, l.Ledger, since)
	if err != nil {
		return err
	}
	if unreadable > 0 {
		fmt.Fprintf(stderr, "tollgate: %d ledger events could not be read and were skipped; replay their runs to find out why\n", unreadable)
	}
	out := runtree.Select(runs, o.sel)
	total := len(out)
	if o.limit > 0 && total > o.limit {
		out = out[:o.limit]
	}
	if o.json {
		if out == nil {
			out = []*runtree.Summary{}
		}
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tSTATUS\tCALLER\tWORKFLOW\tHOPS\tDENIED\tTOKENS\tCOST\tBREACH")
	for _, r := range out {
		status := r.Status
		if len(r.Pending) > 0 {
			status += fmt.Sprintf(" (%d awaiting approval)", len(r.Pending))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t$%.4f\t%s\n", r.RunID, r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), status,
			orDash(r.Caller), orDash(r.Workflow), r.Hops, r.Denied, r.Tokens, r.CostUSD, orDash(r.Breach))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out) < total {
		fmt.Fprintf(stderr, "%d of %d runs shown (--limit 0 shows all)\n", len(out), total)
	}
	return nil
}

func newRunsExportCmd() *cobra.Command {
	var src sourceFlags
	var out string
	cmd := &cobra.Command{
		Use:               "export <run>",
		ValidArgsFunction: completeRuns,
		Short:             "Write a run's ledger events, exactly as stored, one per line",
		Long: `Write a copy of a run: its ledger events exactly as stored, one JSON object
per line, to stdout or --output. The copy is what an auditor keeps and checks
with 'tollgate replay --file'; its last event's hash (printed here) is the
head the live ledger vouches for, so that a copy that lost events at its end
is caught with 'replay --file COPY --head HASH'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runsExport(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], &src, out)
		},
	}
	src.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the copy to this file instead of stdout")
	return cmd
}

func runsExport(ctx context.Context, stdout, stderr io.Writer, run string, src *sourceFlags, out string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, src.timeout)
	defer cancel()
	l, err := src.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	n, head, err := runtree.Export(ctx, l.Ledger, run, w)
	if errors.Is(err, ledger.ErrNoRun) {
		return fmt.Errorf("run %s is not in the ledger (tollgate runs list shows the runs)", run)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d events of run %s; head %s\n", n, run, head)
	return nil
}

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "run", Short: "Act on a run (operators)"}
	var op opFlags
	var reason string
	halt := &cobra.Command{
		Use:   "halt <run>",
		Short: "Kill switch: halt a run, cancel its open hops and alert",
		Long: `Halt a run as an operator. The request is signed with the operator's key and
checked by the gateway against the operators registered in its config; NATS
permissions let only operators publish control commands. Every later hop of
the run is denied (reason halted), its open hops are cancelled, and an alert
is published on tg.alert.<run>.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			run := args[0]
			ctx, cancel := context.WithTimeout(cmd.Context(), op.timeout)
			defer cancel()
			c, err := op.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			reply, err := c.Halt(ctx, run, reason)
			if op.json && reply != nil {
				return errors.Join(writeJSON(cmd.OutOrStdout(), reply), err)
			}
			if err != nil {
				return err
			}
			if reply.Already {
				fmt.Fprintf(cmd.OutOrStdout(), "run %s was already halted\n", run)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "run %s halted (ledger seq %d); cancelled %d open hops\n", run, reply.LedgerSeq, len(reply.OpenHops))
			}
			return nil
		},
	}
	op.addFlags(halt.Flags(), 10*time.Second)
	halt.Flags().StringVar(&reason, "reason", "", "why (recorded in the ledger and the alert)")
	op.require(halt)
	cmd.AddCommand(halt)
	return cmd
}
