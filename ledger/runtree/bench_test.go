package runtree_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
)

// benchHops is the size of the benchmark run: 10,000 hops, each an
// allowed invoke and a reply, both signed: 20,002 ledger events.
const benchHops = 10000

// benchLedger appends the benchmark run to a fresh embedded JetStream
// ledger (in-process connection, as replay --data reads) and returns it
// with the senders' keys.
func benchLedger(b *testing.B) (*ledger.Ledger, *brokertest.Bus, ledger.Keys) {
	b.Helper()
	bus := brokertest.Start(b, brokertest.Options{})
	l := ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := runtreetest.Wide("bench", time.Unix(1767225600, 0), benchHops).AppendTo(ctx, l); err != nil {
		b.Fatal(err)
	}
	keys := ledger.Keys{}
	for _, m := range runtreetest.WideCast() {
		k, err := broker.ParsePublicKey(runtreetest.PublicKey(m.ID))
		if err != nil {
			b.Fatal(err)
		}
		keys.Add(m.ID, k)
	}
	return l, bus, keys
}

// BenchmarkReplay10k is what tollgate replay does with a 10,000-hop run:
// read the run's ledger subject, verify the hash chain and the Ed25519
// signature of every admitted envelope (20,000) while reading, and build
// the tree. The sub-benchmarks add the text rendering, and measure the
// raw JetStream baseline: the same messages read with an ordered
// consumer, not even decoded.
func BenchmarkReplay10k(b *testing.B) {
	l, bus, keys := benchLedger(b)
	ctx := context.Background()
	replay := func(b *testing.B, keys ledger.Keys, render bool) {
		for b.Loop() {
			v := ledger.NewVerifier("bench", keys)
			err := l.Scan(ctx, "bench", func(r ledger.Record) error { v.Add(r); return nil })
			res := v.Finish()
			if err != nil {
				b.Fatal(err)
			}
			if !res.OK() || keys != nil && res.Checked != 2*benchHops || res.Events != 2*benchHops+2 {
				b.Fatalf("%s (%d signatures checked)", res.Summary(), res.Checked)
			}
			tree, err := runtree.FromVerified(res)
			if err != nil || len(tree.Hops) != benchHops {
				b.Fatal(err)
			}
			if render {
				if err := tree.WriteText(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(2*benchHops+2), "events/op")
	}
	b.Run("read+verify+signatures+tree", func(b *testing.B) { replay(b, keys, false) })
	b.Run("read+verify+signatures+tree+text", func(b *testing.B) { replay(b, keys, true) })
	b.Run("read+verify+tree(no-keys)", func(b *testing.B) { replay(b, nil, false) })
	b.Run("raw-jetstream-read", func(b *testing.B) {
		for b.Loop() {
			if n := rawRead(b, bus.JS, bus.Subjects); n != 2*benchHops+2 {
				b.Fatalf("read %d messages", n)
			}
		}
		b.ReportMetric(float64(2*benchHops+2), "events/op")
	})
}

// rawRead reads every message of the benchmark run's subject with an
// ordered consumer and does nothing with them: the floor for any replay.
func rawRead(b *testing.B, js jetstream.JetStream, s broker.Subjects) int {
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, s.Stream(broker.StreamLedger), jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.Ledger("bench")}})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for n < 2*benchHops+2 {
		batch, err := cons.Fetch(min(512, 2*benchHops+2-n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		for range batch.Messages() {
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkVerify10k is the verification alone, on records in memory
// (decoded from their raw bytes by the verifier, every signature checked).
func BenchmarkVerify10k(b *testing.B) {
	built, err := runtreetest.Wide("bench", time.Unix(1767225600, 0), benchHops).Records()
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]ledger.Record, len(built))
	for i, r := range built {
		raw[i] = ledger.Record{Raw: r.Raw}
	}
	keys := ledger.Keys{}
	for _, m := range runtreetest.WideCast() {
		k, _ := broker.ParsePublicKey(runtreetest.PublicKey(m.ID))
		keys.Add(m.ID, k)
	}
	b.Run("ledger.Verify", func(b *testing.B) {
		for b.Loop() {
			if v := ledger.Verify("bench", raw, keys); !v.OK() || v.Checked != 2*benchHops {
				b.Fatal(v.Summary())
			}
		}
	})
}
