package broker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// signControl signs v as operator kp would (operator.Client does the same).
func signControl(t *testing.T, kp nkeys.KeyPair, v any) []byte {
	t.Helper()
	body, err := schemas.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, kp.Sign)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestReviewControlRequestsBoundToTheirCommand (review finding): every
// control command is signed in the one ControlSigningContext with nothing
// naming the command, and decoded with encoding/json (unknown members
// ignored), so a signed request for one command verifies as another's:
// the read-only quota status request added today is, byte for byte, a
// valid reload request (what gateway.checkReload runs: DecodeReloadRequest
// then VerifyControl), and a halt request is a valid quota status
// request. Anyone who sees an operator's quota read can replay it on
// tg.ctl.reload within the replay window, logged as that operator's
// reload.
func TestReviewControlRequestsBoundToTheirCommand(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	quotaReq := signControl(t, kp, &schemas.QuotaStatusRequest{Version: schemas.Version, By: "ops", SentAt: now})
	if r, err := schemas.DecodeReloadRequest(quotaReq); err == nil {
		if err := broker.VerifyControl(r.By, pub, quotaReq, r.SentAt, now, 5*time.Minute); err == nil {
			t.Errorf("a signed quota status request is accepted as a reload request by %s", r.By)
		}
	}
	haltReq := signControl(t, kp, &schemas.HaltRequest{Version: schemas.Version, RunID: schemas.NewID(), By: "ops", Reason: "x", SentAt: now})
	if r, err := schemas.DecodeQuotaStatusRequest(haltReq); err == nil {
		if err := broker.VerifyControl(r.By, pub, haltReq, r.SentAt, now, 5*time.Minute); err == nil {
			t.Errorf("a signed halt request is accepted as a quota status request")
		}
	}
}
