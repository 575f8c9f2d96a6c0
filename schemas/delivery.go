package schemas

import (
	"encoding/json"
	"time"
)

// DeliveryKind says what a delivery brings its recipient.
type DeliveryKind string

// Delivery kinds. They are also the last token of the delivery subject, so a
// hop gets at most one delivery of each kind per recipient.
const (
	// DeliverInvoke brings a task to its target.
	DeliverInvoke DeliveryKind = "invoke"
	// DeliverReply brings the target's reply to the caller.
	DeliverReply DeliveryKind = "reply"
	// DeliverCancel tells the target its hop was cancelled.
	DeliverCancel DeliveryKind = "cancel"
	// DeliverDenied tells the sender its submission was denied, and why.
	DeliverDenied DeliveryKind = "denied"
	// DeliverTimeout tells the caller its hop timed out.
	DeliverTimeout DeliveryKind = "timeout"
)

// Valid reports whether k is a known delivery kind.
func (k DeliveryKind) Valid() bool {
	switch k {
	case DeliverInvoke, DeliverReply, DeliverCancel, DeliverDenied, DeliverTimeout:
		return true
	}
	return false
}

// Delivery is what the gateway publishes to an agent's delivery subject: the
// sender's envelope, untouched and still signed, plus the governance context
// the gateway derived from the ledger.
type Delivery struct {
	// Version is the schema version, always 1.
	Version int `json:"v"`
	// Kind is what this delivery brings.
	Kind DeliveryKind `json:"kind"`
	// Envelope is the submission being delivered (invoke, reply, cancel),
	// or the denied one when it was JSON: the sender's wire form, byte for
	// byte, so the recipient can check the sender's signature itself.
	Envelope json.RawMessage `json:"envelope,omitempty"`
	// Context is the gateway-stamped governance context of the hop.
	Context Context `json:"context"`
	// Denial explains a denied submission.
	Denial *Denial `json:"denial,omitempty"`
	// LedgerSeq is the sequence of the ledger event this delivery follows
	// from; zero when nothing was ledgered.
	LedgerSeq uint64 `json:"ledger_seq,omitempty"`
}

// Context is the governance context of a hop as the gateway knows it from the
// ledger. Agents read it; they never write it.
type Context struct {
	RunID       string `json:"run_id"`
	HopID       string `json:"hop_id"`
	ParentHopID string `json:"parent_hop_id,omitempty"`
	// Depth counts the delegations above the hop: a root hop has depth 0.
	Depth int `json:"depth"`
	// Ancestry lists the ids on the path to the hop's caller, root caller
	// first and the caller last.
	Ancestry []string `json:"ancestry,omitempty"`
	// OnBehalfOf is the principal that started the run.
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
	// Deadline is when the hop times out.
	Deadline time.Time `json:"deadline,omitzero"`
	// TraceParent is the W3C traceparent of the hop's span.
	TraceParent string `json:"traceparent,omitempty"`
	// Attempt numbers a delivery the gateway retried (2 for the first
	// retry); absent for the first attempt. A target keyed on the hop id
	// stays idempotent across attempts.
	Attempt int `json:"attempt,omitempty"`
}

// Denial explains why a submission was refused.
type Denial struct {
	Reason Reason `json:"reason"`
	// Message is a human-readable explanation.
	Message string `json:"message"`
	// PolicyIDs lists the Cedar policies that decided, when Cedar did.
	PolicyIDs []string `json:"policy_ids,omitempty"`
	// SubmitKind is the kind of the denied submission, when known.
	SubmitKind Kind `json:"submit_kind,omitempty"`
	// SubmitSeq is the SUBMIT stream sequence of the denied message, which a
	// sender can match with the sequence in its publish acknowledgement.
	SubmitSeq uint64 `json:"submit_seq,omitempty"`
	// Audit is set when the denial was only recorded (audit mode) and the
	// hop went through.
	Audit bool `json:"audit,omitempty"`
}

// DecodeEnvelope decodes the delivered envelope. It returns nil and no
// error when the delivery carries none.
func (d *Delivery) DecodeEnvelope() (*Envelope, error) {
	if len(d.Envelope) == 0 {
		return nil, nil
	}
	env, _, err := DecodeEnvelope(d.Envelope, 0)
	return env, err
}

// DecodeDelivery decodes a delivery and checks its version and kind.
func DecodeDelivery(data []byte) (*Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, malformed("delivery", err)
	}
	if d.Version != Version {
		return nil, versionErr(d.Version)
	}
	if !d.Kind.Valid() {
		return nil, malformed("delivery", errString("unknown kind "+string(d.Kind)))
	}
	return &d, nil
}
