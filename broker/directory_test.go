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

// TestToolResource: a tool of an MCP server is the Cedar resource
// "<server>/<tool>"; only tools have one, it must be well formed, and two
// tools cannot share one.
func TestToolResource(t *testing.T) {
	dir, err := broker.NewDirectory([]broker.Identity{
		{ID: "web-fetch", Type: schemas.TypeTool, Resource: "web/fetch"},
		{ID: "calc", Type: schemas.TypeTool},
	})
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := dir.Get("web-fetch"); f.ResourceID() != "web/fetch" {
		t.Fatalf("web-fetch's resource %q", f.ResourceID())
	}
	if c, _ := dir.Get("calc"); c.ResourceID() != "calc" {
		t.Fatalf("calc's resource %q, want its id", c.ResourceID())
	}
	for _, tc := range []struct {
		name    string
		ids     []broker.Identity
		wantErr string
	}{
		{"not a tool", []broker.Identity{{ID: "gpt", Type: schemas.TypeModel, Resource: "x/gpt"}}, "only a tool"},
		{"no server", []broker.Identity{{ID: "t", Type: schemas.TypeTool, Resource: "/fetch"}}, "not a valid tool resource"},
		{"no slash", []broker.Identity{{ID: "t", Type: schemas.TypeTool, Resource: "fetch"}}, "not a valid tool resource"},
		{"bad tool name", []broker.Identity{{ID: "t", Type: schemas.TypeTool, Resource: `web/fe"tch`}}, "not a valid tool resource"},
		{"shared", []broker.Identity{{ID: "a", Type: schemas.TypeTool, Resource: "web/fetch"}, {ID: "b", Type: schemas.TypeTool, Resource: "web/fetch"}}, `also "a"'s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := broker.NewDirectory(tc.ids)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
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
