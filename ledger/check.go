package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/tollgate/tollgate/schemas"
)

// VerifyError names the first broken link of a run's chain.
type VerifyError struct {
	// Seq is the position of the offending event in the copy verified (its
	// claimed seq when it could be decoded).
	Seq uint64
	// StreamSeq is where the event sits in the stream (0 for a copy).
	StreamSeq uint64
	// Type and HopID describe the event when it could be decoded.
	Type  schemas.EventType
	HopID string
	// Problem says what is wrong.
	Problem string
}

func (e *VerifyError) Error() string {
	what := fmt.Sprintf("event %d", e.Seq)
	if e.Type != "" {
		what += " (" + string(e.Type)
		if e.HopID != "" {
			what += " hop " + e.HopID
		}
		what += ")"
	}
	if e.StreamSeq != 0 {
		what += fmt.Sprintf(" at stream seq %d", e.StreamSeq)
	}
	return "ledger: " + what + ": " + e.Problem
}

func (e *VerifyError) Unwrap() error { return ErrTampered }

// EventCheck is what checking one stored event on its own found: every
// check of Verify but the link to the previous event.
type EventCheck struct {
	// Event is the decoded event; nil when it did not decode.
	Event *schemas.Event
	// Data is the event's decoded data, when the event checked out.
	Data any
	// Hash is the hash the event claims (its last member).
	Hash string
	// Early is a problem found before the link to the previous event is
	// checked (decoding, the hash member, the run, the position); Late one
	// found after it (content against hash, data).
	Early, Late string
}

// CheckEvent checks the stored event raw at position pos (from 1) of run.
// decoded, when not nil, is a decoding of raw (as Ledger.Scan returns it)
// that spares decoding raw again; it is used only when it encodes back to
// exactly the bytes of raw, so a stale or doctored decoding is never
// checked in place of the stored bytes.
func CheckEvent(run string, pos uint64, raw []byte, decoded *schemas.Event) EventCheck {
	var c EventCheck
	unhashed, hash, ok := schemas.SplitLastMember(raw, "hash")
	ev := decoded
	if ev != nil && (!ok || ev.Hash != hash || !encodesTo(ev, unhashed)) {
		ev = nil
	}
	if ev == nil {
		var err error
		if ev, err = schemas.DecodeEvent(raw); err != nil {
			c.Early = err.Error()
			return c
		}
	}
	c.Event = ev
	switch {
	case !ok:
		c.Early = "no hash as the event's last member"
		return c
	case ev.RunID != run:
		c.Early = fmt.Sprintf("belongs to run %q", ev.RunID)
		return c
	case ev.Seq != pos:
		c.Early = fmt.Sprintf("has seq %d where %d belongs (an event was removed, inserted or moved)", ev.Seq, pos)
		return c
	}
	c.Hash = hash
	if Hash(ev.PrevHash, unhashed) != hash {
		c.Late = "content does not match its hash (the event was edited)"
		return c
	}
	data, err := ev.DecodeData()
	if err != nil {
		c.Late = err.Error()
		return c
	}
	c.Data = data
	return c
}

// scratch holds the buffers encodesTo encodes into.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// encodesTo reports whether ev's encoding without its hash is unhashed,
// byte for byte.
func encodesTo(ev *schemas.Event, unhashed []byte) bool {
	buf := scratch.Get().(*[]byte)
	*buf = ev.AppendUnhashed((*buf)[:0])
	same := bytes.Equal(*buf, unhashed)
	scratch.Put(buf)
	return same
}

// Linked returns the first problem of the event at pos given the hash of
// the event before it, in Verify's order; "" when the event is sound.
func (c EventCheck) Linked(prev string, pos uint64) string {
	switch {
	case c.Early != "":
		return c.Early
	case c.Event.PrevHash != prev:
		return fmt.Sprintf("prev_hash %.12s… does not match the hash %.12s… of event %d", c.Event.PrevHash, prev, pos-1)
	}
	return c.Late
}

// Error names the event in a *VerifyError.
func (c EventCheck) Error(pos, streamSeq uint64, problem string) *VerifyError {
	e := &VerifyError{Seq: pos, StreamSeq: streamSeq, Problem: problem}
	if c.Event != nil {
		e.Type, e.HopID = c.Event.Type, c.Event.HopID
	}
	return e
}

// AdmittedEnvelope returns the envelope an admitting event recorded (the
// invoke of hop.allowed or hop.pending, the reply or cancel of
// hop.completed) and whose key signed it: the sender the event names, or
// schemas.ViaIngress for an envelope the HTTP ingress submitted on the
// sender's behalf; nil for events that admit nothing. An admitted
// envelope that is missing, does not decode, or is from another sender than
// the event records is an error: blanking or swapping it must not pass for
// "nothing to check". data is the event's decoded data.
func AdmittedEnvelope(typ schemas.EventType, data any) (env []byte, sender string, err error) {
	switch d := data.(type) {
	case *schemas.HopDecision:
		if typ != schemas.EventHopAllowed && typ != schemas.EventHopPending {
			return nil, "", nil // a denied envelope is not vouched for: a bad signature may be why
		}
		env, sender = d.Envelope, d.From
	case *schemas.HopCompleted:
		if d.By == schemas.GatewayActor {
			return nil, "", nil
		}
		env, sender = d.Envelope, d.By
	default:
		return nil, "", nil
	}
	if len(env) == 0 {
		return nil, "", errors.New("the admitted submission's envelope is missing")
	}
	var head struct {
		From string `json:"from"`
		Via  string `json:"via"`
	}
	if err := json.Unmarshal(env, &head); err != nil {
		return nil, "", fmt.Errorf("the admitted envelope does not decode: %v", err)
	}
	if head.From != sender {
		return nil, "", fmt.Errorf("the admitted envelope is from %q but the event records %q", head.From, sender)
	}
	if head.Via == schemas.ViaIngress {
		// The HTTP ingress submitted it for the sender and signed it with
		// its own key, which Keys holds under this name.
		return env, schemas.ViaIngress, nil
	}
	return env, sender, nil
}
