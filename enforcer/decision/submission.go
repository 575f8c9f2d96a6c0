package decision

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// rawKeep is how much of a submission the ledger keeps when it does not
// keep the whole: one that is not JSON, or a denied one over deniedKeep.
const rawKeep = 1024

// deniedKeep is the largest denied envelope the ledger keeps whole; of a
// larger one it keeps the size, the digest and the first rawKeep bytes.
const deniedKeep = 4096

// Submission is one message from SUBMIT, decoded as far as it decodes.
type Submission struct {
	// Seq is the SUBMIT stream sequence and StoredAt when the broker
	// stored the message.
	Seq      uint64
	StoredAt time.Time
	// Caller and RunToken are the tokens of the submit subject; the broker
	// authenticated the caller token.
	Caller, RunToken string
	// Raw is the message as received.
	Raw []byte
	// Env is the decoded envelope; nil when the bytes are not one.
	Env *schemas.Envelope
	// Wire is the envelope's compact form, when the bytes are JSON.
	Wire []byte
	// DecodeErr says why the submission is not a valid envelope (or its
	// subject not a submit subject).
	DecodeErr error
	// Digest is the hex SHA-256 of Wire (or of Raw when it is not JSON): how
	// the ledger recognises a submission it already decided.
	Digest string
	// Trace is the caller's span context from its traceparent header.
	Trace trace.SpanContext
}

// Parse decodes a submission that arrived on subject, whose caller and run
// tokens are given (run empty when subject is not a valid submit subject,
// caller too when its caller token cannot be read), with the Nats-Msg-Id
// header msgID; limit is the largest envelope decoded.
func Parse(subject, caller, run, msgID string, raw []byte, limit int) *Submission {
	s := &Submission{Caller: caller, RunToken: run, Raw: raw}
	switch {
	case caller == "" || run == "":
		s.DecodeErr = fmt.Errorf("%w: subject %q is not a submit subject", schemas.ErrMalformed, subject)
	case msgID != "" && msgID != schemas.Digest(raw):
		// An id chosen otherwise could have been chosen ahead of time to
		// shadow another identity's submission in SUBMIT's dedupe window.
		s.DecodeErr = fmt.Errorf("%w: Nats-Msg-Id %q is not the hex SHA-256 of the message; leave it out or use the digest", schemas.ErrMalformed, msgID)
	}
	env, wire, err := schemas.DecodeEnvelope(raw, limit)
	s.Wire = wire
	if s.DecodeErr == nil {
		s.DecodeErr = err
		if err == nil {
			s.Env = env
		}
	}
	if wire != nil {
		s.Digest = schemas.Digest(wire)
	} else {
		s.Digest = schemas.Digest(raw)
	}
	return s
}

// HopID is the hop the submission is about, when it could be read.
func (s *Submission) HopID() string {
	if s.Env != nil {
		return s.Env.HopID
	}
	return ""
}

// DenialToken names the denial delivery of this submission: unique per
// SUBMIT message, the same when that message is redelivered.
func (s *Submission) DenialToken() string {
	return fmt.Sprintf("s%d-%.12s", s.Seq, s.Digest)
}

// RejectRun names the ledger entry of a submission that belongs to no run.
func (s *Submission) RejectRun() string {
	return fmt.Sprintf("%s%d-%.12s", ledger.RejectedPrefix, s.Seq, s.Digest)
}

// recorded returns what the ledger keeps of the submission: its wire form
// when it was JSON (and, if denied, no larger than deniedKeep), or its
// first bytes.
func (s *Submission) recorded(denied bool) (envelope []byte, raw []byte) {
	if s.Wire != nil && (!denied || len(s.Wire) <= deniedKeep) {
		return s.Wire, nil
	}
	if s.Wire != nil {
		return nil, s.Wire[:rawKeep]
	}
	if len(s.Raw) > rawKeep {
		return nil, s.Raw[:rawKeep]
	}
	return nil, s.Raw
}
