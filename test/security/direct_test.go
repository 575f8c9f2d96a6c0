package security_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// TestDirectAccess: an agent publishing or subscribing outside its
// imports is refused by the server (a permission violation) and nothing
// is written anywhere; JetStream calls through the API prefix for what it
// does not import fail; connecting without a registered key fails.
func TestDirectAccess(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		s := g.subj
		open := g.cast.open(t)
		mallory := g.attacker(t, "mallory")
		js := s.JSAPIPrefix()
		publishes := []struct{ name, subject string }{
			{"OtherSubmitSubject", s.Submit("tomas", open.ID)},
			{"OtherAgentSubmitSubject", s.Submit("writer", schemas.NewID())},
			{"StreamDeleteLedger", "$JS.API.STREAM.DELETE.LEDGER"},
			{"StreamPurgeDeliver", "$JS.API.STREAM.PURGE.DELIVER"},
			{"ConsumerDeleteEnforcer", "$JS.API.CONSUMER.DELETE.SUBMIT.enforcer"},
			{"StreamCreate", "$JS.API.STREAM.CREATE.EVIL"},
			{"PrefixedStreamDeleteLedger", js + ".STREAM.DELETE.LEDGER"},
			{"PrefixedStreamInfoLedger", js + ".STREAM.INFO.LEDGER"},
			{"PrefixedDirectGetLedger", js + ".DIRECT.GET.LEDGER"},
			{"PrefixedConsumerCreateLedger", js + ".CONSUMER.CREATE.LEDGER"},
			{"PrefixedPullOtherAgent", js + ".CONSUMER.MSG.NEXT.DELIVER." + broker.AgentConsumer("writer")},
			{"PrefixedOwnConsumerDelete", js + ".CONSUMER.DELETE.DELIVER." + broker.AgentConsumer("mallory")},
			{"LedgerSubject", s.Ledger(open.ID)},
			{"DeliverySubject", s.Deliver("tomas", schemas.NewID(), schemas.DeliverReply)},
			{"AlertSubject", s.Alert(open.ID)},
			{"TimerSubject", s.TimerFire(open.ID, broker.TimerRunKey)},
			{"HaltByAgent", s.CtlHalt(open.ID)},
			{"RateBucketKey", "$KV." + broker.BucketRate + ".rejected.mallory"},
			{"OtherAgentsAck", "$JS.ACK.DELIVER." + broker.AgentConsumer("writer") + ".1.1.1.1.0"},
			{"OtherInbox", "_INBOX_tomas.abc"},
			{"SystemAccount", "$SYS.REQ.SERVER.PING"},
		}
		for _, tc := range publishes {
			t.Run("Publish"+tc.name, func(t *testing.T) {
				before := g.ops.snapshot(t)
				mallory.raw(t, tc.subject, "", []byte(`{"attack":"direct"}`), nil)
				mallory.wantViolation(t, tc.subject)
				mallory.barrier(t, schemas.NewID())
				if own := g.ops.onlyOwnRejections(t, before, "mallory"); len(own) != 1 {
					t.Fatalf("%d rejection entries, want only the barrier's", len(own))
				}
				g.streamsIntact(t)
			})
		}
		subscribes := []struct{ name, subject string }{
			{"OtherInbox", "_INBOX_tomas.>"},
			{"Deliveries", s.DeliverAll()},
			{"Ledger", s.LedgerAll()},
			{"Alerts", s.AlertAll()},
			{"Submissions", s.SubmitAll()},
			{"JSAPI", "$JS.API.>"},
			{"Everything", ">"},
		}
		for _, tc := range subscribes {
			t.Run("Subscribe"+tc.name, func(t *testing.T) {
				sub, err := mallory.nc.SubscribeSync(tc.subject)
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
				mallory.wantViolation(t, tc.subject)
				// Traffic goes on; none of it reaches the refused subscription.
				g.cast.legit(t)
				if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
					t.Fatalf("a refused subscription received %s", m.Subject)
				}
			})
		}

		t.Run("JetStreamCallsOutsideImports", func(t *testing.T) {
			short := func() context.Context { return testCtx(t, 500*time.Millisecond) }
			if err := mallory.js.DeleteStream(short(), s.Stream(broker.StreamLedger)); err == nil {
				t.Error("an agent deleted LEDGER")
			}
			if err := mallory.js.DeleteConsumer(short(), s.Stream(broker.StreamDeliver), broker.AgentConsumer("mallory")); err == nil {
				t.Error("an agent deleted its own consumer")
			}
			if _, err := mallory.js.Consumer(short(), s.Stream(broker.StreamDeliver), broker.AgentConsumer("writer")); err == nil {
				t.Error("an agent bound another agent's consumer")
			}
			if _, err := mallory.js.Stream(short(), s.Stream(broker.StreamLedger)); err == nil {
				t.Error("an agent read the ledger's stream info")
			}
			if _, err := mallory.js.CreateConsumer(short(), s.Stream(broker.StreamLedger), jetstream.ConsumerConfig{}); err == nil {
				t.Error("an agent created a consumer on LEDGER")
			}
			if _, err := mallory.js.CreateStream(short(), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
				t.Error("an agent created a stream")
			}
			g.streamsIntact(t)
			g.cast.legit(t)
		})

		t.Run("ConnectWithoutRegisteredKey", func(t *testing.T) {
			if nc, err := nats.Connect(g.url, connOpts()...); err == nil {
				nc.Close()
				t.Error("connected without credentials")
			}
			stranger, err := broker.NewKey()
			if err != nil {
				t.Fatal(err)
			}
			if nc, err := broker.Connect(broker.ConnectConfig{URL: g.url, Key: stranger, Options: connOpts()}); err == nil {
				nc.Close()
				t.Error("connected with an unregistered key")
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Logf("refused with %v", err)
			}
		})
	})
}
