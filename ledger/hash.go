package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/tollgate/tollgate/schemas"
)

// Head is the end of a run's chain: what the next append builds on.
type Head struct {
	// Seq is the event sequence of the run's last event; 0 for an empty run.
	Seq uint64
	// Hash is the last event's hash; schemas.GenesisHash for an empty run.
	Hash string
	// StreamSeq is the stream sequence of the last event's message; 0 for
	// an empty run. Appends expect it as the subject's last sequence.
	StreamSeq uint64
}

// Empty reports whether the run has no events yet.
func (h Head) Empty() bool { return h.Seq == 0 }

func (h Head) prevHash() string {
	if h.Hash == "" {
		return schemas.GenesisHash
	}
	return h.Hash
}

// Hash computes an event's hash: hex SHA-256 over the previous hash, a
// newline, and the event's compact JSON without its "hash" member.
func Hash(prevHash string, unhashed []byte) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write([]byte{'\n'})
	h.Write(unhashed)
	return hex.EncodeToString(h.Sum(nil))
}

// Seal sets the event's Seq, PrevHash and Hash so that it follows head, and
// returns its wire form (compact JSON, "hash" last).
func Seal(ev *schemas.Event, head Head) ([]byte, error) {
	ev.Seq = head.Seq + 1
	ev.PrevHash = head.prevHash()
	ev.Hash = ""
	if err := ev.EncodeData(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	unhashed := ev.AppendUnhashed(make([]byte, 0, 256+len(ev.Data)))
	ev.Hash = Hash(ev.PrevHash, unhashed)
	return schemas.AppendMember(unhashed, "hash", ev.Hash), nil
}

// Digest is the hex SHA-256 of b: how the ledger names a submission
// (schemas.Digest).
func Digest(b []byte) string { return schemas.Digest(b) }
