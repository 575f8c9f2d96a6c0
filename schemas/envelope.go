package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Version is the schema version of the gateway's own records (ledger
// events, deliveries, alerts, control requests): the one this package
// writes and the only one it reads.
const Version = 1

// Envelope schema versions. EnvelopeVersion (2) carries A2A v1.0 messages
// and may say it came through the HTTP ingress (Via); EnvelopeV1 carries
// A2A v0.3 messages. The enforcer admits v1 submissions until
// EnvelopeV1Until; runs recorded with v1 envelopes replay and verify
// forever.
const (
	EnvelopeVersion = 2
	EnvelopeV1      = 1
)

// EnvelopeV1Until is the end of the deprecation window of v1 envelopes:
// from then on the enforcer denies v1 submissions (docs/wire.md).
var EnvelopeV1Until = time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)

// ViaIngress is the Via of an envelope the gateway's HTTP ingress
// submitted on behalf of an authenticated HTTP caller, signed with the
// ingress key.
const ViaIngress = "a2a-ingress"

// Kind says what a submission asks of the gateway.
type Kind string

// Submission kinds.
const (
	// KindInvoke opens a hop: the caller asks the target to do a task.
	KindInvoke Kind = "invoke"
	// KindReply closes a hop: the target answers its caller.
	KindReply Kind = "reply"
	// KindCancel closes a hop from the caller's side.
	KindCancel Kind = "cancel"
	// KindProgress reports intermediate progress of an open hop to its
	// caller: only the hop's target sends it, it closes nothing, and the
	// gateway bounds how many a hop may carry (StateWorking result whose
	// output is one A2A v1.0 TaskStatusUpdateEvent or
	// TaskArtifactUpdateEvent).
	KindProgress Kind = "progress"
)

// Valid reports whether k is a known submission kind.
func (k Kind) Valid() bool {
	return k == KindInvoke || k == KindReply || k == KindCancel || k == KindProgress
}

// TaskState is the A2A task state a reply reports. Only the terminal states
// close a hop.
type TaskState string

// Terminal A2A task states (A2A v0.3 TaskState values).
const (
	StateCompleted TaskState = "completed"
	StateFailed    TaskState = "failed"
	StateCanceled  TaskState = "canceled"
	StateRejected  TaskState = "rejected"
)

// StateWorking is the state of a progress submission's result: the hop
// goes on.
const StateWorking TaskState = "working"

// Valid reports whether s is a terminal task state a reply may carry.
func (s TaskState) Valid() bool {
	switch s {
	case StateCompleted, StateFailed, StateCanceled, StateRejected:
		return true
	}
	return false
}

// Envelope is what an agent publishes on its submit subject. It names only
// what the agent may assert: who it is, whom it calls, the hop it is working
// on and the content. Run state, depth, ancestry and the human principal are
// derived by the gateway from the ledger and never read from here.
type Envelope struct {
	// Version is the schema version: EnvelopeVersion, or EnvelopeV1 during
	// its deprecation window.
	Version int `json:"v"`
	// Via is empty for what the sender submitted itself, and ViaIngress
	// for what the HTTP ingress submitted on its behalf (signed with the
	// ingress key, not the sender's). Version 2 only.
	Via string `json:"via,omitempty"`
	// Kind is invoke, reply or cancel.
	Kind Kind `json:"kind"`
	// HopID names the hop. For an invoke it is derived from the hop's
	// scope and key (DeriveHopID), so it is unique across every run and a
	// re-run of the same delegation names the same hop; for a reply or
	// cancel it is the hop being answered or cancelled.
	HopID string `json:"hop_id"`
	// RunID names the run for a root invoke (no parent), where it is
	// required. For every other submission it is advisory: the run is the
	// one the parent hop belongs to.
	RunID string `json:"run_id,omitempty"`
	// ParentHopID is the hop the caller is working on when it delegates. It
	// must have been delivered to the caller. Empty for a root invoke.
	ParentHopID string `json:"parent_hop_id,omitempty"`
	// HopKey makes an invoke unique within its parent task (or its run, for
	// a root invoke): the delegation's ordinal ("0", "1", ...) for the Go
	// client, the A2A messageId at the HTTP ingress. Empty means "0".
	HopKey string `json:"hop_key,omitempty"`
	// SpawnedFrom, on a root invoke by an agent, names the hop (of another
	// run) the agent is working on as it starts the run. The gateway checks
	// it, and the new run continues that hop's principal, depth and budget
	// instead of starting afresh.
	SpawnedFrom *SpawnRef `json:"spawned_from,omitempty"`
	// From is the sender's id; it must equal the caller token of the subject.
	From string `json:"from"`
	// To is the target's id: an agent, tool or model for an invoke.
	To string `json:"to"`
	// Message is the A2A message of an invoke: an A2A v1.0 Message object
	// (v2), or an A2A v0.3 one (v1).
	Message json.RawMessage `json:"message,omitempty"`
	// Result is the outcome a reply reports.
	Result *Result `json:"result,omitempty"`
	// Usage is what the callee spent on the hop, reported with its reply.
	Usage *Usage `json:"usage,omitempty"`
	// Estimate is what the caller expects the hop to spend; the gateway
	// reserves it against the run budget at admission.
	Estimate *Usage `json:"estimate,omitempty"`
	// SentAt is when the sender created the envelope.
	SentAt time.Time `json:"sent_at"`
	// Signature is the sender's Ed25519 signature over SigningBytes, in
	// unpadded base64url. Required when the sender is registered with a key.
	Signature string `json:"signature,omitempty"`
}

// Result is the outcome of a hop as reported by the callee.
type Result struct {
	// Status is the terminal A2A task state.
	Status TaskState `json:"status"`
	// Output is the A2A Task or Message the callee produced (A2A v1.0 for
	// v2 envelopes, v0.3 for v1).
	Output json.RawMessage `json:"output,omitempty"`
	// Error explains a failed or rejected task.
	Error string `json:"error,omitempty"`
	// ErrorClass classifies a failure ("rate_limited",
	// "upstream_unavailable", ...): a failed reply whose class the
	// target's retry policy lists is retried by the gateway instead of
	// reaching the caller (docs/limits.md, retries).
	ErrorClass string `json:"error_class,omitempty"`
}

// Usage is token and money spend.
type Usage struct {
	InputTokens  int64   `json:"input_tokens,omitempty"`
	OutputTokens int64   `json:"output_tokens,omitempty"`
	CostUSD      float64 `json:"cost_usd,omitempty"`
}

// Tokens is the sum of input and output tokens.
func (u *Usage) Tokens() int64 {
	if u == nil {
		return 0
	}
	return u.InputTokens + u.OutputTokens
}

// Cost is the cost in USD, zero for a nil usage.
func (u *Usage) Cost() float64 {
	if u == nil {
		return 0
	}
	return u.CostUSD
}

// Bounds of one usage report. Sums of usage are kept in int64 and float64;
// with each report bounded, no sum of them can wrap or lose its sign.
const (
	// MaxTokens bounds each token count of a usage (about 10^12).
	MaxTokens = 1 << 40
	// MaxCostUSD bounds the cost of a usage.
	MaxCostUSD = 1e9
)

func (u *Usage) validate(field string) error {
	if u == nil {
		return nil
	}
	var errs []error
	if u.InputTokens < 0 || u.OutputTokens < 0 {
		errs = append(errs, fmt.Errorf("%s: token counts must not be negative", field))
	}
	if u.InputTokens > MaxTokens || u.OutputTokens > MaxTokens {
		errs = append(errs, fmt.Errorf("%s: a token count is over %d", field, int64(MaxTokens)))
	}
	if u.CostUSD < 0 || math.IsNaN(u.CostUSD) || math.IsInf(u.CostUSD, 0) || u.CostUSD > MaxCostUSD {
		errs = append(errs, fmt.Errorf("%s: cost_usd must be a finite number from 0 to %g", field, float64(MaxCostUSD)))
	}
	return errors.Join(errs...)
}

// Validate checks the envelope's own consistency (ids, kind, required parts)
// and returns every problem at once, each wrapping ErrMalformed. It does not
// check identity or run state; the enforcer does that.
func (e *Envelope) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...))
	}
	if e.Version != EnvelopeVersion && e.Version != EnvelopeV1 {
		errs = append(errs, fmt.Errorf("%w: v=%d, this gateway speaks envelope v=%d (and v=%d until %s)", ErrVersion, e.Version, EnvelopeVersion, EnvelopeV1, EnvelopeV1Until.Format(time.DateOnly)))
	}
	switch {
	case e.Via == "":
	case e.Via != ViaIngress:
		bad("via %q is not %q", e.Via, ViaIngress)
	case e.Version != EnvelopeVersion:
		bad("via is for envelope v=%d", EnvelopeVersion)
	}
	if !e.Kind.Valid() {
		bad("kind %q is not invoke, reply, cancel or progress", e.Kind)
	}
	if !ValidID(e.HopID) {
		bad("hop_id %q is not a valid id", e.HopID)
	}
	if e.RunID != "" && !ValidID(e.RunID) {
		bad("run_id %q is not a valid id", e.RunID)
	}
	if e.ParentHopID != "" && !ValidID(e.ParentHopID) {
		bad("parent_hop_id %q is not a valid id", e.ParentHopID)
	}
	if !ValidPrincipalID(e.From) {
		bad("from %q is not a valid id", e.From)
	}
	if !ValidPrincipalID(e.To) {
		bad("to %q is not a valid id", e.To)
	}
	if e.SentAt.IsZero() {
		bad("sent_at is missing")
	}
	switch e.Kind {
	case KindInvoke:
		if e.ParentHopID == "" && e.RunID == "" {
			bad("a root invoke names its run (run_id)")
		}
		if sp := e.SpawnedFrom; sp != nil {
			if e.ParentHopID != "" {
				bad("spawned_from is for a root invoke; a delegation names its parent_hop_id")
			}
			if !ValidID(sp.RunID) || !ValidID(sp.HopID) || sp.RunID == e.RunID {
				bad("spawned_from must name another run and a hop of it")
			}
		}
		if want := e.DerivedHopID(); e.HopID != "" && e.HopID != want {
			bad("hop_id %q is not derived from its scope and hop_key %q (want %s; see DeriveHopID)", e.HopID, e.HopKey, want)
		}
		if len(e.HopKey) > 128 {
			bad("hop_key is longer than 128 bytes")
		}
		if len(e.Message) == 0 {
			bad("an invoke carries a message")
		} else if err := checkA2AMessage(e.Version, e.Message); err != nil {
			bad("message: %v", err)
		}
		if e.Result != nil {
			bad("an invoke carries no result")
		}
		if e.ParentHopID == e.HopID && e.HopID != "" {
			bad("a hop cannot be its own parent")
		}
	case KindReply:
		if e.Result == nil {
			bad("a reply carries a result")
		} else if !e.Result.Status.Valid() {
			bad("result.status %q is not a terminal A2A task state", e.Result.Status)
		} else if c := e.Result.ErrorClass; c != "" && !validErrorClass(c) {
			bad("result.error_class %q: want 1-64 of a-z, 0-9, '_', '.', '-'", c)
		}
		if len(e.Message) != 0 {
			bad("a reply carries its output in result.output, not message")
		}
	case KindCancel:
		if len(e.Message) != 0 || e.Result != nil {
			bad("a cancel carries neither message nor result")
		}
	case KindProgress:
		switch {
		case e.Version != EnvelopeVersion:
			bad("progress is for envelope v=%d", EnvelopeVersion)
		case e.Result == nil || e.Result.Status != StateWorking:
			bad("a progress carries a result with status %q", StateWorking)
		case len(e.Result.Output) == 0:
			bad("a progress carries the A2A event in result.output")
		case e.Result.Error != "" || e.Result.ErrorClass != "":
			bad("a progress carries no error")
		}
		if len(e.Message) != 0 || e.Usage != nil || e.Estimate != nil {
			bad("a progress carries neither message, usage nor estimate")
		}
	}
	if err := e.Usage.validate("usage"); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	if err := e.Estimate.validate("estimate"); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	return errors.Join(errs...)
}

// a2aMessage is the part of an A2A Message the gateway checks: enough to
// refuse something that is not a message, without re-implementing the SDKs.
// Kind is A2A v0.3's discriminator; v1.0 has none. Parts counts the
// elements of parts.
type a2aMessage struct {
	Kind, MessageID, Role string
	Parts                 int
}

// checkA2AMessage checks the message of an envelope of version v: an A2A
// v1.0 Message for v2, an A2A v0.3 one for v1.
func checkA2AMessage(v int, raw json.RawMessage) error {
	m, err := readA2AMessage(raw)
	if err != nil {
		return fmt.Errorf("not an A2A message object: %w", err)
	}
	var errs []error
	if m.MessageID == "" {
		errs = append(errs, errors.New("messageId is missing"))
	}
	if v == EnvelopeV1 {
		if m.Kind != "message" {
			errs = append(errs, fmt.Errorf(`kind is %q, want "message" (A2A v0.3)`, m.Kind))
		}
		if m.Role != "user" && m.Role != "agent" {
			errs = append(errs, fmt.Errorf(`role is %q, want "user" or "agent" (A2A v0.3)`, m.Role))
		}
	} else if m.Role != "ROLE_USER" && m.Role != "ROLE_AGENT" {
		errs = append(errs, fmt.Errorf(`role is %q, want "ROLE_USER" or "ROLE_AGENT" (A2A v1.0)`, m.Role))
	}
	if m.Parts == 0 {
		errs = append(errs, errors.New("parts is empty"))
	}
	return errors.Join(errs...)
}

// a2aReader is a token decoder over a reader of one message, kept in
// a2aReaders and reset for each message: a new decoder costs more than the
// walk.
type a2aReader struct {
	src bytes.Reader
	dec *jsontext.Decoder
}

var a2aReaders = sync.Pool{New: func() any {
	r := &a2aReader{}
	r.dec = jsontext.NewDecoder(&r.src, a2aReadOptions...)
	return r
}}

// a2aReadOptions read JSON as encoding/json does: duplicate names and
// invalid UTF-8 allowed. Reset drops a decoder's options, so each Reset
// passes them again.
var a2aReadOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// readA2AMessage reads the members a2aMessage names from raw in one token
// walk, reading as encoding/json.Unmarshal into a struct with those fields
// did before (TestReadA2AMessageMatchesEncodingJSON, FuzzReadA2AMessage):
// names match exactly or, failing that, case-insensitively (Unicode simple
// folding); the last matching member wins; null leaves a field empty; a
// value of the wrong type is an error; parts is an array of any values;
// other members are skipped but must be valid JSON, and so must the whole
// of raw (duplicate names and invalid UTF-8 allowed, as encoding/json
// allows them).
func readA2AMessage(raw []byte) (a2aMessage, error) {
	var m a2aMessage
	r := a2aReaders.Get().(*a2aReader)
	defer func() {
		r.src.Reset(nil) // hold no message while pooled
		r.dec.Reset(&r.src, a2aReadOptions...)
		a2aReaders.Put(r)
	}()
	r.src.Reset(raw)
	r.dec.Reset(&r.src, a2aReadOptions...)
	dec := r.dec
	wrongType := func(name string, k jsontext.Kind) error {
		want := "string"
		if name == "parts" {
			want = "list"
		}
		return fmt.Errorf("member %q is a JSON %s, not a %s", name, kindName(k), want)
	}
	var typeErr error
	switch dec.PeekKind() {
	case 'n':
		if _, err := dec.ReadToken(); err != nil {
			return m, err
		}
	case '{':
		if _, err := dec.ReadToken(); err != nil {
			return m, err
		}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return m, err
			}
			field := a2aField(tok.String())
			if field == "" {
				if err := dec.SkipValue(); err != nil {
					return m, err
				}
				continue
			}
			k := dec.PeekKind()
			switch {
			case k == 'n':
				// null empties the list and leaves a string as it was.
				if _, err := dec.ReadToken(); err != nil {
					return m, err
				}
				if field == "parts" {
					m.Parts = 0
				}
			case field == "parts" && k == '[':
				if _, err := dec.ReadToken(); err != nil {
					return m, err
				}
				n := 0
				for dec.PeekKind() != ']' {
					if err := dec.SkipValue(); err != nil {
						return m, err
					}
					n++
				}
				if _, err := dec.ReadToken(); err != nil {
					return m, err
				}
				m.Parts = n
			case field != "parts" && k == '"':
				tok, err := dec.ReadToken()
				if err != nil {
					return m, err
				}
				switch field {
				case "kind":
					m.Kind = tok.String()
				case "messageId":
					m.MessageID = tok.String()
				case "role":
					m.Role = tok.String()
				}
			default:
				if err := dec.SkipValue(); err != nil {
					return m, err
				}
				if typeErr == nil {
					typeErr = wrongType(field, k)
				}
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return m, err
		}
	default:
		k := dec.PeekKind()
		if err := dec.SkipValue(); err != nil {
			return m, err
		}
		typeErr = fmt.Errorf("a JSON %s, not an object", kindName(k))
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return m, err
	}
	return m, typeErr
}

// a2aFields are the members a2aMessage reads.
var a2aFields = [...]string{"kind", "messageId", "role", "parts"}

// a2aField is the a2aMessage field name matches: exactly, or else
// case-insensitively, or "" for none.
func a2aField(name string) string {
	for _, f := range a2aFields {
		if name == f {
			return f
		}
	}
	for _, f := range a2aFields {
		if strings.EqualFold(name, f) {
			return f
		}
	}
	return ""
}

// kindName names a JSON value kind in an error.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
}

// validErrorClass reports whether c is 1-64 of a-z, 0-9, '_', '.', '-'.
func validErrorClass(c string) bool {
	if len(c) == 0 || len(c) > 64 {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '.' || b == '-') {
			return false
		}
	}
	return true
}
