package decision_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/schemas"
)

// TestParseDigest: a submission's digest is that of its compact wire form
// (of its raw bytes when it is not JSON), whether or not the sender named
// it as its Nats-Msg-Id, and a Nats-Msg-Id that is not the raw bytes'
// digest makes it malformed.
func TestParseDigest(t *testing.T) {
	run := schemas.NewID()
	env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindInvoke, RunID: run, From: "a", To: "b",
		Message: json.RawMessage(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}`), SentAt: time.Now().UTC()}
	env.HopID = env.DerivedHopID()
	compact, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	spaced := bytes.ReplaceAll(compact, []byte(`,`), []byte(` , `))
	notJSON := []byte("not json")
	for _, tc := range []struct {
		name   string
		raw    []byte
		msgID  string
		want   string // digest
		bad    bool   // malformed
		caller string
	}{
		{"compact, no id", compact, "", schemas.Digest(compact), false, "a"},
		{"compact, its digest as id", compact, schemas.Digest(compact), schemas.Digest(compact), false, "a"},
		{"spaced, its digest as id", spaced, schemas.Digest(spaced), schemas.Digest(compact), false, "a"},
		{"spaced, the compact digest as id", spaced, schemas.Digest(compact), schemas.Digest(compact), true, "a"},
		{"compact, another id", compact, "x", schemas.Digest(compact), true, "a"},
		{"not JSON, its digest as id", notJSON, schemas.Digest(notJSON), schemas.Digest(notJSON), true, "a"},
		{"not JSON, no id", notJSON, "", schemas.Digest(notJSON), true, "a"},
		{"no caller token, its digest as id", compact, schemas.Digest(compact), schemas.Digest(compact), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := decision.Parse("tg.submit."+tc.caller+"."+run, tc.caller, run, tc.msgID, tc.raw, 1<<16)
			if s.Digest != tc.want {
				t.Errorf("digest %s, want %s", s.Digest, tc.want)
			}
			if bad := s.DecodeErr != nil; bad != tc.bad || bad && !errors.Is(s.DecodeErr, schemas.ErrMalformed) {
				t.Errorf("decode error %v, want malformed: %v", s.DecodeErr, tc.bad)
			}
		})
	}
}
