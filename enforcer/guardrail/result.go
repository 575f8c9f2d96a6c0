package guardrail

import (
	"encoding/json"
	"slices"
)

// Result is what a scan decided: a value, never an error. A blocked
// message is a Result with Verdict Blocked; the caller denies the hop with
// reason guardrail and records RuleIDs.
type Result struct {
	// Verdict is the strongest action among the findings.
	Verdict Verdict `json:"verdict"`
	// Findings lists what was found, in message order, one per rule and
	// place (repeats are counted), at most Limits.MaxFindings.
	Findings []Finding `json:"findings,omitempty"`
	// Dropped counts findings beyond Limits.MaxFindings (they still count
	// for the verdict).
	Dropped int `json:"dropped,omitempty"`
	// Redacted is the message with every redacted match replaced, when the
	// verdict is Redacted: valid JSON of the same shape as the original.
	Redacted json.RawMessage `json:"-"`
	// OriginalSHA256 is the hex SHA-256 of the message as scanned.
	OriginalSHA256 string `json:"original_sha256,omitempty"`
	// RedactedSHA256 is the hex SHA-256 of Redacted, when there is one.
	RedactedSHA256 string `json:"redacted_sha256,omitempty"`
	// Truncated: a bound of Limits was hit and part of the message was not
	// scanned (also reported as the finding scanner/truncated).
	Truncated bool `json:"truncated,omitempty"`
	// Malformed: the message is not valid JSON and was scanned as text
	// (also reported as the finding scanner/malformed).
	Malformed bool `json:"malformed,omitempty"`
	// ScannedBytes is how much text was matched against the rules,
	// decoded layers included.
	ScannedBytes int `json:"scanned_bytes"`
}

// Blocked reports whether the message must be denied.
func (r *Result) Blocked() bool { return r.Verdict == Blocked }

// RuleIDs returns the distinct rule ids of the findings, sorted: what the
// ledger records. Rules whose action is off are never findings.
func (r *Result) RuleIDs() []string {
	ids := make([]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		ids = append(ids, f.Rule)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Finding is one rule matching at one place of the message.
type Finding struct {
	// Rule is the rule id, "pack/rule".
	Rule string `json:"rule"`
	// Pack is the rule's pack.
	Pack string `json:"pack"`
	// Severity is the rule's severity.
	Severity Severity `json:"severity"`
	// Action is what the policy does with it.
	Action Action `json:"action"`
	// Path is the RFC 6901 JSON Pointer of the string the match is in
	// ("/parts/0/text", "/artifacts/1/parts/0/data/notes"); empty for the
	// whole message.
	Path string `json:"path"`
	// Key: the match is in the object key at Path, not in its value.
	Key bool `json:"key,omitempty"`
	// Layer says how the matched text was hidden, outermost first
	// ("base64", "html-comment/base64"); empty for plain text.
	Layer string `json:"layer,omitempty"`
	// Excerpt is the matched text, bounded (Limits.ExcerptBytes) and with
	// control characters escaped; for a secret only its first characters.
	Excerpt string `json:"excerpt,omitempty"`
	// MatchSHA256 is the hex SHA-256 of the whole matched text, so that a
	// finding can be correlated without the ledger holding the text.
	MatchSHA256 string `json:"match_sha256,omitempty"`
	// Count is how many times the rule matched at this place.
	Count int `json:"count"`
	// Detail is the external checker's description of its finding.
	Detail string `json:"detail,omitempty"`
}
