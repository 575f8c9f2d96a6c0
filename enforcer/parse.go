package enforcer

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/enforcer/decision"
)

// parse reads a submission from its message. The subject's tokens were
// split when it was dispatched.
func (e *Enforcer) parse(w work) *decision.Submission {
	m := w.msg
	caller, run := w.caller, w.run
	sub := decision.Parse(m.Subject(), caller, run, m.Headers().Get(jetstream.MsgIDHeader), m.Data(), e.cfg.MaxEnvelopeBytes)
	sub.Trace = callerSpan(m.Headers())
	if meta, err := m.Metadata(); err == nil {
		sub.Seq, sub.StoredAt = meta.Sequence.Stream, meta.Timestamp
	} else {
		sub.StoredAt = e.cfg.Clock()
	}
	return sub
}
