package ledger

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

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

// Verify checks a run's chain: every event is well formed, belongs to the
// run, follows its predecessor (seq and prev_hash), and its hash matches its
// content. It returns nil or a *VerifyError (which wraps ErrTampered) for
// the first broken link. It reads each record's Raw bytes only.
func Verify(run string, recs []Record) error {
	prev := schemas.GenesisHash
	for i, r := range recs {
		pos := uint64(i + 1)
		c := CheckEvent(run, pos, r.Raw, nil)
		if problem := c.Linked(prev, pos); problem != "" {
			return c.Error(pos, r.StreamSeq, problem)
		}
		prev = c.Hash
	}
	return nil
}

// EventCheck is what checking one stored event on its own found: every
// check of Verify but the link to the previous event. Verify and the
// parallel verifier of ledger/runtree both build on it, so they name the
// same first broken link with the same words.
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
// decoded, when not nil, must be the decoding of raw and spares decoding it
// again.
func CheckEvent(run string, pos uint64, raw []byte, decoded *schemas.Event) EventCheck {
	var c EventCheck
	ev := decoded
	if ev == nil {
		var err error
		if ev, err = schemas.DecodeEvent(raw); err != nil {
			c.Early = err.Error()
			return c
		}
	}
	c.Event = ev
	unhashed, hash, ok := schemas.SplitLastMember(raw, "hash")
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

// KeyFunc returns the Ed25519 key registered for an identity, nil if none.
type KeyFunc func(id string) ed25519.PublicKey

// VerifySignatures checks the signature of every envelope the run admitted
// (hop.allowed, hop.completed) against the sender's key. Denied envelopes are
// skipped: a forged signature is a reason they were denied. Senders without
// a key are skipped unless their envelope carries a signature, which then
// cannot be checked and counts as bad. It returns nil or a *VerifyError for
// the first bad signature.
func VerifySignatures(recs []Record, key KeyFunc) error {
	for i, r := range recs {
		fail := func(problem string) error {
			return &VerifyError{Seq: uint64(i + 1), StreamSeq: r.StreamSeq, Type: r.Event.Type, HopID: r.Event.HopID, Problem: problem}
		}
		data, err := r.Event.DecodeData()
		if err != nil {
			return fail(err.Error())
		}
		env, sender, err := AdmittedEnvelope(r.Event.Type, data)
		if err != nil {
			return fail(err.Error())
		}
		if env == nil {
			continue
		}
		pub := key(sender)
		if pub == nil {
			if _, _, signed := schemas.SplitLastMember(env, "signature"); signed {
				return fail(fmt.Sprintf("envelope is signed but no key is registered for %q", sender))
			}
			continue
		}
		if err := schemas.VerifySignature(env, pub); err != nil {
			return fail(fmt.Sprintf("envelope from %q: %v", sender, err))
		}
	}
	return nil
}

// AdmittedEnvelope returns the envelope an admitting event recorded (the
// invoke of hop.allowed, the reply or cancel of hop.completed) and the
// sender the event names; nil for events that admit nothing. An admitted
// envelope that is missing, does not decode, or is from another sender than
// the event records is an error: blanking or swapping it must not pass for
// "nothing to check". data is the event's decoded data.
func AdmittedEnvelope(typ schemas.EventType, data any) (env []byte, sender string, err error) {
	switch d := data.(type) {
	case *schemas.HopDecision:
		if typ != schemas.EventHopAllowed {
			return nil, "", nil // a denied envelope is not vouched for: a bad signature may be why
		}
		env, sender = d.Envelope, d.From
	case *schemas.HopCompleted:
		if d.By == "gateway" {
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
	}
	if err := json.Unmarshal(env, &head); err != nil {
		return nil, "", fmt.Errorf("the admitted envelope does not decode: %v", err)
	}
	if head.From != sender {
		return nil, "", fmt.Errorf("the admitted envelope is from %q but the event records %q", head.From, sender)
	}
	return env, sender, nil
}
