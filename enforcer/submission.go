package enforcer

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// rawKeep is how much of a submission that is not JSON the ledger keeps.
const rawKeep = 1024

// submission is one message from SUBMIT, parsed as far as it parses.
type submission struct {
	msg      jetstream.Msg
	seq      uint64    // SUBMIT stream sequence
	storedAt time.Time // when the broker stored it
	caller   string    // subject token: authenticated by the broker
	runToken string    // subject token: the run the caller names
	raw      []byte

	env       *schemas.Envelope // nil when the bytes are not an envelope
	wire      []byte            // compact form, when the bytes are JSON
	decodeErr error
	digest    string
	// trace is the caller's span context from its traceparent header.
	trace trace.SpanContext
}

func (e *Enforcer) parse(m jetstream.Msg) *submission {
	s := &submission{msg: m, raw: m.Data(), trace: callerSpan(m.Headers())}
	if meta, err := m.Metadata(); err == nil {
		s.seq, s.storedAt = meta.Sequence.Stream, meta.Timestamp
	} else {
		s.storedAt = e.cfg.Clock()
	}
	var ok bool
	s.caller, s.runToken, ok = e.subjects.ParseSubmit(m.Subject())
	if !ok {
		s.decodeErr = fmt.Errorf("%w: subject %q is not a submit subject", schemas.ErrMalformed, m.Subject())
	}
	env, wire, err := schemas.DecodeEnvelope(s.raw, e.cfg.MaxEnvelopeBytes)
	s.wire = wire
	if s.decodeErr == nil {
		s.decodeErr = err
		if err == nil {
			s.env = env
		}
	}
	if wire != nil {
		s.digest = ledger.Digest(wire)
	} else {
		s.digest = ledger.Digest(s.raw)
	}
	return s
}

// hopID is the hop the submission is about, when it could be read.
func (s *submission) hopID() string {
	if s.env != nil {
		return s.env.HopID
	}
	return ""
}

// denialToken names the denial delivery of this submission: unique per
// SUBMIT message, the same when that message is redelivered.
func (s *submission) denialToken() string {
	return fmt.Sprintf("s%d-%.12s", s.seq, s.digest)
}

// rejectRun names the ledger entry of a submission that belongs to no run.
// The leading underscore keeps it apart from every valid run id.
func (s *submission) rejectRun() string {
	return fmt.Sprintf("_rejected-%d-%.12s", s.seq, s.digest)
}

// recorded returns what the ledger keeps of the submission: its wire form
// when it was JSON, or its first bytes.
func (s *submission) recorded() (envelope []byte, raw []byte) {
	if s.wire != nil {
		return s.wire, nil
	}
	if len(s.raw) > rawKeep {
		return nil, s.raw[:rawKeep]
	}
	return nil, s.raw
}
