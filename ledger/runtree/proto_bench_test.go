package runtree_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
)

func BenchmarkProtoRead(b *testing.B) {
	bus := brokertest.Start(b, brokertest.Options{})
	l := ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects)
	ctx := context.Background()
	t0 := time.Now()
	if _, err := runtreetest.Wide("bench", time.Unix(1700000000, 0), 10000).AppendTo(ctx, l); err != nil {
		b.Fatal(err)
	}
	b.Logf("append took %s", time.Since(t0))
	b.ResetTimer()
	for b.Loop() {
		recs, err := l.Read(ctx, "bench")
		if err != nil || len(recs) != 20002 {
			b.Fatal(err, len(recs))
		}
	}
}
