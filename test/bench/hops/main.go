// Command hops measures governed hops per second against a raw JetStream
// relay doing the same message work, alternating rounds in one process, and
// prints both with their ratio (see docs/benchmarks.md).
//
//	go run ./test/bench/hops -runs 500 -hops 20 -rounds 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/tollgate/tollgate/test/bench/benchkit"
)

func main() {
	var w benchkit.Workload
	rounds := flag.Int("rounds", 3, "alternating rounds of each measurement")
	flag.IntVar(&w.Runs, "runs", 500, "runs")
	flag.IntVar(&w.Hops, "hops", 20, "delegations per run (after its root invoke)")
	flag.BoolVar(&w.Unsigned, "unsigned", false, "send unsigned envelopes")
	flag.BoolVar(&w.RateLimit, "rate-limit", false, "turn the fleet-wide rate limit on (never reached)")
	flag.BoolVar(&w.Quota, "quota", false, "turn a per-agent token quota on (never reached; every hop reserves)")
	flag.BoolVar(&w.NoGuardrails, "no-guardrails", false, "turn message scanning off (guardrails.disabled)")
	flag.IntVar(&w.Shards, "shards", 0, "enforcer shards (0: default)")
	flag.IntVar(&w.Conns, "conns", -1, "extra connections the enforcer publishes on (-1: the gateway's default, as serve)")
	flag.IntVar(&w.Instances, "instances", 0, "enforcer instances over partitioned runs (0: one, unpartitioned)")
	flag.IntVar(&w.Partitions, "partitions", 0, "run partitions with -instances (0: 8)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	fmt.Fprintf(os.Stderr, "%d submissions per measurement (%d runs x (1 root + %d hops)), GOMAXPROCS %d\n", w.Total(), w.Runs, w.Hops, runtime.GOMAXPROCS(0))
	var raw, gov, rawCPU, govCPU []float64
	for r := 1; r <= *rounds; r++ {
		for _, m := range []struct {
			f        func(context.Context, benchkit.Workload) (benchkit.Result, error)
			out, cpu *[]float64
		}{{benchkit.RawRelay, &raw, &rawCPU}, {benchkit.Governed, &gov, &govCPU}} {
			res, err := m.f(ctx, w)
			if err != nil {
				fmt.Fprintln(os.Stderr, "hops:", err)
				os.Exit(1)
			}
			*m.out = append(*m.out, res.PerSecond())
			us := float64(res.CPUPerMessage()) / float64(time.Microsecond)
			*m.cpu = append(*m.cpu, us)
			fmt.Fprintf(os.Stderr, "round %d  %-10s %8.0f msg/s  %6.1f us CPU/msg  (%s)\n", r, res.Name, res.PerSecond(), us, res.Elapsed.Round(time.Millisecond))
		}
	}
	mr, mg := median(raw), median(gov)
	fmt.Printf("raw relay   %8.0f msg/s (median of %d)\n", mr, len(raw))
	fmt.Printf("governed    %8.0f hops/s (median of %d)\n", mg, len(gov))
	fmt.Printf("ratio       %8.2f\n", mg/mr)
	// CPU per message moves much less than the rates on a shared machine:
	// on a quiet, CPU-bound one the rate ratio tends to the CPU ratio.
	mrc, mgc := median(rawCPU), median(govCPU)
	fmt.Printf("CPU/msg     raw relay %.1f us, governed %.1f us (medians), raw/governed %.2f\n", mrc, mgc, mrc/mgc)
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
