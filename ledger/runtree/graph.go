package runtree

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Graph is a run's call graph: one node per identity, one edge per
// caller->target pair with everything that went over it.
type Graph struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// Node is an identity of the call graph.
type Node struct {
	ID   string                `json:"id"`
	Type schemas.PrincipalType `json:"type,omitempty"`
}

// Edge aggregates the hops of one caller->target pair.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Calls counts every attempt: Allowed plus Denied.
	Calls   int `json:"calls"`
	Allowed int `json:"allowed"`
	Denied  int `json:"denied"`
	// Cycles counts the attempts whose target was already in the ancestry.
	Cycles int `json:"cycles,omitempty"`
	// Tripped lists the limits the edge's denials tripped.
	Tripped []string `json:"tripped,omitempty"`
	// Tokens and CostUSD are what the targets reported for the edge's hops
	// (each attempt of a retried or re-routed hop on the edge it went
	// over).
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
	// Retries counts the attempts the gateway made again over the edge
	// (hop.retried); Rerouted the hops re-routed away from its target
	// (hop.rerouted: the target was unavailable), and Fallbacks the hops
	// its target took as a fallback. An edge only re-routed away from has
	// no calls.
	Retries   int `json:"retries,omitempty"`
	Rerouted  int `json:"rerouted,omitempty"`
	Fallbacks int `json:"fallbacks,omitempty"`
}

// Marked reports whether the edge carried a denial, a cycle or a tripped
// limit: the edges a reader of the graph must see first.
func (e *Edge) Marked() bool { return e.Denied > 0 || e.Cycles > 0 || len(e.Tripped) > 0 }

// Graph builds the run's call graph, nodes and edges sorted by id so that
// the same run always renders the same way.
func (r *Run) Graph() *Graph {
	nodes := map[string]schemas.PrincipalType{}
	edges := map[[2]string]*Edge{}
	edge := func(from, to string, t schemas.PrincipalType) *Edge {
		if _, ok := nodes[to]; !ok || nodes[to] == "" {
			nodes[to] = t
		}
		k := [2]string{from, to}
		e := edges[k]
		if e == nil {
			e = &Edge{From: from, To: to}
			edges[k] = e
		}
		return e
	}
	for _, h := range r.Hops {
		if _, ok := nodes[h.From]; !ok || nodes[h.From] == "" {
			nodes[h.From] = h.FromType
		}
		if h.To == "" {
			continue // a submission that named no target
		}
		// A re-routed hop's first target had the type of the decision,
		// each fallback its own (recorded since hop.rerouted has it).
		first := h.ToType
		for _, rr := range h.Reroutes {
			edge(h.From, rr.From, first).Rerouted++
			edge(h.From, rr.To, rr.ToType).Fallbacks++
			first = rr.ToType
		}
		for _, rt := range h.Retries {
			edge(h.From, rt.To, "").Retries++
		}
		for _, a := range h.Attempts[:max(len(h.Attempts)-1, 0)] {
			e := edge(h.From, a.To, "")
			e.Tokens += a.Tokens
			e.CostUSD += a.CostUSD
		}
		e := edge(h.From, h.To, first)
		e.Calls++
		if h.Denied() {
			e.Denied++
		} else {
			e.Allowed++
		}
		if h.Cycle {
			e.Cycles++
		}
		if h.Breach != nil && !slices.Contains(e.Tripped, h.Breach.Limit) {
			e.Tripped = append(e.Tripped, h.Breach.Limit)
		}
		if n := len(h.Attempts); n > 0 { // the others are on their edges
			e.Tokens += h.Attempts[n-1].Tokens
			e.CostUSD += h.Attempts[n-1].CostUSD
		} else {
			e.Tokens += h.Tokens
			e.CostUSD += h.CostUSD
		}
	}
	if r.Caller != "" {
		if t, ok := nodes[r.Caller]; !ok || t == "" {
			nodes[r.Caller] = r.CallerType
		}
	}
	g := &Graph{Nodes: []Node{}, Edges: []Edge{}}
	for id, t := range nodes {
		g.Nodes = append(g.Nodes, Node{ID: id, Type: t})
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	for _, e := range edges {
		slices.Sort(e.Tripped)
		g.Edges = append(g.Edges, *e)
	}
	slices.SortFunc(g.Edges, func(a, b Edge) int {
		if c := cmp.Compare(a.From, b.From); c != 0 {
			return c
		}
		return cmp.Compare(a.To, b.To)
	})
	return g
}

// label is an edge's text: calls, denials, cycles, tripped limits, cost.
func (e *Edge) label() (first, second string) {
	calls := "calls"
	if e.Calls == 1 {
		calls = "call"
	}
	first = fmt.Sprintf("%d %s", e.Calls, calls)
	if e.Denied > 0 {
		first += fmt.Sprintf(", %d denied", e.Denied)
	}
	if e.Cycles > 0 {
		first += fmt.Sprintf(", %d ↻cycle", e.Cycles)
	}
	if len(e.Tripped) > 0 {
		first += ", tripped " + strings.Join(e.Tripped, ",")
	}
	if e.Retries > 0 {
		first += fmt.Sprintf(", %d retried", e.Retries)
	}
	if e.Rerouted > 0 {
		first += fmt.Sprintf(", %d re-routed away", e.Rerouted)
	}
	if e.Fallbacks > 0 {
		first += fmt.Sprintf(", %d as fallback", e.Fallbacks)
	}
	return first, fmt.Sprintf("%d tok · %s", e.Tokens, money(e.CostUSD))
}

func (r *Run) graphTitle() string {
	return fmt.Sprintf("run %s · %s · %d hops · %s", r.RunID, r.Status, len(r.Hops), money(r.CostUSD))
}

// WriteDOT renders the call graph in Graphviz DOT: users as ellipses,
// agents as boxes, tools and models as other shapes; each edge labelled
// with its calls, denials and cost. Edges with a denial, a cycle or a
// tripped limit are red, and dashed when no call over them was allowed.
func (r *Run) WriteDOT(w io.Writer) error {
	g := r.Graph()
	p := &printer{w: w}
	p.line("digraph tollgate_run {")
	p.line(fmt.Sprintf("  graph [label=%s, labelloc=t, rankdir=LR, fontname=Helvetica];", dotQuote(r.graphTitle())))
	p.line("  node [shape=box, style=rounded, fontname=Helvetica];")
	p.line("  edge [fontname=Helvetica, fontsize=10];")
	for _, n := range g.Nodes {
		attrs := ""
		switch n.Type {
		case schemas.TypeUser:
			attrs = ", shape=ellipse, style=solid"
		case schemas.TypeTool:
			attrs = ", shape=component, style=solid"
		case schemas.TypeModel:
			attrs = ", shape=cylinder, style=solid"
		}
		p.line(fmt.Sprintf("  %s [label=%s%s];", dotQuote(n.ID), dotQuote(n.ID), attrs))
	}
	for _, e := range g.Edges {
		first, second := e.label()
		attrs := "label=" + dotQuote(first, second)
		if e.Marked() {
			attrs += ", color=red, fontcolor=red, penwidth=2"
			if e.Allowed == 0 {
				attrs += ", style=dashed"
			}
		}
		p.line(fmt.Sprintf("  %s -> %s [%s];", dotQuote(e.From), dotQuote(e.To), attrs))
	}
	p.line("}")
	return p.err
}

// dotQuote quotes lines as one DOT string, joined by DOT's \n line break.
// Every character that could end the string or start an escape is escaped,
// and control characters are shown as escapes (see clean).
func dotQuote(lines ...string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	esc := make([]string, len(lines))
	for i, l := range lines {
		esc[i] = r.Replace(ledger.Printable(l))
	}
	return `"` + strings.Join(esc, `\n`) + `"`
}

// WriteMermaid renders the call graph as a Mermaid flowchart: users as
// stadiums, agents as boxes; each edge labelled with its calls, denials and
// cost. Edges with a denial, a cycle or a tripped limit are drawn red, and
// dotted when no call over them was allowed.
func (r *Run) WriteMermaid(w io.Writer) error {
	g := r.Graph()
	p := &printer{w: w}
	p.line("---")
	p.line("title: " + mermaidText(r.graphTitle()))
	p.line("---")
	p.line("flowchart LR")
	ids := map[string]string{}
	for i, n := range g.Nodes {
		ids[n.ID] = fmt.Sprintf("n%d", i)
		open, close := "[", "]"
		switch n.Type {
		case schemas.TypeUser:
			open, close = "([", "])"
		case schemas.TypeTool:
			open, close = "[[", "]]"
		case schemas.TypeModel:
			open, close = "[(", ")]"
		}
		p.line(fmt.Sprintf("  %s%s\"%s\"%s", ids[n.ID], open, mermaidText(n.ID), close))
	}
	var red []string
	for i, e := range g.Edges {
		first, second := e.label()
		arrow := "-->"
		if e.Marked() && e.Allowed == 0 {
			arrow = "-.->"
		}
		p.line(fmt.Sprintf("  %s %s|\"%s<br/>%s\"| %s", ids[e.From], arrow, mermaidText(first), mermaidText(second), ids[e.To]))
		if e.Marked() {
			red = append(red, fmt.Sprint(i))
		}
	}
	if len(red) > 0 {
		p.line(fmt.Sprintf("  linkStyle %s stroke:#d00,stroke-width:2px,color:#d00", strings.Join(red, ",")))
	}
	return p.err
}

// mermaidText escapes s for a quoted Mermaid label with entity codes, so
// that no recorded text can close the label or inject markup.
func mermaidText(s string) string {
	s = ledger.Printable(s)
	r := strings.NewReplacer("#", "#35;", `"`, "#quot;", "<", "#lt;", ">", "#gt;", "|", "#124;", "`", "#96;")
	return r.Replace(s)
}
