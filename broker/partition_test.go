package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// TestPartitionMatchesServerMapping publishes submissions for many runs to
// a SUBMIT stream provisioned with partitions and checks that the server's
// {{partition(n,2)}} mapping stored each under the partition Partition
// computes (the enforcer sets its timers' partitions with it), with caller
// and run intact; a subject with an extra token is not mapped.
func TestPartitionMatchesServerMapping(t *testing.T) {
	const n = 7
	b := brokertest.Start(t, brokertest.Options{Open: true, Streams: broker.StreamOptions{Partitions: n}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := b.Subjects
	runs := map[uint64]string{}
	seen := map[int]bool{}
	for range 200 {
		run := schemas.NewID()
		ack, err := b.JS.Publish(ctx, s.Submit("alice", run), []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		runs[ack.Sequence] = run
	}
	stream, err := b.JS.Stream(ctx, s.Stream(broker.StreamSubmit))
	if err != nil {
		t.Fatal(err)
	}
	for seq, run := range runs {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		p, caller, got, ok := s.ParsePartitioned(m.Subject)
		if !ok || caller != "alice" || got != run {
			t.Fatalf("stored as %s: parsed %d %q %q %v", m.Subject, p, caller, got, ok)
		}
		if want := broker.Partition(run, n); p != want {
			t.Fatalf("server put run %s in partition %d, Partition says %d", run, p, want)
		}
		if m.Subject != s.Partitioned(p, "alice", run) {
			t.Fatalf("stored as %s, want %s", m.Subject, s.Partitioned(p, "alice", run))
		}
		seen[p] = true
	}
	if len(seen) != n {
		t.Fatalf("200 runs landed in %d of %d partitions", len(seen), n)
	}
	ack, err := b.JS.Publish(ctx, s.Submit("alice", "r1")+".extra", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := s.ParsePartitioned(m.Subject); ok || m.Subject != s.Submit("alice", "r1")+".extra" {
		t.Fatalf("a malformed submit subject was stored as %s", m.Subject)
	}
	// With the consumer of unmapped submissions beside them, the partition
	// consumers' acks remove what they acked from the work queue, and the
	// unmapped one is its consumer's alone.
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, s.Stream(broker.StreamSubmit), jetstream.ConsumerConfig{
		Durable: broker.EnforcerConsumer, FilterSubject: s.SubmitUnmapped(), AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	for p := range n {
		c, err := b.JS.CreateOrUpdateConsumer(ctx, s.Stream(broker.StreamSubmit), jetstream.ConsumerConfig{
			Durable: broker.PartitionConsumer(broker.EnforcerConsumer, p), FilterSubject: s.SubmitPartition(p),
			AckPolicy: jetstream.AckExplicitPolicy, PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{broker.PartitionGroup},
		})
		if err != nil {
			t.Fatalf("partition %d consumer: %v", p, err)
		}
		batch, err := c.Fetch(1000, jetstream.FetchPriorityGroup(broker.PartitionGroup), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("SUBMIT keeps %d messages after every partition's were acked, want the unmapped one", info.State.Msgs)
	}
}

func TestParsePartitioned(t *testing.T) {
	s := broker.DefaultSubjects()
	for _, tc := range []struct {
		subject string
		ok      bool
	}{
		{"tg.part.3.alice.r1", true},
		{"tg.part.x.alice.r1", false},
		{"tg.part.-1.alice.r1", false},
		{"tg.part.3.alice", false},
		{"tg.part.3.alice.r1.x", false},
		{"tg.submit.alice.r1", false},
	} {
		p, caller, run, ok := s.ParsePartitioned(tc.subject)
		if ok != tc.ok || ok && (p != 3 || caller != "alice" || run != "r1") {
			t.Errorf("%s: %d %q %q %v, want ok=%v", tc.subject, p, caller, run, ok, tc.ok)
		}
	}
	if run, key, ok := s.ParseTimerFireIn(s.TimerFireIn(5, "r1", broker.TimerRunKey)); !ok || run != "r1" || key != broker.TimerRunKey {
		t.Errorf("timer fire: %q %q %v", run, key, ok)
	}
}
