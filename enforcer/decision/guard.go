package decision

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/guardrail"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// ScanFunc scans one message with the rules' guardrails (Rules.Guard) and,
// where the enforcer has one, the external checker. It never fails: what
// goes wrong is in the result.
type ScanFunc func(req guardrail.Request) guardrail.Result

// The taint sources a hop may carry (docs/guardrails.md). A source names
// where untrusted content came from; a hop inherits its parent's sources.
const (
	// TaintIngress: the run came in from an external caller through the
	// A2A HTTP ingress.
	TaintIngress = "ingress"
	// taintUntrusted prefixes the id of an identity configured untrusted
	// that made the hop or answered one above it ("untrusted:search").
	taintUntrusted = "untrusted:"
	// taintGuardrail prefixes the id of a guardrail rule that flagged or
	// redacted the hop's message or a reply above it
	// ("guardrail:exfiltration/secret").
	taintGuardrail = "guardrail:"
	// taintMore stands for sources left out past maxTaintSources.
	taintMore = "more"
)

// maxTaintSources bounds the sources a hop records, so that a long
// delegation chain through many flagged messages cannot grow each decision
// without bound. Past it, "more" stands for the rest; the hop is tainted
// either way.
const maxTaintSources = 16

// taint is a hop's taint as it is being worked out.
type taint struct {
	tainted bool
	sources []string
}

// add records a source (the hop is tainted even when the list is full).
func (t *taint) add(srcs ...string) {
	t.tainted = true
	for _, s := range srcs {
		switch {
		case slices.Contains(t.sources, s):
		case len(t.sources) < maxTaintSources-1:
			t.sources = append(t.sources, s)
		case !slices.Contains(t.sources, taintMore):
			t.sources = append(t.sources, taintMore)
		}
	}
}

// inherit adds the taint of a hop above: a parent task (or the hop a run
// was spawned from).
func (t *taint) inherit(h *ledger.Hop) {
	if h != nil && h.Tainted {
		t.add(h.TaintSources...)
	}
}

// invokeTaint is what a new hop is tainted by before its message is
// scanned: the task it is delegated from, an untrusted caller, and the
// ingress for a call from outside. A delegation submitted through the
// ingress (an agent calling a model or tool over HTTP from inside its
// task, or an A2A agent delegating) is the registered agent's own call on
// a hop delivered to it: it carries its parent's taint, not the
// ingress's.
func invokeTaint(parent *ledger.Hop, caller *broker.Identity, env *schemas.Envelope) taint {
	var t taint
	t.inherit(parent)
	if env.Via == schemas.ViaIngress && env.ParentHopID == "" && env.SpawnedFrom == nil {
		t.add(TaintIngress)
	}
	if caller.Untrusted {
		t.add(taintUntrusted + caller.ID)
	}
	return t
}

// flagged adds the rules of a scan that let the message through but found
// something in it (flag, redact): what follows may carry it.
func (t *taint) flagged(res *guardrail.Result) {
	if res.Verdict != guardrail.Flagged && res.Verdict != guardrail.Redacted {
		return
	}
	for _, id := range res.RuleIDs() {
		t.add(taintGuardrail + id)
	}
}

// guardrailRecord is what the ledger keeps of a scan: nil when nothing was
// found. Excerpts are left out; the path and the digest of each match
// locate it in the recorded envelope.
func guardrailRecord(res *guardrail.Result) *schemas.Guardrail {
	if res.Verdict == guardrail.Allow || res.Verdict == "" {
		return nil
	}
	g := &schemas.Guardrail{Verdict: string(res.Verdict), Rules: res.RuleIDs(), OriginalSHA256: res.OriginalSHA256}
	if res.Verdict == guardrail.Redacted {
		g.RedactedSHA256 = res.RedactedSHA256
	}
	for _, f := range res.Findings {
		g.Findings = append(g.Findings, schemas.GuardrailFinding{Rule: f.Rule, Action: string(f.Action), Path: f.Path, MatchSHA256: f.MatchSHA256})
	}
	return g
}

// guardrailDenial is the denial of a blocked message.
func guardrailDenial(res *guardrail.Result, what string) *Verdict {
	return Deny(schemas.ReasonGuardrail, "guardrail blocked the %s: %v", what, res.RuleIDs())
}

// redactedEnvelope is env with its message (or its result) replaced by the
// redacted one, unsigned: the gateway changed it, so the sender's
// signature would not hold. The ledger keeps the original, signed, beside
// it.
func redactedEnvelope(env *schemas.Envelope, message json.RawMessage, result *schemas.Result) ([]byte, error) {
	c := *env
	c.Signature = ""
	if message != nil {
		c.Message = message
	}
	if result != nil {
		c.Result = result
	}
	b, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode the redacted envelope: %w", err)
	}
	return b, nil
}

// scanReply scans a reply's result (status, output and error) as the
// replier's outbound message. A redaction comes back as the redacted
// result.
func (r *Rules) scanReply(scan ScanFunc, hop *ledger.Hop, env *schemas.Envelope) (guardrail.Result, *schemas.Result) {
	raw, err := json.Marshal(env.Result)
	if err != nil {
		// A decoded result always encodes; scan nothing rather than fail.
		return guardrail.Result{}, nil
	}
	res := scan(guardrail.Request{Direction: guardrail.Outbound, From: hop.To, To: hop.From, Message: raw})
	if res.Verdict != guardrail.Redacted {
		return res, nil
	}
	var out schemas.Result
	if err := json.Unmarshal(res.Redacted, &out); err != nil || !out.Status.Valid() {
		// Redaction keeps the shape; if it did not, deliver nothing of it.
		res.Verdict = guardrail.Blocked
		return res, nil
	}
	return res, &out
}

// scanner returns how this decision scans messages: nil when the rules
// have no guardrails.
func (r *Rules) scanner(in Inputs) ScanFunc {
	switch {
	case r.Guard == nil:
		return nil
	case in.Scan != nil:
		return in.Scan
	}
	return r.Guard.Scan
}
