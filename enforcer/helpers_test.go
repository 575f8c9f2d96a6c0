package enforcer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

var demoIdentities = []broker.Identity{
	{ID: "tomas", Type: schemas.TypeUser, Team: "research", RequireSignature: true},
	{ID: "orchestrator", Type: schemas.TypeAgent, Team: "platform", Tags: []string{"entry", "orchestrator"}, RequireSignature: true},
	{ID: "research", Type: schemas.TypeAgent, Team: "research", RequireSignature: true},
	{ID: "writer", Type: schemas.TypeAgent, Team: "content", RequireSignature: true},
	{ID: "critic", Type: schemas.TypeAgent, Team: "content", RequireSignature: true},
}

func examplePolicies(t testing.TB) []policy.File {
	t.Helper()
	files, err := policy.ReadFS(deploy.Policies(), "")
	if err != nil || len(files) == 0 {
		t.Fatalf("example policies: %d files, %v", len(files), err)
	}
	return files
}

func startGateway(t *testing.T, cfg enforcer.Config) *enforcertest.Gateway {
	t.Helper()
	return enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: examplePolicies(t), Config: cfg})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sender publishes envelopes as one identity, over its own connection.
type sender struct {
	t  testing.TB
	g  *enforcertest.Gateway
	id string
	nc *nats.Conn
	js jetstream.JetStream
	kp nkeys.KeyPair
}

func newSender(t testing.TB, g *enforcertest.Gateway, id string) *sender {
	t.Helper()
	nc := g.ConnAs(id, nil)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &sender{t: t, g: g, id: id, nc: nc, js: js, kp: g.Keys[id]}
}

func textMessage(text string) json.RawMessage {
	return json.RawMessage(`{"messageId":"` + schemas.NewID() + `","role":"ROLE_USER","parts":[{"text":"` + text + `"}]}`)
}

func (s *sender) invoke(run, parent, to string) *schemas.Envelope {
	env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindInvoke, HopKey: schemas.NewID(), ParentHopID: parent,
		From: s.id, To: to, Message: textMessage("work"), SentAt: time.Now().UTC()}
	if parent == "" {
		env.RunID = run
	}
	env.HopID = env.DerivedHopID()
	return env
}

func (s *sender) reply(hop, to string, usage *schemas.Usage) *schemas.Envelope {
	return &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindReply, HopID: hop, From: s.id, To: to,
		Result: &schemas.Result{Status: schemas.StateCompleted, Output: textMessage("done")}, Usage: usage, SentAt: time.Now().UTC()}
}

// send signs env with the sender's key and publishes it on its own submit
// subject for run, returning the SUBMIT sequence.
func (s *sender) send(run string, env *schemas.Envelope) uint64 {
	s.t.Helper()
	wire, err := env.Sign(s.kp.Sign)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.sendRaw(s.g.Subjects.Submit(s.id, run), wire)
}

func (s *sender) sendRaw(subject string, data []byte) uint64 {
	s.t.Helper()
	ack, err := s.js.Publish(ctxT(s.t), subject, data)
	if err != nil {
		s.t.Fatalf("publish to %s: %v", subject, err)
	}
	return ack.Sequence
}

// waitDeliveries polls until id has n deliveries and returns them decoded.
func waitDeliveries(t testing.TB, g *enforcertest.Gateway, id string, n int) []*schemas.Delivery {
	t.Helper()
	msgs := brokertest.WaitFor(t, 15*time.Second, func() ([]*jetstream.RawStreamMsg, error) {
		msgs := g.Deliveries(id)
		if len(msgs) < n {
			return nil, fmt.Errorf("%s has %d deliveries, want %d", id, len(msgs), n)
		}
		return msgs, nil
	})
	out := make([]*schemas.Delivery, len(msgs))
	for i, m := range msgs {
		d, err := schemas.DecodeDelivery(m.Data)
		if err != nil {
			t.Fatalf("delivery %s: %v", m.Subject, err)
		}
		out[i] = d
	}
	return out
}

// waitRun polls until the run's ledger has at least n events, verifies the
// chain and returns the records.
func waitRun(t testing.TB, g *enforcertest.Gateway, run string, n int) []ledger.Record {
	t.Helper()
	recs := brokertest.WaitFor(t, 15*time.Second, func() ([]ledger.Record, error) {
		recs, err := g.Ledger.Read(ctxT(t), run)
		if err != nil || len(recs) < n {
			return nil, fmt.Errorf("run %s has %d events (%v), want %d", run, len(recs), err, n)
		}
		return recs, nil
	})
	if err := ledger.Verify(run, recs, nil).Err(); err != nil {
		t.Fatalf("verify run %s: %v", run, err)
	}
	return recs
}

func types(recs []ledger.Record) []schemas.EventType {
	out := make([]schemas.EventType, len(recs))
	for i, r := range recs {
		out[i] = r.Event.Type
	}
	return out
}

func decision(t testing.TB, r ledger.Record) *schemas.HopDecision {
	t.Helper()
	d, err := r.Event.DecodeData()
	if err != nil {
		t.Fatal(err)
	}
	hd, ok := d.(*schemas.HopDecision)
	if !ok {
		t.Fatalf("event %d is %s, not a decision", r.Event.Seq, r.Event.Type)
	}
	return hd
}

func equalTypes(got []schemas.EventType, want ...schemas.EventType) bool {
	return slices.Equal(got, want)
}

// signRaw signs an arbitrary compact JSON object the way agents sign
// envelopes: over SigningContext and the object, with the signature then
// appended as its last member.
func signRaw(t testing.TB, kp nkeys.KeyPair, body []byte) []byte {
	t.Helper()
	sig, err := kp.Sign(append([]byte(schemas.SigningContext), body...))
	if err != nil {
		t.Fatal(err)
	}
	return schemas.AppendMember(body, "signature", base64.RawURLEncoding.EncodeToString(sig))
}

// mustOtherKey returns a key no identity is registered with.
func mustOtherKey(t testing.TB) (string, nkeys.KeyPair) {
	t.Helper()
	kp, pub := brokertest.NewKey(t)
	return pub, kp
}

func jetstreamSubjectsFilter(filter string) jetstream.StreamInfoOpt {
	return jetstream.WithSubjectFilter(filter)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	brokertest.Eventually(t, 15*time.Second, "the condition", cond)
}

// pendingSubmissions is how many submissions wait in SUBMIT (a work queue:
// acked ones are gone).
func pendingSubmissions(t testing.TB, g *enforcertest.Gateway) uint64 {
	t.Helper()
	s, err := g.JS.Stream(ctxT(t), "SUBMIT")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func ledgerHead() ledger.Head { return ledger.Head{} }

// rejectionEntry finds the ledger entry of its own that the submission at
// SUBMIT sequence seq was recorded in (it belonged to no run).
func rejectionEntry(t testing.TB, g *enforcertest.Gateway, seq uint64) string {
	t.Helper()
	s, err := g.JS.Stream(ctxT(t), g.Subjects.Stream(broker.StreamLedger))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t), jetstream.WithSubjectFilter(g.Subjects.LedgerAll()))
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%s%d-", ledger.RejectedPrefix, seq)
	for subject := range info.State.Subjects {
		if run, ok := g.Subjects.LedgerRun(subject); ok && strings.HasPrefix(run, prefix) {
			return run
		}
	}
	t.Fatalf("no ledger entry %s* for the rejected submission", prefix)
	return ""
}

// signedControl signs req with sign as an operator's control request,
// sends it over the gateway's own connection to subject and decodes the
// reply into R. The key need not be the operator's: tests forge with
// others.
func signedControl[R any](t *testing.T, g *enforcertest.Gateway, sign func([]byte) ([]byte, error), subject string, req any) R {
	t.Helper()
	body, err := schemas.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, sign)
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.Conn.Request(subject, signed, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r R
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}
