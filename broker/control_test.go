package broker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
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

// TestControlRequestsBoundToTheirCommand: every control command is signed
// in the one ControlSigningContext and decoded with encoding/json (unknown
// members ignored), so without the signed cmd member a request for one
// command would verify as another's: the read-only quota status request
// would be, byte for byte, a valid reload request (what
// gateway.checkReload runs: DecodeReloadRequest then VerifyControl), and a
// halt request a valid quota status request. Each verifies for its own
// command only; one that names no command (the format before commands
// were bound) is refused.
func TestControlRequestsBoundToTheirCommand(t *testing.T) {
	kp, pub := brokertest.NewKey(t)
	now := time.Now().UTC()
	const window = 5 * time.Minute
	quotaReq := signControl(t, kp, &schemas.QuotaStatusRequest{Version: schemas.Version, Cmd: schemas.CmdQuotaStatus, By: "ops", SentAt: now})
	r, err := schemas.DecodeReloadRequest(quotaReq)
	if err != nil {
		t.Fatalf("the quota status request does not decode as a reload request (%v): the replay below would not be tried", err)
	}
	if err := broker.VerifyControl(schemas.CmdQuotaStatus, r.By, pub, quotaReq, r.SentAt, now, window); err != nil {
		t.Fatalf("the quota status request is refused for its own command: %v", err)
	}
	err = broker.VerifyControl(schemas.CmdReload, r.By, pub, quotaReq, r.SentAt, now, window)
	if err == nil {
		t.Fatal("a signed quota status request is accepted as a reload request")
	}
	if !errors.Is(err, schemas.ErrSignature) || !strings.Contains(err.Error(), `signed for command "quota.status", not "reload"`) {
		t.Errorf("refusal of a quota status request replayed as a reload: %v", err)
	}

	haltReq := signControl(t, kp, &schemas.HaltRequest{Version: schemas.Version, Cmd: schemas.CmdHalt, RunID: schemas.NewID(), By: "ops", Reason: "x", SentAt: now})
	q, err := schemas.DecodeQuotaStatusRequest(haltReq)
	if err != nil {
		t.Fatalf("the halt request does not decode as a quota status request: %v", err)
	}
	if err := broker.VerifyControl(schemas.CmdQuotaStatus, q.By, pub, haltReq, q.SentAt, now, window); err == nil {
		t.Error("a signed halt request is accepted as a quota status request")
	}
	if err := broker.VerifyControl(schemas.CmdHalt, q.By, pub, haltReq, q.SentAt, now, window); err != nil {
		t.Errorf("the halt request is refused for its own command: %v", err)
	}

	// The format before commands were bound: no cmd member.
	old := signControl(t, kp, &schemas.ReloadRequest{Version: schemas.Version, By: "ops", SentAt: now})
	err = broker.VerifyControl(schemas.CmdReload, "ops", pub, old, now, now, window)
	if err == nil || !strings.Contains(err.Error(), "names no cmd") {
		t.Errorf("a request that names no command: %v", err)
	}
	// The cmd member is under the signature: changing it breaks it.
	forged := []byte(strings.Replace(string(quotaReq), `"cmd":"quota.status"`, `"cmd":"reload"`, 1))
	if err := broker.VerifyControl(schemas.CmdReload, "ops", pub, forged, now, now, window); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a request whose cmd was rewritten after signing: %v", err)
	}
}
