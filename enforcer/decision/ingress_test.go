package decision_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// signedBy builds a root invoke by caller on run, with version v and via,
// signed with key kp, stored at storedAt.
func signedBy(t *testing.T, kp nkeys.KeyPair, caller, run, via string, v int, msg string, storedAt time.Time) *decision.Submission {
	t.Helper()
	env := &schemas.Envelope{Version: v, Via: via, Kind: schemas.KindInvoke, RunID: run, From: caller, To: "orchestrator",
		Message: json.RawMessage(msg), SentAt: storedAt}
	env.HopID = env.DerivedHopID()
	wire, err := env.Sign(kp.Sign)
	if err != nil {
		t.Fatal(err)
	}
	s := decision.Parse("tg.submit."+caller+"."+run, caller, run, "", wire, 1<<16)
	s.Seq, s.StoredAt = 1, storedAt
	return s
}

const (
	msgV10 = `{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hi"}]}`
	msgV03 = `{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hi"}]}`
)

// TestIngressSubmissions: an envelope that says it came through the HTTP
// ingress is admitted only when the ingress key signed it (the caller's own
// key cannot vouch for it, nor can the ingress key sign as the caller
// without saying so), and the hop is tainted "ingress". v1 envelopes are
// admitted until their deprecation date, denied after.
func TestIngressSubmissions(t *testing.T) {
	ingress, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ingress.PublicKey()
	ingressKey, err := broker.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		noIngress  bool
		key        func(f *fixture) nkeys.KeyPair
		via        string
		v          int
		msg        string
		at         time.Time
		wantAllow  bool
		wantReason schemas.Reason
		wantTaint  bool
	}{
		{"ingress signed by the ingress", false, func(*fixture) nkeys.KeyPair { return ingress }, schemas.ViaIngress, schemas.EnvelopeVersion, msgV10, t0, true, "", true},
		{"ingress signed by the caller's own key", false, func(f *fixture) nkeys.KeyPair { return f.keys["tomas"] }, schemas.ViaIngress, schemas.EnvelopeVersion, msgV10, t0, false, schemas.ReasonIdentity, false},
		{"ingress on a gateway without one", true, func(*fixture) nkeys.KeyPair { return ingress }, schemas.ViaIngress, schemas.EnvelopeVersion, msgV10, t0, false, schemas.ReasonIdentity, false},
		{"ingress key without via", false, func(*fixture) nkeys.KeyPair { return ingress }, "", schemas.EnvelopeVersion, msgV10, t0, false, schemas.ReasonIdentity, false},
		{"own submission is not tainted", false, func(f *fixture) nkeys.KeyPair { return f.keys["tomas"] }, "", schemas.EnvelopeVersion, msgV10, t0, true, "", false},
		{"v1 in its window", false, func(f *fixture) nkeys.KeyPair { return f.keys["tomas"] }, "", schemas.EnvelopeV1, msgV03, t0, true, "", false},
		{"v1 after its window", false, func(f *fixture) nkeys.KeyPair { return f.keys["tomas"] }, "", schemas.EnvelopeV1, msgV03, schemas.EnvelopeV1Until, false, schemas.ReasonMalformed, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, limits.Set{}, "")
			if !tc.noIngress {
				f.rules.Ingress = ingressKey
			}
			st := ledger.NewState("r1")
			sub := signedBy(t, tc.key(f), "tomas", "r1", tc.via, tc.v, tc.msg, tc.at)
			p, err := f.rules.Decide(st, sub, tc.at, decision.Inputs{})
			if err != nil {
				t.Fatal(err)
			}
			var d *schemas.HopDecision
			if p.Reject != nil {
				d = p.Reject
			}
			for _, ev := range p.Events {
				if ev.Type == schemas.EventHopAllowed || ev.Type == schemas.EventHopDenied {
					d = decisionOf(t, ev)
					if allowed := ev.Type == schemas.EventHopAllowed; allowed != tc.wantAllow {
						t.Fatalf("%s: %s %s", ev.Type, d.Reason, d.Message)
					}
				}
			}
			if d == nil {
				t.Fatalf("no decision in %+v", p)
			}
			if !tc.wantAllow && d.Reason != tc.wantReason {
				t.Fatalf("reason %s (%s), want %s", d.Reason, d.Message, tc.wantReason)
			}
			if tc.wantAllow && tc.wantTaint != slices.Contains(d.TaintSources, decision.TaintIngress) {
				t.Fatalf("taint %v, want ingress: %v", d.TaintSources, tc.wantTaint)
			}
			if tc.name == "v1 after its window" && !strings.Contains(d.Message, "2027-06-30") {
				t.Fatalf("message %q does not name the deadline", d.Message)
			}
		})
	}
}
