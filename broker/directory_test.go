package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// TestGatewayIDReserved: no identity can be registered as the gateway,
// which the ledger names as the closer of hops it closed itself (and whose
// closings carry no envelope to verify).
func TestGatewayIDReserved(t *testing.T) {
	_, err := broker.NewDirectory([]broker.Identity{{ID: schemas.GatewayActor, Type: schemas.TypeAgent}})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("an identity named %q: %v", schemas.GatewayActor, err)
	}
}

// TestIdentityVerifiesEnvelopes: an identity checks an envelope's
// signature as schemas.VerifySignature does with its key (it keeps the
// key decoded): its own signature passes, another key's and a changed
// envelope fail with the same error.
func TestIdentityVerifiesEnvelopes(t *testing.T) {
	kp, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	dir, err := broker.NewDirectory([]broker.Identity{{ID: "a", Type: schemas.TypeAgent, PublicKey: pub, RequireSignature: true}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := dir.Get("a")
	env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindCancel, HopID: schemas.NewID(), From: "a", To: "b", SentAt: time.Now().UTC()}
	own, err := env.Sign(kp.Sign)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := env.Sign(other.Sign)
	if err != nil {
		t.Fatal(err)
	}
	changed := []byte(strings.Replace(string(own), `"to":"b"`, `"to":"c"`, 1))
	for _, in := range [][]byte{own, forged, changed} {
		got, want := id.VerifyEnvelope(in), schemas.VerifySignature(in, id.SigningKey())
		if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
			t.Fatalf("%s: identity says %v, VerifySignature %v", in, got, want)
		}
	}
	if id.VerifyEnvelope(own) != nil || id.VerifyEnvelope(forged) == nil || id.VerifyEnvelope(changed) == nil {
		t.Fatal("own signature refused, or a forged or changed envelope accepted")
	}
}
