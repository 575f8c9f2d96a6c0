package guardrail

import (
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// CheckVersion is the version of the external checker protocol.
const CheckVersion = 1

// Checker is an external guardrail: a classifier service a team plugs in.
// Check returns its verdict on one message, or an error wrapping one of
// the ErrChecker* errors when it has none.
type Checker interface {
	Check(ctx context.Context, req CheckRequest) (CheckResponse, error)
}

// CheckRequest is what the external checker is sent (JSON).
type CheckRequest struct {
	// Version is CheckVersion.
	Version int `json:"version"`
	// Direction is inbound (an invoke) or outbound (a reply).
	Direction Direction `json:"direction"`
	// Agent is the agent whose policy applies (see Request.Agent).
	Agent string `json:"agent"`
	// From and To are the sender and the recipient.
	From string `json:"from"`
	To   string `json:"to"`
	// Message is the A2A message or task, as sent.
	Message json.RawMessage `json:"message"`
}

// CheckResponse is the external checker's answer (JSON).
type CheckResponse struct {
	// Verdict is allow, flag or block.
	Verdict Verdict `json:"verdict"`
	// Findings say why; they are recorded as "external/<rule>".
	Findings []CheckFinding `json:"findings,omitempty"`
}

// CheckFinding is one finding of the external checker.
type CheckFinding struct {
	// Rule names what the checker found: letters, digits and ._-, at most
	// 64 characters. It is recorded as "external/<rule>".
	Rule string `json:"rule"`
	// Severity is low, medium, high or critical (default medium).
	Severity Severity `json:"severity,omitempty"`
	// Action is what the checker suggests: flag or block (default: the
	// verdict's). The agent's configuration can override it.
	Action Action `json:"action,omitempty"`
	// Path is the JSON Pointer of the part it concerns, if any.
	Path string `json:"path,omitempty"`
	// Excerpt is the text it concerns, if any.
	Excerpt string `json:"excerpt,omitempty"`
	// Description explains the finding.
	Description string `json:"description,omitempty"`
	// Score is the checker's confidence, if it has one.
	Score float64 `json:"score,omitempty"`
}

const maxCheckFindings = 64

// ruleName reports a checker's rule name: a letter or digit, then up to
// 63 letters, digits, '.', '_' or '-'.
func ruleName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}

// Validate reports whether the answer is one the engine can apply. The
// error wraps ErrCheckerAnswer.
func (r *CheckResponse) Validate() error {
	switch r.Verdict {
	case Allow, Flagged, Blocked:
	default:
		return fmt.Errorf("%w: verdict %q is not allow, flag or block", ErrCheckerAnswer, r.Verdict)
	}
	if len(r.Findings) > maxCheckFindings {
		return fmt.Errorf("%w: %d findings (at most %d)", ErrCheckerAnswer, len(r.Findings), maxCheckFindings)
	}
	for i, f := range r.Findings {
		if !ruleName(f.Rule) {
			return fmt.Errorf("%w: finding %d: rule %q is not a name", ErrCheckerAnswer, i, f.Rule)
		}
		if f.Severity != "" && !f.Severity.valid() {
			return fmt.Errorf("%w: finding %d: severity %q", ErrCheckerAnswer, i, f.Severity)
		}
		if f.Action != "" && f.Action != Flag && f.Action != Block {
			return fmt.Errorf("%w: finding %d: action %q is not flag or block", ErrCheckerAnswer, i, f.Action)
		}
	}
	return nil
}

// addExternal merges the external checker's answer (or failure) into the
// scan, as findings of the external pack.
func (s *scanner) addExternal(x *ExternalResult, mode HookMode) {
	if x.Err != nil {
		act := Flag
		if mode == HookFailClosed {
			act = Block
		}
		s.addExternalFinding(Finding{
			Rule: RuleExternalFailed, Pack: PackExternal, Severity: Medium, Action: act,
			Detail: bounded(x.Err.Error(), 200), Count: 1,
		})
		return
	}
	ans := x.Answer
	if err := ans.Validate(); err != nil {
		s.addExternal(&ExternalResult{Err: err}, mode)
		return
	}
	def := Flag
	if ans.Verdict == Blocked {
		def = Block
	}
	for _, f := range ans.Findings {
		id := PackExternal + "/" + f.Rule
		suggested := f.Action
		if suggested == "" {
			suggested = def
		}
		sev := f.Severity
		if sev == "" {
			sev = Medium
		}
		s.addExternalFinding(Finding{
			Rule: id, Pack: PackExternal, Severity: sev, Action: s.tab.external(id, suggested),
			Path: bounded(f.Path, 256), Excerpt: excerpt(f.Excerpt, s.lim.ExcerptBytes, false),
			Detail: bounded(f.Description, 200), Count: 1,
		})
	}
	if ans.Verdict != Allow && len(ans.Findings) == 0 {
		id := PackExternal + "/verdict"
		s.addExternalFinding(Finding{
			Rule: id, Pack: PackExternal, Severity: Medium, Action: s.tab.external(id, def), Count: 1,
		})
	}
}

func (s *scanner) addExternalFinding(f Finding) {
	if f.Action == Off {
		return
	}
	if f.Action == Redact {
		// The checker gives no span to replace.
		f.Action = Block
	}
	if f.Action.rank() > s.strongest.rank() {
		s.strongest = f.Action
	}
	if len(s.res.Findings) >= s.lim.MaxFindings {
		s.res.Dropped++
		return
	}
	s.res.Findings = append(s.res.Findings, f)
}

// bounded cuts s to at most n bytes on a rune boundary.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
