package runtree

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// TextOptions shape WriteTextOptions.
type TextOptions struct {
	// Payloads prints the A2A message in and the result out under each
	// hop; call LoadPayloads first.
	Payloads bool
}

// WriteText renders the run as an indented tree in time order, followed by
// its denials, the limits it tripped, the halt, and the cost per agent.
func (r *Run) WriteText(w io.Writer) error { return r.WriteTextOptions(w, TextOptions{}) }

// WriteTextOptions is WriteText with options. Everything that comes from
// the ledger is printed with control characters escaped, so a recorded
// message cannot drive the terminal.
func (r *Run) WriteTextOptions(w io.Writer, o TextOptions) error {
	p := &printer{w: w}
	p.line(r.headline())
	p.line(r.subline())
	p.line("")
	r.writeTable(p, o)
	r.writeNotes(p)
	p.line("")
	p.line("Cost by agent")
	t := &table{}
	t.row("AGENT", "HOPS", "TOKENS", "COST")
	for _, c := range r.AgentCosts() {
		t.row(ledger.Printable(c.Agent), fmt.Sprint(c.Hops), fmt.Sprint(c.Tokens), money(c.CostUSD))
	}
	t.row("total", "", fmt.Sprint(r.Tokens), money(r.CostUSD))
	t.write(p, nil)
	return p.err
}

func (r *Run) headline() string {
	head := "Run " + ledger.Printable(r.RunID)
	if r.AsOf != 0 {
		head += fmt.Sprintf(" as of event #%d", r.AsOf)
	}
	if r.OnBehalfOf != "" {
		head += " on behalf of " + ledger.Printable(r.OnBehalfOf)
	}
	if r.Workflow != "" {
		head += " (workflow " + ledger.Printable(r.Workflow) + ")"
	}
	denied := len(r.Hops) - r.Allowed()
	hops := fmt.Sprintf("%d hops", len(r.Hops))
	if denied > 0 {
		hops += fmt.Sprintf(" (%d denied)", denied)
	}
	return fmt.Sprintf("%s: %s, %s, %d ledger events", head, r.Status, hops, r.Events)
}

func (r *Run) subline() string {
	var parts []string
	if !r.StartedAt.IsZero() {
		s := "Started " + r.StartedAt.UTC().Format(time.RFC3339Nano)
		if r.Caller != "" {
			s += " by " + ledger.Printable(r.Caller)
		}
		parts = append(parts, s+", last event "+r.offset(r.LastAt))
	}
	if r.TraceID != "" {
		parts = append(parts, "trace "+ledger.Printable(r.TraceID))
	}
	if len(parts) == 0 {
		return "No run.started event"
	}
	return strings.Join(parts, "; ")
}

// offset is t as the time since the run started.
func (r *Run) offset(t time.Time) string {
	if r.StartedAt.IsZero() || t.IsZero() {
		return ""
	}
	d := t.Sub(r.StartedAt)
	if d.Abs() < 1000*time.Second {
		return fmt.Sprintf("%+.3fs", d.Seconds())
	}
	return "+" + d.Round(time.Millisecond).String()
}

func (r *Run) writeTable(p *printer, o TextOptions) {
	spans := false
	for _, h := range r.Hops {
		spans = spans || h.SpanID != ""
	}
	t := &table{}
	head := []string{"SEQ", "AT", "HOP", "DEPTH", "DECISION", "STATUS", "LATENCY", "TOKENS", "COST"}
	if spans {
		head = append(head, "SPAN")
	}
	t.row(head...)
	extra := map[int][]string{} // payload lines under a row
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
			cells := []string{fmt.Sprintf("#%d", h.Seq), r.offset(h.At), prefix + branch + ledger.Printable(h.From) + " → " + ledger.Printable(h.To),
				fmt.Sprint(h.Depth), decision(h), h.Status, latency(h), tokens(h), cost(h)}
			if spans {
				cells = append(cells, ledger.Printable(h.SpanID))
			}
			t.row(cells...)
			var lines []string
			for _, rr := range h.Reroutes {
				line := fmt.Sprintf("%s   #%d re-routed %s → %s (%s)", prefix+next, rr.Seq, ledger.Printable(rr.From), ledger.Printable(rr.To), ledger.Printable(rr.Cause))
				if len(rr.Skipped) > 0 {
					line += "; passed over: " + ledger.Printable(strings.Join(rr.Skipped, ", "))
				}
				lines = append(lines, line)
			}
			for _, rt := range h.Retries {
				why := rt.Cause
				if rt.ErrorClass != "" {
					why += " " + rt.ErrorClass
				}
				lines = append(lines, fmt.Sprintf("%s   #%d attempt %d after %s", prefix+next, rt.Seq, rt.Attempt, ledger.Printable(why)))
			}
			if len(lines) > 0 {
				extra[len(t.rows)-1] = lines
			}
			if o.Payloads {
				indent := prefix + next + "   "
				if h.Input != "" {
					lines = append(lines, indent+"in:  "+ledger.Printable(h.Input))
				}
				if h.Output != "" {
					lines = append(lines, indent+"out: "+ledger.Printable(h.Output))
				}
				if h.Error != "" {
					lines = append(lines, indent+"err: "+ledger.Printable(h.Error))
				}
				extra[len(t.rows)-1] = lines
			}
			walk(h.Children, prefix+next)
		}
	}
	walk(r.Roots, "")
	t.write(p, extra)
}

func (r *Run) writeNotes(p *printer) {
	var denied, audited []*Hop
	for _, h := range r.Hops {
		if h.Denied() {
			denied = append(denied, h)
		}
		if len(h.Audit) > 0 {
			audited = append(audited, h)
		}
	}
	if len(denied) > 0 {
		p.line("")
		p.line("Denials")
		for _, h := range denied {
			p.line(fmt.Sprintf("  #%d %s → %s: %s: %s", h.Seq, ledger.Printable(h.From), ledger.Printable(h.To), h.Reason, ledger.Printable(h.Message)))
		}
	}
	if len(audited) > 0 {
		p.line("")
		p.line("Audit findings (recorded, not enforced)")
		for _, h := range audited {
			for _, f := range h.Audit {
				ids := ""
				if len(f.PolicyIDs) > 0 && f.Reason == schemas.ReasonPolicy {
					ids = " [" + ledger.Printable(strings.Join(f.PolicyIDs, ",")) + "]"
				}
				p.line(fmt.Sprintf("  #%d %s → %s would be denied: %s%s: %s", h.Seq, ledger.Printable(h.From), ledger.Printable(h.To), f.Reason, ids, ledger.Printable(f.Message)))
			}
		}
	}
	r.writeGuardrails(p)
	byID := map[string]*Hop{}
	for _, h := range r.Hops {
		byID[h.HopID] = h
	}
	if len(r.Breaches) > 0 {
		p.line("")
	}
	for _, b := range r.Breaches {
		where := ""
		if h := byID[b.HopID]; h != nil && b.HopID != "" {
			where = fmt.Sprintf(" at #%d", h.BreachSeq)
			if h.BreachSeq == 0 {
				where = ""
			}
			where += fmt.Sprintf(" by the denial of hop %s (#%d)", ledger.Printable(b.HopID), h.Seq)
		}
		edge := ""
		if b.From != "" || b.To != "" {
			edge = fmt.Sprintf(" on %s → %s", ledger.Printable(b.From), ledger.Printable(b.To))
		}
		p.line(fmt.Sprintf("Limit tripped%s: %s (value %g, bound %g)%s, action %s", where, ledger.Printable(b.Limit), b.Value, b.Bound, edge, ledger.Printable(b.Action)))
	}
	if h := r.Halt; h != nil {
		p.line("")
		s := fmt.Sprintf("Halted at #%d by %s: %s", h.Seq, ledger.Printable(h.By), ledger.Printable(h.Reason))
		if len(h.Cancelled) > 0 {
			s += fmt.Sprintf("; cancelled %d open hops: %s", len(h.Cancelled), ledger.Printable(strings.Join(h.Cancelled, ", ")))
		}
		p.line(s)
	}
	if r.Status == ledger.RunRunning && len(r.OpenHops) > 0 {
		p.line("")
		var open []string
		for _, id := range r.OpenHops {
			if h := byID[id]; h != nil {
				open = append(open, fmt.Sprintf("%s (%s → %s)", ledger.Printable(id), ledger.Printable(h.From), ledger.Printable(h.To)))
			}
		}
		p.line(fmt.Sprintf("Open hops: %s", strings.Join(open, ", ")))
		p.line(fmt.Sprintf("Spent %d tokens, %s; reserved by open hops %d tokens, %s", r.Tokens, money(r.CostUSD), r.ReservedTokens, money(r.ReservedCostUSD)))
	}
}

// writeGuardrails lists what the guardrails found and the tainted hops
// with where their taint came from.
func (r *Run) writeGuardrails(p *printer) {
	var found, tainted []string
	for _, h := range r.Hops {
		if g := h.Guardrail; g != nil {
			found = append(found, fmt.Sprintf("  #%d %s → %s message: %s %s", h.Seq, ledger.Printable(h.From), ledger.Printable(h.To), ledger.Printable(g.Verdict), ledger.Printable(strings.Join(g.Rules, ", "))))
		}
		if g := h.ReplyGuardrail; g != nil {
			found = append(found, fmt.Sprintf("  #%d %s → %s reply: %s %s", h.ClosedSeq, ledger.Printable(h.To), ledger.Printable(h.From), ledger.Printable(g.Verdict), ledger.Printable(strings.Join(g.Rules, ", "))))
		}
		if h.Tainted {
			tainted = append(tainted, fmt.Sprintf("  #%d %s → %s: %s", h.Seq, ledger.Printable(h.From), ledger.Printable(h.To), ledger.Printable(strings.Join(h.TaintSources, ", "))))
		}
	}
	var held []string
	for _, h := range r.Hops {
		if a := h.Approval; a != nil {
			who := "any operator"
			if len(a.Approvers) > 0 {
				who = "group " + strings.Join(a.Approvers, " or ")
			}
			line := fmt.Sprintf("  #%d %s → %s held by %s for %s until %s: %s", h.Seq, ledger.Printable(h.From), ledger.Printable(h.To),
				ledger.Printable(strings.Join(a.PolicyIDs, ",")), ledger.Printable(who), a.Deadline.UTC().Format(time.RFC3339), a.Outcome)
			if a.By != "" {
				line += fmt.Sprintf(" by %s at #%d", ledger.Printable(a.By), a.Seq)
			}
			if a.Note != "" {
				line += ": " + ledger.Printable(a.Note)
			}
			held = append(held, line)
		}
	}
	if len(held) > 0 {
		p.line("")
		p.line("Approvals")
		for _, l := range held {
			p.line(l)
		}
	}
	if len(found) > 0 {
		p.line("")
		p.line("Guardrail findings")
		for _, l := range found {
			p.line(l)
		}
	}
	if len(tainted) > 0 {
		p.line("")
		p.line("Tainted hops (content from untrusted sources)")
		for _, l := range tainted {
			p.line(l)
		}
	}
}

func decision(h *Hop) string {
	var s string
	switch {
	case h.Denied():
		s = "DENIED " + string(h.Reason)
		if len(h.PolicyIDs) > 0 && h.Reason == schemas.ReasonPolicy {
			s += " [" + strings.Join(h.PolicyIDs, ",") + "]"
		}
	default:
		s = h.Decision
		if len(h.PolicyIDs) > 0 {
			s += " [" + strings.Join(h.PolicyIDs, ",") + "]"
		}
	}
	if h.Cycle {
		s += " ↻cycle"
	}
	if h.Tainted {
		s += " ☣tainted"
	}
	if h.Breach != nil {
		s += ", tripped " + h.Breach.Limit
		if h.BreachAction != "" {
			s += " → " + h.BreachAction
		}
	}
	return ledger.Printable(s)
}

func latency(h *Hop) string {
	switch {
	case h.ClosedSeq == 0:
		return ""
	case h.LatencyMS == 0:
		return "<1ms"
	}
	return (time.Duration(h.LatencyMS) * time.Millisecond).String()
}

func tokens(h *Hop) string {
	if h.ClosedSeq == 0 {
		return ""
	}
	return fmt.Sprint(h.Tokens)
}

func cost(h *Hop) string {
	if h.ClosedSeq == 0 {
		return ""
	}
	return money(h.CostUSD)
}

func money(usd float64) string { return fmt.Sprintf("$%.4f", usd) }

// printer writes lines and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) line(s string) {
	if p.err != nil {
		return
	}
	_, p.err = io.WriteString(p.w, s+"\n")
}

// table aligns cells in columns by their width in runes (the tree's box
// characters and arrows are one column wide), two spaces apart.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(p *printer, extra map[int][]string) {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for n, row := range t.rows {
		var b strings.Builder
		for i, c := range row {
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		p.line(strings.TrimRight(b.String(), " "))
		for _, l := range extra[n] {
			p.line(strings.Repeat(" ", hopColumn(widths)) + l)
		}
	}
}

// hopColumn is where the HOP column starts (after SEQ and AT).
func hopColumn(widths []int) int {
	if len(widths) < 3 {
		return 0
	}
	return widths[0] + 2 + widths[1] + 2
}
