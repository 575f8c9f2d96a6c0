package whatif

import (
	"fmt"
	"io"
	"strings"
	"unicode"
)

// WriteText renders the report for people: the answer first (the first
// hop that would change), then every change with the recorded and the
// candidate verdict, what would not have happened, and the hops kept as
// recorded. Text from the ledger is printed with control characters
// escaped.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	src := ""
	if r.Source != "" {
		src = " from " + clean(r.Source)
	}
	p.f("What-if for run %s: %d candidate policies%s", clean(r.RunID), len(r.Policies), src)
	p.f("%d invokes: %d re-decided, %d kept as recorded, %d would not have happened", r.Decisions, r.Evaluated, r.NotEvaluated, r.Pruned)
	p.f("")
	byID := map[string]*Hop{}
	for _, h := range r.Hops {
		byID[h.HopID] = h
	}
	changes := r.Changes()
	if len(changes) == 0 {
		p.f("No decision would change: the candidate set decides every re-decided invoke as the gateway did.")
	} else {
		first := changes[0]
		p.f("First change: #%d %s → %s: the candidate set says %s where the gateway recorded %s.",
			first.Seq, clean(first.From), clean(first.To), verdict(first.Candidate), verdict(&first.Recorded))
		p.f("")
		p.f("%s would change:", plural(len(changes), "hop"))
		for _, h := range changes {
			p.f("")
			cyc := ""
			if h.Cycle {
				cyc = " ↻cycle"
			}
			p.f("  #%d %s → %s (depth %d, hop %s)%s", h.Seq, clean(h.From), clean(h.To), h.Depth, clean(h.HopID), cyc)
			p.f("     recorded:   %s", verdict(&h.Recorded))
			p.f("     candidate:  %s", verdict(h.Candidate))
			note := clean(h.Note)
			if h.Change == Stopped {
				if below := r.below(h.HopID); len(below) > 0 {
					note += fmt.Sprintf("; %s below it would not have happened (%s)", plural(len(below), "hop"), seqs(below))
				}
			}
			if note != "" {
				p.f("     %s", note)
			}
		}
	}
	if r.Avoided.Hops > 0 || len(r.Vanished) > 0 {
		p.f("")
		p.f("Would not have happened:")
		if r.Avoided.Hops > 0 {
			p.f("  %s (the stopped ones and those below them), which spent %d tokens, $%.4f in the recorded run",
				plural(r.Avoided.Hops, "allowed hop"), r.Avoided.Tokens, r.Avoided.CostUSD)
		}
		for _, v := range r.Vanished {
			p.f("  #%d %s: %s (because of hop %s)", v.Seq, v.Type, clean(v.What), clean(v.Because))
		}
	}
	var kept []*Hop
	for _, h := range r.Hops {
		if !h.Evaluated() && h.PrunedBy == "" {
			kept = append(kept, h)
		}
	}
	if len(kept) > 0 {
		p.f("")
		p.f("Kept as recorded (not decided by the policy set):")
		for _, h := range kept {
			p.f("  #%d %s → %s: %s; %s", h.Seq, clean(h.From), clean(h.To), verdict(&h.Recorded), clean(h.Note))
		}
	}
	p.f("")
	p.f("Context (hops so far, spend, edge calls) is the recorded run's; limits other than the cycle check are taken as recorded.")
	return p.err
}

// below returns the hops pruned because of hop id.
func (r *Report) below(id string) []*Hop {
	var out []*Hop
	for _, h := range r.Hops {
		if h.PrunedBy == id {
			out = append(out, h)
		}
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func seqs(hops []*Hop) string {
	var s []string
	for i, h := range hops {
		if i == 8 {
			s = append(s, fmt.Sprintf("… %d more", len(hops)-i))
			break
		}
		s = append(s, fmt.Sprintf("#%d", h.Seq))
	}
	return strings.Join(s, ", ")
}

func verdict(v *Verdict) string {
	if v == nil {
		return "not decided"
	}
	if !v.Denied() {
		if len(v.PolicyIDs) > 0 {
			return "allowed [" + clean(strings.Join(v.PolicyIDs, ",")) + "]"
		}
		return "allowed"
	}
	s := "DENIED " + string(v.Reason)
	if len(v.PolicyIDs) > 0 {
		s += " [" + strings.Join(v.PolicyIDs, ",") + "]"
	}
	if v.Limit != "" {
		s += " (" + v.Limit + " limit)"
	}
	return clean(s)
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, format+"\n", args...)
}

// clean escapes control and format characters so that recorded text
// cannot drive a terminal.
func clean(s string) string {
	var b strings.Builder
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case c == '\n':
			b.WriteString(`\n`)
		case unicode.IsControl(c) || unicode.Is(unicode.Cf, c):
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
