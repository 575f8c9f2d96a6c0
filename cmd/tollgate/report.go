package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
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
			r, filter, err := f.open(cmd, time.Now())
			if err != nil {
				return err
			}
			defer r.Close()
			out := map[projections.Dimension][]projections.CostRow{}
			for _, d := range dims {
				rows, err := r.Cost(cmd.Context(), d, filter)
				if err != nil {
					return err
				}
				out[d] = rows
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeCost(cmd.OutOrStdout(), dims, out)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&by, "by", "all", "agent, workflow, team, principal or all")
	return cmd
}

func writeCost(w io.Writer, dims []projections.Dimension, out map[projections.Dimension][]projections.CostRow) error {
	for i, d := range dims {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Cost by %s\n", d)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tRUNS\tHOPS\tTOKENS\tCOST USD\n", strings.ToUpper(string(d)))
		var hops uint64
		var tokens int64
		var cost float64
		for _, c := range out[d] {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.6f\n", orDash(c.Key), c.Runs, c.Hops, c.Tokens, c.CostUSD)
			hops, tokens, cost = hops+c.Hops, tokens+c.Tokens, cost+c.CostUSD
		}
		if len(out[d]) == 0 {
			fmt.Fprintln(tw, "(none)")
		} else {
			fmt.Fprintf(tw, "total\t\t%d\t%d\t%.6f\n", hops, tokens, cost)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
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
			r, filter, err := f.open(cmd, time.Now())
			if err != nil {
				return err
			}
			defer r.Close()
			edges, err := r.Graph(cmd.Context(), filter)
			if err != nil {
				return err
			}
			switch {
			case f.asJSON:
				return writeJSON(cmd.OutOrStdout(), edges)
			case format == "dot":
				return writeDOT(cmd.OutOrStdout(), edges)
			}
			return writeGraph(cmd.OutOrStdout(), edges)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", "table", "table or dot (Graphviz)")
	return cmd
}

func writeGraph(w io.Writer, edges []projections.Edge) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tTARGET\tRUNS\tCALLS\tALLOWED\tDENIED\tCYCLES\tTOKENS\tCOST USD\tDENIAL REASONS")
	for _, e := range edges {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.6f\t%s\n", orDash(e.Caller), orDash(e.Target), e.Runs, e.Calls,
			e.Allowed, e.Denials, e.Cycles, e.Tokens, e.CostUSD, strings.Join(e.Reasons, ","))
	}
	if len(edges) == 0 {
		fmt.Fprintln(tw, "(no calls)")
	}
	return tw.Flush()
}

// writeDOT renders the call graph for Graphviz: an edge per caller ->
// target, labelled with its calls, denials and spend; red where anything
// was denied, dashed where a call closed a cycle.
func writeDOT(w io.Writer, edges []projections.Edge) error {
	var b strings.Builder
	b.WriteString("digraph calls {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n")
	for _, e := range edges {
		label := fmt.Sprintf("%d calls", e.Calls)
		if e.Calls == 1 {
			label = "1 call"
		}
		if e.Denials > 0 {
			label += fmt.Sprintf(", %d denied (%s)", e.Denials, strings.Join(e.Reasons, ","))
		}
		if e.CostUSD > 0 {
			label += fmt.Sprintf(", $%.4f", e.CostUSD)
		}
		var attrs []string
		attrs = append(attrs, "label="+dotQuote(label))
		if e.Denials > 0 {
			attrs = append(attrs, "color=red", "fontcolor=red")
		}
		if e.Cycles > 0 {
			attrs = append(attrs, "style=dashed")
		}
		fmt.Fprintf(&b, "  %s -> %s [%s];\n", dotQuote(orDash(e.Caller)), dotQuote(orDash(e.Target)), strings.Join(attrs, ", "))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// dotQuote quotes s as a DOT string.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func newReportLoopsCmd() *cobra.Command {
	var f reportFlags
	var repeats int
	cmd := &cobra.Command{
		Use:   "loops",
		Short: "Runs with loop signals: cycles, repeated edges, depth reached, loop denials, breaches, halts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, filter, err := f.open(cmd, time.Now())
			if err != nil {
				return err
			}
			defer r.Close()
			loops, err := r.Loops(cmd.Context(), filter, repeats)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), loops)
			}
			return writeLoops(cmd.OutOrStdout(), loops)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().IntVar(&repeats, "repeats", 3, "an edge called this often in one run is a signal")
	return cmd
}

func writeLoops(w io.Writer, loops []projections.LoopSignal) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tSTATUS\tCYCLES\tFIRST CYCLE\tMOST CALLED EDGE\tDEPTH\tDENIED (DEPTH/LOOP)\tBREACHES\tHALT")
	for _, l := range loops {
		first := "-"
		if l.Cycles > 0 {
			first = fmt.Sprintf("%s (seq %d)", l.FirstCycleEdge, l.FirstCycleSeq)
		}
		depth := strconv.Itoa(int(l.MaxDepth))
		if l.DepthLimit > 0 {
			depth += "/" + strconv.Itoa(int(l.DepthLimit))
		}
		halt := "-"
		if l.Halted {
			halt = l.HaltReason
			if halt == "" {
				halt = orDash(l.HaltLimit)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s x%d\t%s\t%d/%d\t%d\t%s\n", l.RunID, l.StartedAt.Format(time.DateTime), l.Status,
			l.Cycles, first, orDash(l.MostCalledEdge), l.MaxEdgeCalls, depth, l.DepthDenials, l.LoopDenials, l.Breaches, halt)
	}
	if len(loops) == 0 {
		fmt.Fprintln(tw, "(no run with a loop signal)")
	}
	return tw.Flush()
}
