package benchkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/bench/benchkit"
)

// The workload per benchmark iteration is fixed; ns/op is per submission
// via the hops/s metric. Run with:
//
//	go test -run '^$' -bench . -benchtime 3x ./test/bench/benchkit
func bench(b *testing.B, f func(context.Context, benchkit.Workload) (benchkit.Result, error), w benchkit.Workload) {
	var total, secs float64
	for b.Loop() {
		res, err := f(context.Background(), w)
		if err != nil {
			b.Fatal(err)
		}
		total += float64(res.Messages)
		secs += res.Elapsed.Seconds()
	}
	b.ReportMetric(total/secs, "msgs/s")
}

var workload = benchkit.Workload{Runs: 200, Hops: 20, Conns: -1}

func BenchmarkRawRelay(b *testing.B) { bench(b, benchkit.RawRelay, workload) }

func BenchmarkGoverned(b *testing.B) { bench(b, benchkit.Governed, workload) }

func BenchmarkFloor(b *testing.B) { bench(b, benchkit.Floor, workload) }

func BenchmarkGovernedUnsigned(b *testing.B) {
	w := workload
	w.Unsigned = true
	bench(b, benchkit.Governed, w)
}

func BenchmarkGovernedRateLimited(b *testing.B) {
	w := workload
	w.RateLimit = true
	bench(b, benchkit.Governed, w)
}

func BenchmarkGovernedQuota(b *testing.B) {
	w := workload
	w.Quota = true
	bench(b, benchkit.Governed, w)
}

// TestWorkloadRuns checks the harness itself: every submission is governed
// and allowed, and the relay and the floor drain the same load. The floor
// stores one padded ledger event and one padded delivery per submission,
// each run's events chained by their expected sequences.
func TestWorkloadRuns(t *testing.T) {
	w := benchkit.Workload{Runs: 5, Hops: 4}
	for _, f := range []func(context.Context, benchkit.Workload) (benchkit.Result, error){benchkit.RawRelay, benchkit.Governed, benchkit.Floor} {
		res, err := f(context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		if res.Messages != 25 || res.Elapsed <= 0 {
			t.Fatalf("%s: %+v", res.Name, res)
		}
		if res.Name != "floor" {
			continue
		}
		l, d := res.Stored["LEDGER"], res.Stored["DELIVER"]
		if l.Msgs != 25 || d.Msgs != 25 || l.Bytes < 25*benchkit.FloorLedgerExtra || d.Bytes < 25*benchkit.FloorDeliverExtra {
			t.Fatalf("floor stored LEDGER %+v, DELIVER %+v: want 25 padded messages each", l, d)
		}
	}
}

// TestWorkloadInstances checks the partitioned harness: two enforcer
// instances govern every submission between them.
func TestWorkloadInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := benchkit.Governed(ctx, benchkit.Workload{Runs: 8, Hops: 4, Instances: 2, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 40 {
		t.Fatalf("%+v", res)
	}
}

// TestOpenLoopRuns checks the open-loop harness (smoke only, no figures):
// at a low offered rate every submission of the measured part reaches the
// target on every path (relay, governed, floor), and the quantiles are
// ordered.
func TestOpenLoopRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	o := benchkit.OpenLoop{Workload: benchkit.Workload{Hops: 4, Conns: -1}, Rate: 200, Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond}
	for _, f := range []func(context.Context, benchkit.OpenLoop) (benchkit.Latencies, error){benchkit.RawLatency, benchkit.GovernedLatency, benchkit.FloorLatency} {
		l, err := f(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if l.Sent < 90 || l.Delivered != l.Sent {
			t.Fatalf("%s: %d of %d delivered, want all of about 100", l.Name, l.Delivered, l.Sent)
		}
		if l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
			t.Fatalf("%s: quantiles out of order: %+v", l.Name, l)
		}
	}
}
