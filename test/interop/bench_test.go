package interop

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/test/bench/benchkit"
)

// BenchmarkA2AIngress measures what the gateway adds to an A2A call: the
// same a2a-go/v2 client calls the same a2a-go/v2 server directly, and
// through the ingress and a bridge (a governed hop: token, envelope signed
// by the ingress, enforcer, ledger, delivery, bridge, reply, ledger,
// delivery). Latency p50/p99 of sequential calls and throughput of 16
// concurrent callers, with the raw-JetStream relay baseline in the same
// run (docs/benchmarks.md).
func BenchmarkA2AIngress(b *testing.B) {
	e := newEnv(b)
	echo := &executor{do: func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		return "ok", map[string]any{"input_tokens": 1, "output_tokens": 1}, nil
	}}
	url := a2aServer(b, "planner", echo)
	e.bridge("planner", url)
	ctx := context.Background()
	direct := func() *a2aclient.Client {
		card, err := agentcard.NewResolver(http.DefaultClient).Resolve(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		c, err := a2aclient.NewFromCard(ctx, card, a2aclient.WithJSONRPCTransport(http.DefaultClient))
		return must(b, c, err)
	}()
	governed := e.client("planner", e.token("alice"))
	call := func(c *a2aclient.Client) {
		res, err := c.SendMessage(ctx, userText("ping"))
		if err != nil {
			b.Fatal(err)
		}
		if t, ok := res.(*a2a.Task); !ok || t.Status.State != a2a.TaskStateCompleted {
			b.Fatalf("call: %v", res)
		}
	}
	for name, c := range map[string]*a2aclient.Client{"direct": direct, "ingress": governed} {
		b.Run(name+"/sequential", func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				call(c)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
		b.Run(name+"/concurrent16", func(b *testing.B) {
			var n atomic.Int64
			start := time.Now()
			var wg sync.WaitGroup
			per := max(b.N/16, 1)
			for range 16 {
				wg.Go(func() {
					for range per {
						call(c)
						n.Add(1)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "calls/s")
		})
	}
	b.Run("raw-jetstream-relay", func(b *testing.B) {
		// At most 3 relay measurements, whatever -benchtime says: each is
		// 2,100 messages.
		var total, msgs float64
		for i := 0; i < b.N && i < 3; i++ {
			r, err := benchkit.RawRelay(ctx, benchkit.Workload{Runs: 100, Hops: 20, Conns: -1})
			if err != nil {
				b.Fatal(err)
			}
			total += r.Elapsed.Seconds()
			msgs += float64(r.Messages)
		}
		b.ReportMetric(msgs/total, "msg/s")
	})
}
