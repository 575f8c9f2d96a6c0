package security_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// opReader reads the ledger as an operator does: through its account's
// imports (stream info and direct gets under the JS API prefix), never a
// consumer.
type opReader struct {
	id   string
	key  nkeys.KeyPair
	nc   *nats.Conn
	js   jetstream.JetStream
	led  *ledger.Ledger
	subj broker.Subjects
	errs chan error
}

func (g *gw) operator(t testing.TB, id string) *opReader {
	t.Helper()
	o := &opReader{id: id, key: g.keys[id], subj: g.subj, errs: make(chan error, 256)}
	nc, err := broker.Connect(broker.ConnectConfig{URL: g.url, Key: g.keys[id], InboxPrefix: broker.InboxPrefix(id), Name: "operator " + id,
		ErrorHandler: func(_ *nats.Conn, _ *nats.Subscription, err error) { pushErr(o.errs, err) },
		Options:      connOpts()})
	if err != nil {
		t.Fatalf("connect operator %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	o.nc = nc
	if o.js, err = jetstream.NewWithAPIPrefix(nc, g.subj.JSAPIPrefix()); err != nil {
		t.Fatal(err)
	}
	o.led = ledger.New(o.js, g.subj.Stream(broker.StreamLedger), g.subj)
	return o
}

// read returns every event of a run, stepping with direct gets; none when
// the run has no events.
func (o *opReader) read(t testing.TB, run string) []ledger.Record {
	t.Helper()
	ctx := testCtx(t, 20*time.Second)
	head, err := o.led.Head(ctx, run)
	if err != nil {
		t.Fatalf("ledger head of %s: %v", run, err)
	}
	var recs []ledger.Record
	for seq := uint64(0); seq < head.StreamSeq; {
		r, err := o.led.Next(ctx, run, seq)
		if err != nil {
			t.Fatalf("read run %s: %v", run, err)
		}
		if r.StreamSeq == 0 {
			break
		}
		recs = append(recs, r)
		seq = r.StreamSeq
	}
	return recs
}

// verified reads a run and checks its chain with ledger.Verify.
func (o *opReader) verified(t testing.TB, run string) []ledger.Record {
	t.Helper()
	recs := o.read(t, run)
	if len(recs) == 0 {
		t.Fatalf("run %s has no ledger", run)
	}
	if err := ledger.Verify(run, recs, nil).Err(); err != nil {
		t.Fatalf("run %s does not verify: %v", run, err)
	}
	return recs
}

// ledgerState is what the operator sees of the whole ledger: its message
// count and every subject with its count.
type ledgerState struct {
	msgs     uint64
	subjects map[string]uint64
}

func (o *opReader) snapshot(t testing.TB) ledgerState {
	t.Helper()
	ctx := testCtx(t, 20*time.Second)
	s, err := o.js.Stream(ctx, o.subj.Stream(broker.StreamLedger))
	if err != nil {
		t.Fatalf("operator: ledger stream: %v", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(o.subj.LedgerAll()))
	if err != nil {
		t.Fatalf("operator: ledger stream info: %v", err)
	}
	return ledgerState{msgs: info.State.Msgs, subjects: maps.Clone(info.State.Subjects)}
}

// onlyOwnRejections asserts that the ledger lost nothing since before,
// that no run present before changed, and that whatever was added is a
// rejection entry of attacker's own (one hop.denied from attacker), apart
// from the runs in allowed. It returns the attacker's new entries.
func (o *opReader) onlyOwnRejections(t testing.TB, before ledgerState, attacker string, allowed ...string) []string {
	t.Helper()
	after := o.snapshot(t)
	if after.msgs < before.msgs {
		t.Fatalf("the ledger lost messages: %d before, %d after", before.msgs, after.msgs)
	}
	var own []string
	for subj, n := range after.subjects {
		run, _ := o.subj.LedgerRun(subj)
		if slices.Contains(allowed, run) {
			continue
		}
		was, had := before.subjects[subj]
		switch {
		case had && was != n:
			t.Errorf("run %s changed: %d events before, %d after", run, was, n)
		case !had:
			recs := o.read(t, run)
			if !strings.HasPrefix(run, ledger.RejectedPrefix) || len(recs) != 1 || recs[0].Event.Type != schemas.EventHopDenied {
				t.Errorf("new ledger subject %s (%d events) is not a rejection entry", subj, len(recs))
				continue
			}
			if d := decisionOf(t, recs[0]); d.From != attacker {
				t.Errorf("new rejection entry %s is from %q, want %q", run, d.From, attacker)
			}
			own = append(own, run)
		}
	}
	for subj := range before.subjects {
		if _, ok := after.subjects[subj]; !ok {
			t.Errorf("ledger subject %s is gone", subj)
		}
	}
	return own
}

// streamsIntact checks, in the gateway account (external variant only),
// that every stream and consumer the gateway relies on is still there.
func (g *gw) streamsIntact(t testing.TB) {
	t.Helper()
	if g.admin == nil {
		return
	}
	ctx := testCtx(t, 20*time.Second)
	for _, name := range []string{broker.StreamSubmit, broker.StreamDeliver, broker.StreamLedger, broker.StreamTimers, broker.StreamAlerts, "KV_" + broker.BucketRate} {
		s, err := g.admin.Stream(ctx, g.subj.Stream(name))
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if name == broker.StreamLedger {
			cfg := s.CachedInfo().Config
			if !cfg.DenyDelete || !cfg.DenyPurge || cfg.AllowRollup {
				t.Fatalf("LEDGER was reconfigured: %+v", cfg)
			}
		}
	}
	for stream, cons := range map[string][]string{
		broker.StreamSubmit:  {broker.EnforcerConsumer},
		broker.StreamTimers:  {broker.TimersConsumer(broker.EnforcerConsumer)},
		broker.StreamDeliver: {broker.AgentConsumer("tomas"), broker.AgentConsumer("writer"), broker.AgentConsumer("orchestrator"), broker.AgentConsumer("research")},
	} {
		for _, c := range cons {
			if _, err := g.admin.Consumer(ctx, g.subj.Stream(stream), c); err != nil {
				t.Fatalf("consumer %s of %s: %v", c, stream, err)
			}
		}
	}
}

// lastOn returns the last message on subject in a stream of the gateway
// account (external variant only); nil when there is none.
func (g *gw) lastOn(t testing.TB, stream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	s, err := g.admin.Stream(ctx, g.subj.Stream(stream))
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("last message on %s: %v", subject, err)
	}
	return m
}

func pushErr(ch chan error, err error) {
	select {
	case ch <- err:
	default:
	}
}
