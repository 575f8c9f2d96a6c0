package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/projections"
)

// reportFlags are the flags every report takes.
type reportFlags struct {
	ch     chFlags
	since  string
	run    string
	limit  int
	asJSON bool
}

func (f *reportFlags) register(fs *pflag.FlagSet) {
	f.ch.register(fs)
	fs.StringVar(&f.since, "since", "", "only hops (runs) since: a duration back from now (90m, 24h, 7d) or a date (2026-01-31, RFC 3339)")
	fs.StringVar(&f.run, "run", "", "only this run")
	fs.IntVar(&f.limit, "limit", 100, "at most this many rows (per table)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON instead of tables")
}

// open parses the filter and connects to the projection.
func (f *reportFlags) open(cmd *cobra.Command, now time.Time) (*projections.Reader, projections.Filter, error) {
	since, err := parseSince(f.since, now)
	if err != nil {
		return nil, projections.Filter{}, err
	}
	cfg, err := f.ch.config()
	if err != nil {
		return nil, projections.Filter{}, err
	}
	r, err := projections.NewReader(cmd.Context(), cfg)
	if err != nil {
		return nil, projections.Filter{}, err
	}
	return r, projections.Filter{Since: since, RunID: f.run, Limit: f.limit}, nil
}

// report opens the projection, asks it query, and prints the answer as
// JSON (--json) or with text.
func report[T any](cmd *cobra.Command, f *reportFlags, query func(*projections.Reader, projections.Filter) (T, error), text func(io.Writer, T) error) error {
	r, filter, err := f.open(cmd, time.Now())
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := query(r, filter)
	if err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), out)
	}
	return text(cmd.OutOrStdout(), out)
}

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report from ClickHouse: cost, call graph, loops",
		Long: `Print what the projections know (see 'tollgate projections'), as tables or
--json: cost per agent, workflow, team and principal; the call graph (also as
Graphviz DOT); runs with loop signals. --since and --run narrow every report.`,
	}
	cmd.AddCommand(newReportCostCmd(), newReportGraphCmd(), newReportLoopsCmd())
	return cmd
}

func newReportCostCmd() *cobra.Command {
	var f reportFlags
	var by string
	cmd := &cobra.Command{
		Use:   "cost",
		Short: "Spend per agent, workflow, team and principal (what callees reported in their replies)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dims := projections.Dimensions
			if by != "all" {
				dims = []projections.Dimension{projections.Dimension(by)}
			}
			return report(cmd, &f, func(r *projections.Reader, fl projections.Filter) (map[projections.Dimension][]projections.CostRow, error) {
				return r.CostBy(cmd.Context(), dims, fl)
			}, func(w io.Writer, out map[projections.Dimension][]projections.CostRow) error {
				return projections.WriteCost(w, dims, out)
			})
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&by, "by", "all", "agent, workflow, team, principal or all")
	return cmd
}

func newReportGraphCmd() *cobra.Command {
	var f reportFlags
	var format string
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "The call graph: who called whom, how often, with denials, cycles and spend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "dot" {
				return fmt.Errorf("--format %q: want table or dot", format)
			}
			text := projections.WriteGraph
			if format == "dot" {
				text = projections.WriteGraphDOT
			}
			return report(cmd, &f, func(r *projections.Reader, fl projections.Filter) ([]projections.Edge, error) {
				return r.Graph(cmd.Context(), fl)
			}, text)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", "table", "table or dot (Graphviz)")
	return cmd
}

func newReportLoopsCmd() *cobra.Command {
	var f reportFlags
	var repeats int
	cmd := &cobra.Command{
		Use:   "loops",
		Short: "Runs with loop signals: cycles, repeated edges, depth reached, loop denials, breaches, halts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return report(cmd, &f, func(r *projections.Reader, fl projections.Filter) ([]projections.LoopSignal, error) {
				return r.Loops(cmd.Context(), fl, repeats)
			}, projections.WriteLoops)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().IntVar(&repeats, "repeats", 3, "an edge called this often in one run is a signal")
	return cmd
}
