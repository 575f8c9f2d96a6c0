package projections

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The reports as text (tollgate report): aligned tables, two spaces apart,
// "-" for an empty cell; the call graph also as Graphviz DOT.

// table writes aligned columns; the cells of a row are separated by tabs.
type table struct{ tw *tabwriter.Writer }

// newTable starts a table; header, when given, is its first row.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	}
	return t
}

func (t *table) row(format string, args ...any) { fmt.Fprintf(t.tw, format+"\n", args...) }

func (t *table) flush() error { return t.tw.Flush() }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteCost writes a table of cost rows per dimension, in the order dims
// gives, each with its total.
func WriteCost(w io.Writer, dims []Dimension, rows map[Dimension][]CostRow) error {
	for i, d := range dims {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Cost by %s\n", d)
		t := newTable(w, strings.ToUpper(string(d)), "RUNS", "HOPS", "TOKENS", "COST")
		var hops uint64
		var tokens int64
		var cost float64
		for _, c := range rows[d] {
			t.row("%s\t%d\t%d\t%d\t%s", orDash(c.Key), c.Runs, c.Hops, c.Tokens, Money(c.CostUSD))
			hops, tokens, cost = hops+c.Hops, tokens+c.Tokens, cost+c.CostUSD
		}
		if len(rows[d]) == 0 {
			t.row("(none)")
		} else {
			t.row("total\t\t%d\t%d\t%s", hops, tokens, Money(cost))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
}

// WriteGraph writes the call graph as a table, an edge per row.
func WriteGraph(w io.Writer, edges []Edge) error {
	t := newTable(w, "CALLER", "TARGET", "RUNS", "CALLS", "ALLOWED", "DENIED", "CYCLES", "TOKENS", "COST", "DENIAL REASONS")
	for _, e := range edges {
		t.row("%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s", orDash(e.Caller), orDash(e.Target), e.Runs, e.Calls,
			e.Allowed, e.Denials, e.Cycles, e.Tokens, Money(e.CostUSD), strings.Join(e.Reasons, ","))
	}
	if len(edges) == 0 {
		t.row("(no calls)")
	}
	return t.flush()
}

// WriteGraphDOT writes the call graph for Graphviz: an edge per caller ->
// target, labelled with its calls, denials and spend; red where anything
// was denied, dashed where a call closed a cycle.
func WriteGraphDOT(w io.Writer, edges []Edge) error {
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
			label += ", " + Money(e.CostUSD)
		}
		attrs := []string{"label=" + dotQuote(label)}
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

// WriteLoops writes the runs with loop signals as a table.
func WriteLoops(w io.Writer, loops []LoopSignal) error {
	t := newTable(w, "RUN", "STARTED", "STATUS", "CYCLES", "FIRST CYCLE", "MOST CALLED EDGE", "DEPTH", "DENIED (DEPTH/LOOP)", "BREACHES", "HALT")
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
		t.row("%s\t%s\t%s\t%d\t%s\t%s x%d\t%s\t%d/%d\t%d\t%s", l.RunID, l.StartedAt.Format(time.DateTime), l.Status,
			l.Cycles, first, orDash(l.MostCalledEdge), l.MaxEdgeCalls, depth, l.DepthDenials, l.LoopDenials, l.Breaches, halt)
	}
	if len(loops) == 0 {
		t.row("(no run with a loop signal)")
	}
	return t.flush()
}

// WriteText writes the status as a two-column table.
func (st *Status) WriteText(w io.Writer) error {
	t := newTable(w)
	t.row("database\t%s (ClickHouse %s)", st.Database, st.ServerVersion)
	t.row("schema\tmigration %d of %d", st.SchemaVersion, st.LatestSchema)
	t.row("rows\t%d events, %d hops, %d runs, %d breaches", st.Events, st.Hops, st.Runs, st.Breaches)
	t.row("projected up to\tstream seq %d", st.ProjectedStreamSeq)
	if l := st.Lag; l != nil {
		state := "caught up"
		if l.Events() > 0 {
			state = fmt.Sprintf("%d events behind (%d pending, %d awaiting ack), oldest %s old", l.Events(), l.Pending, l.AckPending, l.Behind.Round(time.Millisecond))
		}
		if !l.Exists {
			state = fmt.Sprintf("no projector has run as %q yet; %d events to project", l.Consumer, l.Events())
		}
		t.row("ledger\t%d events, last stream seq %d", l.StreamEvents, l.StreamLastSeq)
		t.row("lag\t%s", state)
	} else {
		t.row("lag\tunknown (pass --data, --nats or --config to ask the bus)")
	}
	return t.flush()
}

// WriteText writes the result of a rebuild as one line, with whether it
// matches the ledger (a rebuild whose error wraps ErrMismatch does not).
func (res *RebuildResult) WriteText(w io.Writer, matches bool) error {
	verdict := "matches the ledger"
	if !matches {
		verdict = "DOES NOT match the ledger"
	}
	_, err := fmt.Fprintf(w, "rebuilt %s in %s: %d ledger events, %d events projected (%d skipped), %d hops, %d runs, %d breaches; %d caught up after the swap; %s\n",
		res.Database, res.Duration.Round(time.Millisecond), res.LedgerEvents, res.Events, res.Skipped, res.Hops, res.Runs,
		res.Breaches, res.CaughtUp, verdict)
	return err
}

// ProgressPrinter prints a rebuild's progress (RebuildOptions.Progress):
// on a terminal, a bar redrawn in place; elsewhere (CI logs), a line now
// and then.
type ProgressPrinter struct {
	w        io.Writer
	terminal bool
	pass     int
	lastPct  int
	lastLine time.Time
	drawn    bool
}

// NewProgressPrinter prints to w, which is a terminal or not.
func NewProgressPrinter(w io.Writer, terminal bool) *ProgressPrinter {
	return &ProgressPrinter{w: w, terminal: terminal, lastPct: -1}
}

// Update shows pr.
func (p *ProgressPrinter) Update(pr RebuildProgress) {
	pct := 100
	if pr.Total > 0 {
		pct = int(pr.Done * 100 / pr.Total)
	}
	what := "re-projecting the ledger"
	if pr.Pass == 2 {
		what = "catching up after the swap"
	}
	if p.terminal {
		if p.drawn && pr.Pass != p.pass {
			fmt.Fprintln(p.w)
		}
		p.pass = pr.Pass
		const width = 30
		fill := pct * width / 100
		fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %d/%d events ", what, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, pr.Done, pr.Total)
		p.drawn = true
		return
	}
	if pr.Pass != p.pass || pct >= p.lastPct+10 || time.Since(p.lastLine) > 5*time.Second || pr.Done == pr.Total {
		if pr.Pass == p.pass && pct == p.lastPct {
			return
		}
		fmt.Fprintf(p.w, "%s: %d%% (%d/%d events)\n", what, pct, pr.Done, pr.Total)
		p.pass, p.lastPct, p.lastLine = pr.Pass, pct, time.Now()
	}
}

// Finish ends the bar's line once the rebuild is over.
func (p *ProgressPrinter) Finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// Money is Tollgate's one money format for people: US dollars with four
// decimals ("$0.0830"), as replay, runs list and the reports print it.
func Money(usd float64) string { return fmt.Sprintf("$%.4f", usd) }
