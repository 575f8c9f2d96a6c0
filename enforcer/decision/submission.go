package decision

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// rawKeep is how much of a submission that is not JSON the ledger keeps.
const rawKeep = 1024

// RejectedPrefix starts the ledger subject of a rejected submission that
// belongs to no run (see Submission.RejectRun). The leading underscore
// keeps it apart from every valid run id.
const RejectedPrefix = "_rejected-"

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
// tokens are given (both empty when subject is not a submit subject); limit
// is the largest envelope decoded.
func Parse(subject, caller, run string, raw []byte, limit int) *Submission {
	s := &Submission{Caller: caller, RunToken: run, Raw: raw}
	if caller == "" || run == "" {
		s.DecodeErr = fmt.Errorf("%w: subject %q is not a submit subject", schemas.ErrMalformed, subject)
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
		s.Digest = ledger.Digest(wire)
	} else {
		s.Digest = ledger.Digest(raw)
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
	return fmt.Sprintf("%s%d-%.12s", RejectedPrefix, s.Seq, s.Digest)
}

// recorded returns what the ledger keeps of the submission: its wire form
// when it was JSON, or its first bytes.
func (s *Submission) recorded() (envelope []byte, raw []byte) {
	if s.Wire != nil {
		return s.Wire, nil
	}
	if len(s.Raw) > rawKeep {
		return nil, s.Raw[:rawKeep]
	}
	return nil, s.Raw
}
