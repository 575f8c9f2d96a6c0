package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType names a ledger event.
type EventType string

// Ledger event types.
const (
	EventRunStarted       EventType = "run.started"
	EventHopAllowed       EventType = "hop.allowed"
	EventHopDenied        EventType = "hop.denied"
	EventHopCompleted     EventType = "hop.completed"
	EventHopTimedOut      EventType = "hop.timed_out"
	EventRunLimitBreached EventType = "run.limit_breached"
	EventRunHalted        EventType = "run.halted"
	EventRunCompleted     EventType = "run.completed"
	// EventHopPending records a hop that a policy holds for a human's
	// approval (data HopDecision with Approval set); EventHopApproved
	// releases it to its target, EventHopRejected closes it unforwarded.
	EventHopPending  EventType = "hop.pending"
	EventHopApproved EventType = "hop.approved"
	EventHopRejected EventType = "hop.rejected"
	// EventHopRetried records that an open hop's attempt failed (timed out,
	// or failed with an error class its target's retry policy retries) and
	// that the gateway delivers it again to the same target at RetryAt;
	// the caller is not told.
	EventHopRetried EventType = "hop.retried"
	// EventHopRerouted records that an open hop's target was unavailable
	// and the hop was re-routed to a fallback target the policy allows.
	EventHopRerouted EventType = "hop.rerouted"
	// EventHopProgress records a progress of an open hop its target sent
	// and the gateway forwarded to the caller (n-th of the hop). It closes
	// nothing.
	EventHopProgress EventType = "hop.progress"
)

// EventTypes lists every event type in the order a run may produce them.
var EventTypes = []EventType{
	EventRunStarted, EventHopAllowed, EventHopDenied, EventHopCompleted,
	EventHopTimedOut, EventRunLimitBreached, EventRunHalted, EventRunCompleted,
	EventHopPending, EventHopApproved, EventHopRejected, EventHopRetried, EventHopRerouted,
	EventHopProgress,
}

// Valid reports whether t is a known event type.
func (t EventType) Valid() bool {
	for _, k := range EventTypes {
		if t == k {
			return true
		}
	}
	return false
}

// GatewayActor is who the ledger and the alerts name when the gateway
// itself acted (HopCompleted.By, RunHalted.By, Alert.By): it closed a hop
// of a halted run, or halted a run after a breach.
const GatewayActor = "gateway"

// GenesisHash is the prev_hash of a run's first event.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Event is one entry of a run's ledger. Its hash is SHA-256 over the previous
// event's hash, a newline, and the event's compact JSON without the "hash"
// member, which is always the object's last member (see ledger.Hash).
type Event struct {
	// Version is the schema version, always 1.
	Version int `json:"v"`
	// RunID is the run the event belongs to.
	RunID string `json:"run_id"`
	// Seq is the event's position in the run, from 1.
	Seq uint64 `json:"seq"`
	// Type says which data the event carries.
	Type EventType `json:"type"`
	// At is when the gateway recorded the event (UTC).
	At time.Time `json:"at"`
	// HopID is the hop the event is about, if any.
	HopID string `json:"hop_id,omitempty"`
	// Data is the type-specific payload (RunStarted, HopDecision, ...).
	Data json.RawMessage `json:"data"`
	// PrevHash is the hash of the previous event, or GenesisHash.
	PrevHash string `json:"prev_hash"`
	// Hash chains this event to PrevHash. Empty until the ledger seals it.
	Hash string `json:"hash,omitempty"`

	// decoded is the data the event was built with (NewEvent, EventOf), so
	// that the writer never parses its own event back. Readers of stored
	// events decode Data.
	decoded any
}

// PrincipalType is the kind of a registered identity.
type PrincipalType string

// Principal types. They are also the Cedar entity type names.
const (
	TypeUser  PrincipalType = "User"
	TypeAgent PrincipalType = "Agent"
	TypeTool  PrincipalType = "Tool"
	TypeModel PrincipalType = "Model"
)

// RunStarted is the data of run.started.
type RunStarted struct {
	RootHopID  string        `json:"root_hop_id"`
	Caller     string        `json:"caller"`
	CallerType PrincipalType `json:"caller_type"`
	// OnBehalfOf is the run's principal: the user that started it, or the
	// agent when an agent started it on its own account.
	OnBehalfOf string `json:"on_behalf_of"`
	// Workflow is the workflow the run's entry agent belongs to.
	Workflow string `json:"workflow,omitempty"`
	// Limits are the run limits in force when the run started.
	Limits *RunLimits `json:"limits,omitempty"`
	// TraceID is the OpenTelemetry trace id of the run, when tracing is on.
	TraceID string `json:"trace_id,omitempty"`
	// SpawnedFrom is the run and hop an agent started this run from, inside
	// a task of its; the run inherits that run's principal, workflow and
	// limits, and its first hop continues that hop's depth and ancestry.
	SpawnedFrom *SpawnRef `json:"spawned_from,omitempty"`
}

// SpawnRef names the hop of another run that a run was started from.
type SpawnRef struct {
	RunID string `json:"run_id"`
	HopID string `json:"hop_id"`
}

// RunLimits is the snapshot of a run's limits recorded at run.started.
type RunLimits struct {
	MaxDelegationDepth  int     `json:"max_delegation_depth"`
	MaxHops             int     `json:"max_hops,omitempty"`
	MaxTotalTokens      int64   `json:"max_total_tokens,omitempty"`
	MaxCostUSD          float64 `json:"max_cost_usd,omitempty"`
	MaxWallClockSeconds int     `json:"max_wall_clock_seconds,omitempty"`
	MaxEdgeRepeats      int     `json:"max_edge_repeats,omitempty"`
	OnBreach            string  `json:"on_breach,omitempty"`
}

// Action is the Cedar action of a hop, chosen by the target's type.
type Action string

// Cedar actions.
const (
	ActionInvoke    Action = "invoke"
	ActionCallTool  Action = "call_tool"
	ActionCallModel Action = "call_model"
	// ActionStartRun is asked, besides the hop's own action, when an agent
	// starts a run.
	ActionStartRun Action = "start_run"
)

// HopDecision is the data of hop.allowed and hop.denied: what was asked,
// the context the gateway derived, and the verdict with its reasons.
type HopDecision struct {
	// Kind is the kind of the submission decided on.
	Kind        Kind   `json:"kind,omitempty"`
	ParentHopID string `json:"parent_hop_id,omitempty"`
	From        string `json:"from,omitempty"`
	To          string `json:"to,omitempty"`
	// The Cedar attributes of caller and target at decision time (type,
	// team, tags), so that cost per team and a policy what-if are
	// answerable from the ledger alone.
	FromType   PrincipalType `json:"from_type,omitempty"`
	FromTeam   string        `json:"from_team,omitempty"`
	FromTags   []string      `json:"from_tags,omitempty"`
	ToType     PrincipalType `json:"to_type,omitempty"`
	ToTeam     string        `json:"to_team,omitempty"`
	ToTags     []string      `json:"to_tags,omitempty"`
	Action     Action        `json:"action,omitempty"`
	Depth      int           `json:"depth"`
	Ancestry   []string      `json:"ancestry,omitempty"`
	OnBehalfOf string        `json:"on_behalf_of,omitempty"`
	// Reason and Message explain a denial.
	Reason  Reason `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// PolicyIDs are the Cedar policies that decided.
	PolicyIDs []string `json:"policy_ids,omitempty"`
	// Audit lists the denials that audit mode recorded without enforcing.
	Audit []Finding `json:"audit,omitempty"`
	// Cycle is set when the target already appears in the ancestry.
	Cycle bool `json:"cycle,omitempty"`
	// Breach names the run limit a denial tripped, with the value that
	// tripped it; the run's on_breach then decides whether it halts.
	Breach *Breach `json:"breach,omitempty"`
	// Deadline is when an allowed hop times out.
	Deadline time.Time `json:"deadline,omitzero"`
	// Estimate is the spend reserved against the run budget at admission.
	Estimate *Usage `json:"estimate,omitempty"`
	// SubmitSeq is the SUBMIT stream sequence of the submission.
	SubmitSeq uint64 `json:"submit_seq,omitempty"`
	// Envelope is the submission in wire form, signature included, so an
	// auditor can verify it. Absent when the submission was not JSON.
	Envelope json.RawMessage `json:"envelope,omitempty"`
	// Raw holds the first bytes of a submission that was not JSON.
	Raw []byte `json:"raw,omitempty"`
	// Size and Digest describe the submission as received (hex SHA-256 of
	// its wire form, or of the raw bytes when it was not JSON).
	Size   int    `json:"size"`
	Digest string `json:"digest"`
	// TraceID and SpanID locate the hop's span in the run's trace;
	// ParentSpanID is the span of the caller that made the hop.
	TraceID      string `json:"trace_id,omitempty"`
	SpanID       string `json:"span_id,omitempty"`
	ParentSpanID string `json:"parent_span_id,omitempty"`
	// Guardrail is what the guardrails found in the invoke's message.
	Guardrail *Guardrail `json:"guardrail,omitempty"`
	// Tainted is set when the hop's content may come from an untrusted
	// source; TaintSources says which (see docs/guardrails.md).
	Tainted      bool     `json:"tainted,omitempty"`
	TaintSources []string `json:"taint_sources,omitempty"`
	// Redacted is the envelope delivered instead of Envelope when a
	// guardrail redacted the message.
	Redacted json.RawMessage `json:"redacted,omitempty"`
	// Approval is set on hop.pending: who may release the hop, and until
	// when.
	Approval *Approval `json:"approval,omitempty"`
}

// Approval is what a hop held for a human's approval waits for: an
// operator of one of the groups (any operator when none is named) to
// approve or reject it before the deadline, past which it is rejected.
type Approval struct {
	// Approvers are the operator groups the requiring policies name.
	Approvers []string `json:"approvers,omitempty"`
	// PolicyIDs are the permits that require the approval.
	PolicyIDs []string  `json:"policy_ids"`
	Deadline  time.Time `json:"deadline"`
}

// HopApproved is the data of hop.approved: an operator released a held
// hop; it is delivered to its target and open until Deadline.
type HopApproved struct {
	By       string    `json:"by"`
	Note     string    `json:"note,omitempty"`
	Deadline time.Time `json:"deadline"`
}

// HopRejected is the data of hop.rejected: a held hop closed unforwarded,
// by an operator or, past its approval deadline, by the gateway. Its
// caller is told with reason approval.
type HopRejected struct {
	By      string `json:"by"`
	Message string `json:"message"`
}

// Delivered is the envelope the hop's target was given: the redacted one
// when a guardrail redacted the message, else the one received.
func (d *HopDecision) Delivered() json.RawMessage {
	if d.Redacted != nil {
		return d.Redacted
	}
	return d.Envelope
}

// Guardrail is what the guardrails found in a message, and what was done:
// flag (recorded, the hop goes on, tainted), redact (the matches replaced
// in what is delivered; both digests recorded) or block (denied).
type Guardrail struct {
	Verdict        string             `json:"verdict"`
	Rules          []string           `json:"rules"`
	Findings       []GuardrailFinding `json:"findings,omitempty"`
	OriginalSHA256 string             `json:"original_sha256,omitempty"`
	RedactedSHA256 string             `json:"redacted_sha256,omitempty"`
}

// GuardrailFinding is one match of a guardrail rule.
type GuardrailFinding struct {
	Rule   string `json:"rule"`
	Action string `json:"action"`
	// Path is where in the message (RFC 6901), MatchSHA256 the digest of
	// what matched (the match itself is not recorded).
	Path        string `json:"path,omitempty"`
	MatchSHA256 string `json:"match_sha256,omitempty"`
}

// Breach is a run limit and the value that went past its bound.
type Breach struct {
	Limit string  `json:"limit"`
	Value float64 `json:"value"`
	Bound float64 `json:"bound"`
}

// Finding is one denial found while deciding a hop.
type Finding struct {
	Reason    Reason   `json:"reason"`
	Message   string   `json:"message"`
	PolicyIDs []string `json:"policy_ids,omitempty"`
}

// HopCompleted is the data of hop.completed: a reply, a cancel, or the
// gateway closing the hop of a halted run.
type HopCompleted struct {
	Status TaskState `json:"status"`
	// By is who closed the hop: the callee (reply), the caller (cancel) or
	// the gateway (GatewayActor).
	By        string `json:"by"`
	Usage     *Usage `json:"usage,omitempty"`
	LatencyMS int64  `json:"latency_ms"`
	Error     string `json:"error,omitempty"`
	SubmitSeq uint64 `json:"submit_seq,omitempty"`
	// Envelope is the reply or cancel in wire form.
	Envelope json.RawMessage `json:"envelope,omitempty"`
	Digest   string          `json:"digest,omitempty"`
	// Guardrail is what the guardrails found in the reply's output.
	Guardrail *Guardrail `json:"guardrail,omitempty"`
	// Tainted is set when the reply carries content from an untrusted
	// source: the caller's task it answers is tainted from then on.
	Tainted      bool     `json:"tainted,omitempty"`
	TaintSources []string `json:"taint_sources,omitempty"`
	// Redacted is the reply envelope delivered instead of Envelope when a
	// guardrail redacted its output.
	Redacted json.RawMessage `json:"redacted,omitempty"`
	// Settles marks the late reply of a hop that the run's halt closed
	// while it was open: what its target used before the cancel reached
	// it (a model stream cut mid-way) is charged to the run. It closes
	// nothing and is delivered to nobody (the caller was told of the halt);
	// only the first one counts.
	Settles bool `json:"settles,omitempty"`
}

// Delivered is the envelope the hop's other party was given: the one the
// gateway made (a redacted reply, or a failed one for a blocked reply)
// when there is one, else the one received.
func (d *HopCompleted) Delivered() json.RawMessage {
	if d.Redacted != nil {
		return d.Redacted
	}
	return d.Envelope
}

// HopProgress is the data of hop.progress: the N-th progress of the hop,
// sent by its target (By), in wire form (Envelope; Redacted when a
// guardrail redacted it), with what the guardrails found.
type HopProgress struct {
	N         int             `json:"n"`
	By        string          `json:"by"`
	SubmitSeq uint64          `json:"submit_seq,omitempty"`
	Envelope  json.RawMessage `json:"envelope"`
	Digest    string          `json:"digest,omitempty"`
	Guardrail *Guardrail      `json:"guardrail,omitempty"`
	Redacted  json.RawMessage `json:"redacted,omitempty"`
}

// Delivered is the progress envelope the caller was given: the redacted
// one when a guardrail redacted it.
func (d *HopProgress) Delivered() json.RawMessage {
	if d.Redacted != nil {
		return d.Redacted
	}
	return d.Envelope
}

// HopRetried is the data of hop.retried: attempt Attempt-1 of the hop
// failed (Cause timeout, or failed with ErrorClass), and attempt Attempt
// is delivered to the same target at RetryAt, with Deadline as its
// deadline. A failed reply that caused it is recorded (SubmitSeq, Digest)
// so that its redelivery is recognised.
type HopRetried struct {
	Attempt    int       `json:"attempt"`
	Cause      string    `json:"cause"`
	Error      string    `json:"error,omitempty"`
	ErrorClass string    `json:"error_class,omitempty"`
	RetryAt    time.Time `json:"retry_at"`
	Deadline   time.Time `json:"deadline"`
	SubmitSeq  uint64    `json:"submit_seq,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	// Usage is what the failed attempt reported: spent all the same.
	Usage *Usage `json:"usage,omitempty"`
}

// Retry causes.
const (
	RetryTimeout = "timeout"
	RetryFailed  = "failed"
)

// HopRerouted is the data of hop.rerouted: the hop's target From was
// unavailable (Cause: timeout after its retries, no consumer bound, or
// its circuit open), and the hop now goes to the fallback To, which the
// policies (PolicyIDs) allow, with Deadline as its deadline.
type HopRerouted struct {
	From string `json:"from"`
	To   string `json:"to"`
	// ToType is the fallback's type (absent in events recorded before it
	// was added).
	ToType    PrincipalType `json:"to_type,omitempty"`
	Cause     string        `json:"cause"`
	PolicyIDs []string      `json:"policy_ids,omitempty"`
	// Skipped are fallbacks passed over, each with why (policy, circuit).
	Skipped  []string  `json:"skipped,omitempty"`
	Deadline time.Time `json:"deadline"`
	// Attempts counts the deliveries made to From.
	Attempts int `json:"attempts,omitempty"`
}

// Re-route causes.
const (
	RerouteTimeout    = "timeout"
	RerouteNoConsumer = "no_consumer"
	RerouteCircuit    = "circuit_open"
)

// HopTimedOut is the data of hop.timed_out.
type HopTimedOut struct {
	Deadline  time.Time `json:"deadline"`
	LatencyMS int64     `json:"latency_ms"`
}

// RunLimitBreached is the data of run.limit_breached.
type RunLimitBreached struct {
	// Limit names the limit (max_hops, max_cost_usd, invoke_rate_limit, ...).
	Limit  string  `json:"limit"`
	Value  float64 `json:"value"`
	Bound  float64 `json:"bound"`
	Reason Reason  `json:"reason"`
	From   string  `json:"from,omitempty"`
	To     string  `json:"to,omitempty"`
	// Action is what the gateway did: "halt" or "deny".
	Action string `json:"action"`
	// HopID is the hop whose admission or reply tripped the limit.
	HopID string `json:"hop_id,omitempty"`
}

// RunHalted is the data of run.halted.
type RunHalted struct {
	Reason string `json:"reason"`
	// By is GatewayActor for a breach, or the operator who pulled the
	// switch.
	By string `json:"by"`
	// Limit is the limit that tripped, when a breach halted the run.
	Limit string `json:"limit,omitempty"`
	// OpenHops are the hops cancelled by the halt.
	OpenHops []string `json:"open_hops,omitempty"`
}

// RunCompleted is the data of run.completed.
type RunCompleted struct {
	Status     TaskState `json:"status"`
	Hops       int       `json:"hops"`
	Tokens     int64     `json:"tokens"`
	CostUSD    float64   `json:"cost_usd"`
	DurationMS int64     `json:"duration_ms"`
}

// NewEvent builds an unsealed event carrying data.
func NewEvent(run string, typ EventType, hop string, at time.Time, data any) (Event, error) {
	raw, err := Encode(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s data: %w", typ, err)
	}
	return Event{Version: Version, RunID: run, Type: typ, At: at.UTC(), HopID: hop, Data: raw, decoded: data}, nil
}

// EventOf builds an unsealed event carrying data, which is encoded once,
// when the event is sealed (see EncodeData).
func EventOf(run string, typ EventType, hop string, at time.Time, data any) Event {
	return Event{Version: Version, RunID: run, Type: typ, At: at.UTC(), HopID: hop, decoded: data}
}

// EncodeData encodes the data the event was built with into Data, unless
// Data is already set. Encoding fails only for data no gateway writes (a
// NaN or infinite number).
func (e *Event) EncodeData() error {
	if len(e.Data) > 0 {
		return nil
	}
	if e.decoded == nil {
		return fmt.Errorf("%w: %s event has no data", ErrMalformed, e.Type)
	}
	var raw []byte
	var err error
	if d, ok := e.decoded.(*HopDecision); ok {
		raw, err = d.MarshalData()
	} else {
		raw, err = Encode(e.decoded)
	}
	if err != nil {
		return fmt.Errorf("encode %s data: %w", e.Type, err)
	}
	e.Data = raw
	return nil
}

// NewEventData returns a pointer to the zero data value of an event type,
// nil for an unknown type: what an event's data decodes into.
func NewEventData(t EventType) any {
	switch t {
	case EventRunStarted:
		return &RunStarted{}
	case EventHopAllowed, EventHopDenied, EventHopPending:
		return &HopDecision{}
	case EventHopApproved:
		return &HopApproved{}
	case EventHopRejected:
		return &HopRejected{}
	case EventHopCompleted:
		return &HopCompleted{}
	case EventHopTimedOut:
		return &HopTimedOut{}
	case EventHopRetried:
		return &HopRetried{}
	case EventHopRerouted:
		return &HopRerouted{}
	case EventHopProgress:
		return &HopProgress{}
	case EventRunLimitBreached:
		return &RunLimitBreached{}
	case EventRunHalted:
		return &RunHalted{}
	case EventRunCompleted:
		return &RunCompleted{}
	}
	return nil
}

// DecodeData decodes the event's data into its type-specific struct (one of
// *RunStarted, *HopDecision, *HopCompleted, *HopTimedOut,
// *RunLimitBreached, *RunHalted, *RunCompleted, *HopApproved,
// *HopRejected, *HopRetried, *HopRerouted).
//
// Callers must not modify what it returns.
func (e *Event) DecodeData() (any, error) {
	if e.decoded != nil {
		return e.decoded, nil
	}
	v := NewEventData(e.Type)
	if v == nil {
		return nil, fmt.Errorf("%w: unknown event type %q", ErrMalformed, e.Type)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return nil, malformed(string(e.Type)+" data", err)
	}
	return v, nil
}

// DecodeEvent decodes a ledger event and checks its version and type.
func DecodeEvent(data []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, malformed("event", err)
	}
	if e.Version != Version {
		return nil, versionErr(e.Version)
	}
	if !e.Type.Valid() {
		return nil, fmt.Errorf("%w: unknown event type %q", ErrMalformed, e.Type)
	}
	return &e, nil
}
