package runtree

import (
	"fmt"

	"github.com/tollgate/tollgate/schemas"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText renders the run as an indented tree followed by the cost per
// agent.
func (r *Run) WriteText(w io.Writer) error {
	head := fmt.Sprintf("Run %s", r.RunID)
	if r.OnBehalfOf != "" {
		head += " on behalf of " + r.OnBehalfOf
	}
	if r.Workflow != "" {
		head += " (workflow " + r.Workflow + ")"
	}
	fmt.Fprintf(w, "%s: %s, %d hops, %d ledger events\n\n", head, r.Status, len(r.Hops), r.Events)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOP\tDEPTH\tDECISION\tSTATUS\tTOKENS\tCOST")
	var walk func(hops []*Hop, prefix string)
	walk = func(hops []*Hop, prefix string) {
		for i, h := range hops {
			branch, next := "├─ ", "│  "
			if i == len(hops)-1 {
				branch, next = "└─ ", "   "
			}
			if prefix == "" && h.ParentID == "" {
				branch, next = "", ""
			}
			fmt.Fprintf(tw, "%s%s → %s\t%d\t%s\t%s\t%d\t$%.4f\n", prefix+branch, h.From, h.To, h.Depth, decision(h), h.Status, h.Tokens, h.CostUSD)
			walk(h.Children, prefix+next)
		}
	}
	walk(r.Roots, "")
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, b := range r.Breaches {
		fmt.Fprintf(w, "\nLimit tripped: %s (value %g, bound %g) on %s → %s: %s\n", b.Limit, b.Value, b.Bound, b.From, b.To, b.Action)
	}
	fmt.Fprintf(w, "\nCost by agent\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tHOPS\tTOKENS\tCOST\t")
	for _, c := range r.AgentCosts() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t$%.4f\t\n", c.Agent, c.Hops, c.Tokens, c.CostUSD)
	}
	fmt.Fprintf(tw, "total\t\t%d\t$%.4f\t\n", r.Tokens, r.CostUSD)
	return tw.Flush()
}

func decision(h *Hop) string {
	if h.Decision != "denied" {
		s := h.Decision
		if h.Cycle {
			s += " ↻cycle"
		}
		return s
	}
	s := "DENIED " + string(h.Reason)
	if len(h.PolicyIDs) > 0 && h.Reason == schemas.ReasonPolicy {
		s += " [" + strings.Join(h.PolicyIDs, ",") + "]"
	}
	if h.Cycle {
		s += " ↻cycle"
	}
	return s
}
