package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

type identityConn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

// permBus starts a server whose users are research and writer (agents) and
// ops (an operator), with exactly the permissions serve gives them.
func permBus(t *testing.T) (*brokertest.Bus, map[string]nkeys.KeyPair) {
	t.Helper()
	keys := map[string]nkeys.KeyPair{}
	var ids []broker.Identity
	for _, id := range []string{"research", "writer"} {
		kp, pub := brokertest.NewKey(t)
		keys[id] = kp
		ids = append(ids, broker.Identity{ID: id, Type: schemas.TypeAgent, PublicKey: pub})
	}
	opsKP, opsPub := brokertest.NewKey(t)
	keys["ops"] = opsKP
	dir, err := broker.NewDirectory(ids)
	if err != nil {
		t.Fatal(err)
	}
	bus := brokertest.Start(t, brokertest.Options{Layout: broker.Layout{Identities: dir.All(), Operators: map[string]string{"ops": opsPub}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range ids {
		if err := broker.ProvisionIdentity(ctx, bus.JS, bus.Subjects, id.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	return bus, keys
}

func connectAs(t *testing.T, bus *brokertest.Bus, id string, kp nkeys.KeyPair) *identityConn {
	t.Helper()
	ic := &identityConn{errs: make(chan error, 64)}
	nc, err := broker.Connect(broker.ConnectConfig{
		URL: bus.Server.ClientURL(), Key: kp, InboxPrefix: broker.InboxPrefix(id), Name: id,
		ErrorHandler: func(_ *nats.Conn, _ *nats.Subscription, err error) { ic.errs <- err },
	})
	if err != nil {
		t.Fatalf("connect as %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	ic.nc = nc
	ic.js, err = jetstream.NewWithAPIPrefix(nc, bus.Subjects.JSAPIPrefix())
	if err != nil {
		t.Fatal(err)
	}
	return ic
}

// wantViolation waits for the server's asynchronous permission violation
// naming subject.
func (ic *identityConn) wantViolation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-ic.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("no permission violation for %q", subject)
		}
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestIdentityPermissions(t *testing.T) {
	bus, keys := permBus(t)
	research := connectAs(t, bus, "research", keys["research"])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Its own submit subject works, with the acknowledgement on its inbox.
	if _, err := research.js.Publish(ctx, bus.Subjects.Submit("research", "run1"), []byte("x")); err != nil {
		t.Fatalf("own submit subject: %v", err)
	}
	// Its own delivery consumer binds and reads.
	if _, err := research.js.Consumer(ctx, "DELIVER", broker.AgentConsumer("research")); err != nil {
		t.Fatalf("own consumer: %v", err)
	}

	publishes := []string{
		bus.Subjects.Submit("writer", "run1"),            // another agent's submit subject
		bus.Subjects.Deliver("writer", "h1", "invoke"),   // any delivery
		bus.Subjects.Ledger("run1"),                      // the ledger
		bus.Subjects.Alert("run1"),                       // alerts
		bus.Subjects.CtlHalt("run1"),                     // operator controls
		"$JS.API.STREAM.DELETE.LEDGER",                   // delete the ledger whole
		"$JS.API.STREAM.PURGE.LEDGER",                    // purge it
		"$JS.API.STREAM.UPDATE.LEDGER",                   // reconfigure it
		"$JS.API.STREAM.MSG.DELETE.LEDGER",               // delete a message
		"$JS.API.STREAM.CREATE.EVIL",                     // create streams
		"$JS.API.CONSUMER.CREATE.LEDGER",                 // read the ledger
		"$JS.API.CONSUMER.DELETE.DELIVER.agent_research", // drop its own consumer
		"$JS.API.CONSUMER.MSG.NEXT.DELIVER.agent_writer", // read another's deliveries
		"$JS.ACK.DELIVER.agent_writer.1.1.1.1.1",         // ack another's deliveries
	}
	for _, subj := range publishes {
		t.Run("publish "+subj, func(t *testing.T) {
			if err := research.nc.Publish(subj, []byte("{}")); err != nil {
				t.Fatal(err)
			}
			research.wantViolation(t, subj)
		})
	}
	for _, subj := range []string{"_INBOX_writer.>", bus.Subjects.DeliverFor("writer"), bus.Subjects.LedgerAll(), ">"} {
		t.Run("subscribe "+subj, func(t *testing.T) {
			if _, err := research.nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			research.wantViolation(t, subj)
		})
	}

	// Through the JetStream API the calls never succeed either.
	if err := research.js.DeleteStream(shortCtx(t), "LEDGER"); err == nil {
		t.Error("an agent deleted the ledger stream")
	}
	if _, err := research.js.Consumer(shortCtx(t), "DELIVER", broker.AgentConsumer("writer")); err == nil {
		t.Error("an agent bound another agent's consumer")
	}

	// Nothing got through: no foreign submission, the ledger intact.
	stream, err := bus.JS.Stream(ctx, "SUBMIT")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("tg.submit.>"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Msgs; n != 1 || info.State.Subjects["tg.submit.research.run1"] != 1 {
		t.Fatalf("SUBMIT holds %d messages %v, want only research's own", n, info.State.Subjects)
	}
	if _, err := bus.JS.Stream(ctx, "LEDGER"); err != nil {
		t.Fatalf("ledger stream: %v", err)
	}
}

func TestOperatorPermissions(t *testing.T) {
	bus, keys := permBus(t)
	ops := connectAs(t, bus, "ops", keys["ops"])
	sub, err := bus.Conn.SubscribeSync(bus.Subjects.CtlAll())
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := ops.nc.Publish(bus.Subjects.CtlHalt("run1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || m.Subject != bus.Subjects.CtlHalt("run1") {
		t.Fatalf("operator control message not received: %v", err)
	}
	for _, subj := range []string{bus.Subjects.Submit("research", "r"), "$JS.API.STREAM.DELETE.LEDGER", "$JS.API.STREAM.PURGE.LEDGER",
		"$JS.API.STREAM.MSG.DELETE.LEDGER", "$JS.API.CONSUMER.DELETE.LEDGER.projector",
		"$JS.API.CONSUMER.CREATE.LEDGER.projector.tg.ledger.>", bus.Subjects.Ledger("r")} {
		if err := ops.nc.Publish(subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		ops.wantViolation(t, subj)
	}
}

// TestOperatorReadsLedger: with its own credential an operator (an auditor)
// reads a run the way replay does, and the async error handler sees no
// violation.
func TestOperatorReadsLedger(t *testing.T) {
	bus, keys := permBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run := schemas.NewID()
	gw := ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)
	var head ledger.Head
	for i := range 3 {
		ev, err := schemas.NewEvent(run, schemas.EventRunCompleted, "", time.Now(), &schemas.RunCompleted{Hops: i})
		if err != nil {
			t.Fatal(err)
		}
		if head, _, err = gw.Append(ctx, head, ev); err != nil {
			t.Fatal(err)
		}
	}
	ops := connectAs(t, bus, "ops", keys["ops"])
	l := ledger.New(ops.js, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)
	got, err := l.Head(ctx, run)
	if err != nil || got != head {
		t.Fatalf("operator head: %+v %v", got, err)
	}
	recs, err := l.Read(ctx, run)
	if err != nil || len(recs) != 3 || ledger.Verify(run, recs, nil).Err() != nil {
		t.Fatalf("operator read %d events: %v", len(recs), err)
	}
	if _, err := l.Get(ctx, recs[1].StreamSeq); err != nil {
		t.Fatalf("operator get: %v", err)
	}
	select {
	case err := <-ops.errs:
		t.Fatalf("reading the ledger raised %v", err)
	default:
	}
}

func TestUnknownKeyCannotConnect(t *testing.T) {
	bus, _ := permBus(t)
	kp, _ := brokertest.NewKey(t)
	_, err := broker.Connect(broker.ConnectConfig{URL: bus.Server.ClientURL(), Key: kp, Options: []nats.Option{nats.MaxReconnects(0), nats.NoReconnect()}})
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("got %v, want an authorization error", err)
	}
	_, err = broker.Connect(broker.ConnectConfig{URL: bus.Server.ClientURL(), Options: []nats.Option{nats.NoReconnect()}})
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous: got %v, want an authorization error", err)
	}
}
