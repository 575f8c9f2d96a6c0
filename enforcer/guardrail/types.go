package guardrail

// Direction says which way a message travels through the agent whose
// policy applies: an invoke into the agent, or the agent's reply.
type Direction string

// The directions.
const (
	// Inbound is an invoke message: the policy of its target applies.
	Inbound Direction = "inbound"
	// Outbound is a reply (its output, artifacts and history): the policy
	// of the replying agent applies.
	Outbound Direction = "outbound"
)

func (d Direction) valid() bool { return d == Inbound || d == Outbound }

// Action is what a finding of a rule does to the message.
type Action string

// The actions, from weakest to strongest.
const (
	// Off disables the rule: it is not reported.
	Off Action = "off"
	// Flag lets the message through and records the finding.
	Flag Action = "flag"
	// Redact replaces the match in the message (with [redacted:rule-id])
	// and records the finding and both digests. A finding that cannot be
	// replaced in place (in an object key, a whole-structure finding, an
	// external checker's finding, a malformed or truncated message) is
	// blocked instead: redaction never lets through what it did not remove.
	Redact Action = "redact"
	// Block denies the message (reason guardrail) and records the finding.
	Block Action = "block"
)

func (a Action) rank() int {
	switch a {
	case Flag:
		return 1
	case Redact:
		return 2
	case Block:
		return 3
	}
	return 0
}

func (a Action) valid() bool { return a == Off || a == Flag || a == Redact || a == Block }

// Verdict is the outcome of a scan: the strongest action of its findings.
type Verdict string

// The verdicts.
const (
	// Allow: nothing found (or only rules that are off).
	Allow Verdict = "allow"
	// Flagged: findings recorded, the message goes through unchanged.
	Flagged Verdict = "flag"
	// Redacted: the message goes through as Result.Redacted.
	Redacted Verdict = "redact"
	// Blocked: the message is denied.
	Blocked Verdict = "block"
)

func verdictOf(a Action) Verdict {
	switch a {
	case Flag:
		return Flagged
	case Redact:
		return Redacted
	case Block:
		return Blocked
	}
	return Allow
}

// Severity ranks how dangerous a rule's finding is.
type Severity string

// The severities.
const (
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

func (s Severity) valid() bool { return s == Low || s == Medium || s == High || s == Critical }

// HookMode says whether and how the external checker is consulted for an
// agent.
type HookMode string

// The hook modes.
const (
	// HookOff: the external checker is not called.
	HookOff HookMode = "off"
	// HookFailOpen: the checker is called; when it fails (timeout, busy,
	// error, malformed answer) the message is flagged and goes on.
	HookFailOpen HookMode = "fail-open"
	// HookFailClosed: the checker is called; when it fails the message is
	// blocked.
	HookFailClosed HookMode = "fail-closed"
)

func (m HookMode) valid() bool { return m == HookOff || m == HookFailOpen || m == HookFailClosed }

func (m HookMode) String() string { return string(m) }

func (a Action) String() string    { return string(a) }
func (d Direction) String() string { return string(d) }
