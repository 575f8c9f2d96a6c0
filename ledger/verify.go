package ledger

import (
	"bytes"
	"crypto/ed25519"
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
// the first broken link.
func Verify(run string, recs []Record) error {
	prev := schemas.GenesisHash
	for i, r := range recs {
		pos := uint64(i + 1)
		fail := func(format string, args ...any) error {
			return &VerifyError{Seq: pos, StreamSeq: r.StreamSeq, Type: r.Event.Type, HopID: r.Event.HopID, Problem: fmt.Sprintf(format, args...)}
		}
		ev, err := schemas.DecodeEvent(r.Raw)
		if err != nil {
			return &VerifyError{Seq: pos, StreamSeq: r.StreamSeq, Problem: err.Error()}
		}
		r.Event = *ev
		unhashed, hash, ok := schemas.SplitLastMember(r.Raw, "hash")
		switch {
		case !ok:
			return fail("no hash as the event's last member")
		case ev.RunID != run:
			return fail("belongs to run %q", ev.RunID)
		case ev.Seq != pos:
			return fail("has seq %d where %d belongs (an event was removed, inserted or moved)", ev.Seq, pos)
		case ev.PrevHash != prev:
			return fail("prev_hash %.12s… does not match the hash %.12s… of event %d", ev.PrevHash, prev, pos-1)
		case Hash(ev.PrevHash, unhashed) != hash:
			return fail("content does not match its hash (the event was edited)")
		}
		if _, err := ev.DecodeData(); err != nil {
			return fail("%v", err)
		}
		prev = hash
	}
	return nil
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
		env, sender, err := recordedEnvelope(&r.Event)
		if err != nil {
			return &VerifyError{Seq: uint64(i + 1), StreamSeq: r.StreamSeq, Type: r.Event.Type, HopID: r.Event.HopID, Problem: err.Error()}
		}
		if env == nil {
			continue
		}
		pub := key(sender)
		_, _, signed := schemas.SplitLastMember(env, "signature")
		if pub == nil {
			if signed {
				return &VerifyError{Seq: uint64(i + 1), StreamSeq: r.StreamSeq, Type: r.Event.Type, HopID: r.Event.HopID,
					Problem: fmt.Sprintf("envelope is signed but no key is registered for %q", sender)}
			}
			continue
		}
		if err := schemas.VerifySignature(env, pub); err != nil {
			return &VerifyError{Seq: uint64(i + 1), StreamSeq: r.StreamSeq, Type: r.Event.Type, HopID: r.Event.HopID,
				Problem: fmt.Sprintf("envelope from %q: %v", sender, err)}
		}
	}
	return nil
}

// recordedEnvelope returns the envelope an admitted event recorded and its
// sender. An admitted envelope that does not decode, or whose sender is not
// the one the event names, is an error: blanking or swapping it must not
// pass for "nothing to check".
func recordedEnvelope(ev *schemas.Event) ([]byte, string, error) {
	data, err := ev.DecodeData()
	if err != nil {
		return nil, "", err
	}
	var raw []byte
	var want string
	switch d := data.(type) {
	case *schemas.HopDecision:
		if ev.Type != schemas.EventHopAllowed {
			return nil, "", nil
		}
		raw, want = d.Envelope, d.From
	case *schemas.HopCompleted:
		if d.By == "gateway" {
			return nil, "", nil
		}
		raw, want = d.Envelope, d.By
	default:
		return nil, "", nil
	}
	if len(raw) == 0 {
		return nil, "", errors.New("the admitted submission's envelope is missing")
	}
	env, _, err := schemas.DecodeEnvelope(raw, 0)
	if env == nil || err != nil {
		return nil, "", fmt.Errorf("the admitted envelope does not decode: %v", err)
	}
	if env.From != want {
		return nil, "", fmt.Errorf("the admitted envelope is from %q but the event records %q", env.From, want)
	}
	return bytes.Clone(raw), env.From, nil
}
