package security_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// TestDedupeSquatting: SUBMIT's dedupe window is stream-wide, so a
// sub-agent could pre-publish the ids its caller will use and have the
// caller's messages dropped as duplicates. Ids must be the digest of the
// very bytes they name: squatting an old-scheme id or the digest of a
// guessed body is denied, and the caller's real reply is still delivered.
func TestDedupeSquatting(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		tk := mallory.delegatedTo(t)
		root := tk.Context.ParentHopID // the hop the orchestrator will answer tomas on

		squat := func(t *testing.T, id string, body []byte, reason schemas.Reason) {
			t.Helper()
			ack, err := mallory.js.PublishMsg(testCtx(t, 5*time.Second),
				&nats.Msg{Subject: g.subj.Submit("mallory", tk.Run), Data: body}, jetstream.WithMsgID(id))
			if err != nil {
				t.Fatal(err)
			}
			if ack.Duplicate {
				t.Fatalf("id %s was already taken", id)
			}
			if d := mallory.denial(t, ack.Sequence); d.Denial.Reason != reason {
				t.Fatalf("squat with id %s denied as %s (%s), want %s", id, d.Denial.Reason, d.Denial.Message, reason)
			}
		}
		t.Run("OldSchemeIDs", func(t *testing.T) {
			for _, id := range []string{root + ".reply", tk.Hop + ".reply", root, root + ".invoke", tk.Run} {
				squat(t, id, []byte(`{"squat":"`+id+`"}`), schemas.ReasonMalformed)
			}
		})
		// The orchestrator's reply to tomas as mallory would guess it.
		guess := func() []byte {
			env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindReply, HopID: root, RunID: tk.Run,
				From: "orchestrator", To: "tomas", SentAt: time.Now().UTC()}
			out, _ := json.Marshal(agent.AgentText("mallory done"))
			env.Result = &schemas.Result{Status: schemas.StateCompleted, Output: out}
			b, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		t.Run("DigestOfGuessedBody", func(t *testing.T) {
			for range 5 {
				squat(t, schemas.Digest(guess()), []byte(`{"squat":"digest"}`), schemas.ReasonMalformed)
			}
		})
		t.Run("GuessedBodyItself", func(t *testing.T) {
			// The guessed bytes under their own digest are stored, and
			// denied: they say they are from the orchestrator.
			b := guess()
			squat(t, schemas.Digest(b), b, schemas.ReasonIdentity)
		})
		t.Run("CallersEnvelopeReplayed", func(t *testing.T) {
			// The orchestrator's signed invoke, as delivered to mallory,
			// published again under its digest: a duplicate of the
			// orchestrator's own publish, or denied as not mallory's.
			before := g.ops.read(t, tk.Run)
			_, inv := mallory.lastInvoke(t, tk)
			ack, err := mallory.js.PublishMsg(testCtx(t, 5*time.Second),
				&nats.Msg{Subject: g.subj.Submit("mallory", tk.Run), Data: inv}, jetstream.WithMsgID(schemas.Digest(inv)))
			if err != nil {
				t.Fatal(err)
			}
			if !ack.Duplicate {
				mallory.denial(t, ack.Sequence)
			}
			after := g.ops.read(t, tk.Run)
			if countEvents(after, schemas.EventHopAllowed) != countEvents(before, schemas.EventHopAllowed) {
				t.Fatal("the replayed invoke opened a hop")
			}
		})
		t.Run("NonDigestIDOnValidReply", func(t *testing.T) {
			env := tk.reply("not this one", nil)
			body := mallory.sign(t, env)
			squat(t, "my-own-id-"+schemas.NewID(), body, schemas.ReasonMalformed)
		})
		t.Run("CallersRealReplyDelivered", func(t *testing.T) {
			tk.finish(t, nil)
			g.ops.verified(t, tk.Run)
			g.cast.legit(t)
		})
	})
}

// lastInvoke returns the delivery of the attacker's task and the
// caller's envelope in it.
func (a *attacker) lastInvoke(t *testing.T, tk *task) (schemas.Context, []byte) {
	t.Helper()
	recs := a.g.ops.read(t, tk.Run)
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Event.Type == schemas.EventHopAllowed && recs[i].Event.HopID == tk.Hop {
			return tk.Context, decisionOf(t, recs[i]).Envelope
		}
	}
	t.Fatal("no allowed hop for the task")
	return schemas.Context{}, nil
}
