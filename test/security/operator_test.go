package security_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// TestOperatorIsReadOnly: an operator key reads the ledger (stream info
// and direct gets) but cannot delete, purge, update or consume it, cannot
// reach the other streams, and cannot halt a run in another operator's
// name.
func TestOperatorIsReadOnly(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		s := g.subj
		done := g.cast.legit(t)
		ledgerName := s.Stream(broker.StreamLedger)
		short := func() context.Context { return testCtx(t, 500*time.Millisecond) }

		t.Run("ReadsTheLedger", func(t *testing.T) {
			recs := g.ops.verified(t, done)
			if recs[0].Event.Type != schemas.EventRunStarted {
				t.Fatalf("first event %s", recs[0].Event.Type)
			}
			st, err := g.ops.js.Stream(testCtx(t, 5*time.Second), ledgerName)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.GetMsg(testCtx(t, 5*time.Second), recs[0].StreamSeq); err != nil {
				t.Fatalf("direct get: %v", err)
			}
		})

		t.Run("CannotChangeTheLedger", func(t *testing.T) {
			before := g.ops.snapshot(t)
			if err := g.ops.js.DeleteStream(short(), ledgerName); err == nil {
				t.Error("an operator deleted LEDGER")
			}
			if st, err := g.ops.js.Stream(short(), ledgerName); err == nil {
				if err := st.Purge(short()); err == nil {
					t.Error("an operator purged LEDGER")
				}
				if err := st.DeleteMsg(short(), 1); err == nil {
					t.Error("an operator deleted a ledger message")
				}
			}
			cfg := jetstream.StreamConfig{Name: ledgerName, Subjects: []string{s.LedgerAll()}}
			if _, err := g.ops.js.UpdateStream(short(), cfg); err == nil {
				t.Error("an operator updated LEDGER")
			}
			if _, err := g.ops.js.CreateConsumer(short(), ledgerName, jetstream.ConsumerConfig{}); err == nil {
				t.Error("an operator created a consumer on LEDGER")
			}
			if _, err := g.ops.js.OrderedConsumer(short(), ledgerName, jetstream.OrderedConsumerConfig{}); err == nil {
				t.Error("an operator created an ordered consumer on LEDGER")
			}
			if err := g.ops.js.DeleteConsumer(short(), s.Stream(broker.StreamSubmit), broker.EnforcerConsumer); err == nil {
				t.Error("an operator deleted the enforcer's consumer")
			}
			if _, err := g.ops.js.Stream(short(), s.Stream(broker.StreamDeliver)); err == nil {
				t.Error("an operator read DELIVER")
			}
			if after := g.ops.snapshot(t); after.msgs != before.msgs {
				t.Errorf("ledger messages %d -> %d", before.msgs, after.msgs)
			}
			g.streamsIntact(t)
			g.ops.verified(t, done)
		})

		t.Run("ReplySubjectOfItsReads", func(t *testing.T) {
			// A direct get and a stream info whose answers are aimed at the
			// gateway's JetStream API: they come back into the operator's
			// own account.
			for _, target := range []string{"$JS.API.STREAM.DELETE.LEDGER", "$JS.API.STREAM.PURGE.DELIVER", s.Ledger(done)} {
				if err := g.ops.nc.PublishRequest(s.JSAPIPrefix()+".DIRECT.GET.LEDGER", target, []byte(`{"seq":1}`)); err != nil {
					t.Fatal(err)
				}
				if err := g.ops.nc.PublishRequest(s.JSAPIPrefix()+".STREAM.INFO.LEDGER", target, nil); err != nil {
					t.Fatal(err)
				}
				if err := g.ops.nc.PublishRequest(s.CtlHalt(done), target, []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			if err := g.ops.nc.FlushTimeout(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			g.streamsIntact(t)
			g.ops.verified(t, done)
			g.cast.legit(t)
		})

		t.Run("CannotHaltInAnotherOperatorsName", func(t *testing.T) {
			open := g.cast.open(t)
			head := g.ops.read(t, open.ID)
			// ops2's key, ops's name: the signature does not match ops's key.
			ops2 := g.operator(t, "ops2")
			if r := haltAs(t, ops2, "ops", open.ID); r.OK || r.Error == "" {
				t.Fatalf("a halt signed by ops2 in ops's name: %+v", r)
			}
			// An operator that is not registered.
			if r := haltAs(t, ops2, "nobody", open.ID); r.OK || r.Error == "" {
				t.Fatalf("a halt in the name of an unregistered operator: %+v", r)
			}
			// ops's own request, replayed for another run.
			if r := haltFor(t, g.ops, "ops", open.ID, g.cast.legit(t)); r.OK || r.Error == "" {
				t.Fatalf("a halt request sent on another run's subject: %+v", r)
			}
			if now := g.ops.read(t, open.ID); len(now) != len(head) {
				t.Fatalf("the run has %d events, had %d", len(now), len(head))
			}
			open.release()
			if err := <-open.done; err != nil {
				t.Fatalf("the run was not halted, it completes: %v", err)
			}
			g.cast.legit(t)
		})
	})
}

// haltAs sends a halt request for run in by's name, signed with the key of
// the connection's operator, and returns the gateway's answer.
func haltAs(t *testing.T, o *opReader, by, run string) schemas.HaltReply {
	t.Helper()
	return haltFor(t, o, by, run, run)
}

// haltFor sends a halt request naming run on the halt subject of subjRun.
func haltFor(t *testing.T, o *opReader, by, run, subjRun string) schemas.HaltReply {
	t.Helper()
	req := schemas.HaltRequest{Version: schemas.Version, Cmd: schemas.CmdHalt, RunID: run, By: by, Reason: "forged", SentAt: time.Now().UTC()}
	body, err := schemas.Encode(&req)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, o.key.Sign)
	if err != nil {
		t.Fatal(err)
	}
	m, err := o.nc.RequestWithContext(testCtx(t, 10*time.Second), o.subj.CtlHalt(subjRun), signed)
	if err != nil {
		t.Fatalf("halt request: %v", err)
	}
	var r schemas.HaltReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}
