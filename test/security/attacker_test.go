package security_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// attacker is a raw nats.go connection holding one identity's key, with
// the same inbox prefix and JS API prefix a real client of that identity
// would use.
type attacker struct {
	id   string
	key  nkeys.KeyPair
	g    *gw
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func (g *gw) attacker(t testing.TB, id string) *attacker {
	t.Helper()
	a := &attacker{id: id, key: g.keys[id], g: g, errs: make(chan error, 1024)}
	nc, err := broker.Connect(broker.ConnectConfig{URL: g.url, Key: a.key, InboxPrefix: broker.InboxPrefix(id), Name: "attacker " + id,
		ErrorHandler: func(_ *nats.Conn, _ *nats.Subscription, err error) { pushErr(a.errs, err) },
		Options:      connOpts()})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	a.nc = nc
	if a.js, err = jetstream.NewWithAPIPrefix(nc, g.subj.JSAPIPrefix()); err != nil {
		t.Fatal(err)
	}
	return a
}

// nextSubject is the pull-request subject of the attacker's own
// consumer, as its account imports it.
func (a *attacker) nextSubject() string {
	return a.g.subj.JSAPIPrefix() + ".CONSUMER.MSG.NEXT." + a.g.subj.Stream(broker.StreamDeliver) + "." + broker.AgentConsumer(a.id)
}

// raw publishes a message as it is, reply subject and headers included,
// and flushes it to the server.
func (a *attacker) raw(t testing.TB, subject, reply string, data []byte, hdr nats.Header) {
	t.Helper()
	m := &nats.Msg{Subject: subject, Reply: reply, Data: data, Header: hdr}
	if err := a.nc.PublishMsg(m); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	if err := a.nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// submit publishes data on the attacker's own submit subject for run and
// returns its SUBMIT sequence.
func (a *attacker) submit(t testing.TB, run string, data []byte, hdr nats.Header) uint64 {
	t.Helper()
	m := &nats.Msg{Subject: a.g.subj.Submit(a.id, run), Data: data, Header: hdr}
	ack, err := a.js.PublishMsg(testCtx(t, 10*time.Second), m)
	if err != nil {
		t.Fatalf("submit on %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

// envelope returns an envelope from the attacker, sent now.
func (a *attacker) envelope(kind schemas.Kind) *schemas.Envelope {
	return &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: kind, From: a.id, SentAt: time.Now().UTC()}
}

// sign returns env's signed wire form.
func (a *attacker) sign(t testing.TB, env *schemas.Envelope) []byte {
	t.Helper()
	b, err := env.Sign(a.key.Sign)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs a compact JSON object as an envelope, whatever it holds.
func (a *attacker) signRaw(t testing.TB, obj string) []byte {
	t.Helper()
	b, _, err := schemas.SignObject([]byte(obj), schemas.SigningContext, a.key.Sign)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// message is an A2A message for invokes.
func message(text string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"messageId":%q,"role":"ROLE_USER","parts":[{"text":%q}]}`, schemas.NewID(), text))
}

// consumer binds the attacker's own delivery consumer.
func (a *attacker) consumer(t testing.TB) jetstream.Consumer {
	t.Helper()
	c, err := a.js.Consumer(testCtx(t, 10*time.Second), a.g.subj.Stream(broker.StreamDeliver), broker.AgentConsumer(a.id))
	if err != nil {
		t.Fatalf("%s binds its consumer: %v", a.id, err)
	}
	return c
}

// await pulls the attacker's deliveries, acking each, until one matches.
func (a *attacker) await(t testing.TB, within time.Duration, what string, match func(*schemas.Delivery) bool) (*schemas.Delivery, jetstream.Msg) {
	t.Helper()
	c := a.consumer(t)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		// One message per pull: a pull left waiting for more would take
		// deliveries nobody reads until they are redelivered.
		m, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			continue
		}
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		d, err := schemas.DecodeDelivery(m.Data())
		if err == nil && match(d) {
			return d, m
		}
		_ = m.Ack()
	}
	t.Fatalf("%s never received %s", a.id, what)
	return nil, nil
}

// waitPending waits until the attacker's consumer has a delivery waiting.
func (a *attacker) waitPending(t testing.TB) {
	t.Helper()
	c := a.consumer(t)
	brokertest.Eventually(t, 20*time.Second, "a delivery waits for "+a.id, func() bool {
		info, err := c.Info(testCtx(t, 5*time.Second))
		return err == nil && info.NumPending > 0
	})
}

// waitNoPull waits until no pull request waits on the attacker's consumer.
func (a *attacker) waitNoPull(t testing.TB) {
	t.Helper()
	c := a.consumer(t)
	brokertest.Eventually(t, 20*time.Second, "no pull waits on "+a.id+"'s consumer", func() bool {
		info, err := c.Info(testCtx(t, 5*time.Second))
		return err == nil && info.NumWaiting == 0
	})
}

// denial waits for the denial of the submission at SUBMIT sequence seq.
func (a *attacker) denial(t testing.TB, seq uint64) *schemas.Delivery {
	t.Helper()
	d, m := a.await(t, 20*time.Second, fmt.Sprintf("the denial of submission %d", seq), func(d *schemas.Delivery) bool {
		return d.Kind == schemas.DeliverDenied && d.Denial != nil && d.Denial.SubmitSeq == seq
	})
	_ = m.Ack()
	return d
}

// wantDenied submits data and asserts that it is denied for reason (any
// reason when empty) with a message containing contains.
func (a *attacker) wantDenied(t testing.TB, run string, data []byte, hdr nats.Header, reason schemas.Reason, contains string) *schemas.Delivery {
	t.Helper()
	d := a.denial(t, a.submit(t, run, data, hdr))
	if reason != "" && d.Denial.Reason != reason || !strings.Contains(d.Denial.Message, contains) {
		t.Fatalf("denied with %s %q, want %s containing %q", d.Denial.Reason, d.Denial.Message, reason, contains)
	}
	return d
}

// barrier submits a marker on run and waits for its denial: the shard
// that owns run has then handled everything submitted on run before.
func (a *attacker) barrier(t testing.TB, run string) {
	t.Helper()
	a.denial(t, a.submit(t, run, []byte(`{"marker":"`+schemas.NewID()+`"}`), nil))
}

// wantViolation waits for the server's permission violation naming
// subject (an asynchronous error on the connection).
func (a *attacker) wantViolation(t testing.TB, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-a.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("no permission violation for %q", subject)
		}
	}
}
