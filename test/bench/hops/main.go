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
	floor := flag.Bool("floor", false, "also measure the floor: the ledger append (expected sequence, waited for) and the delivery the design requires, padded to the governed sizes, with no decisions (benchkit.Floor)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of each governed round's drain (not its loading) to FILE.<round>")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	fmt.Fprintf(os.Stderr, "%d submissions per measurement (%d runs x (1 root + %d hops)), GOMAXPROCS %d\n", w.Total(), w.Runs, w.Hops, runtime.GOMAXPROCS(0))
	var raw, gov, flo, rawCPU, govCPU, floCPU []float64
	type measurement struct {
		f        func(context.Context, benchkit.Workload) (benchkit.Result, error)
		out, cpu *[]float64
		profile  bool
	}
	for r := 1; r <= *rounds; r++ {
		ms := []measurement{{benchkit.RawRelay, &raw, &rawCPU, false}, {benchkit.Governed, &gov, &govCPU, *cpuprofile != ""}}
		if *floor {
			ms = append(ms, measurement{benchkit.Floor, &flo, &floCPU, false})
		}
		for _, m := range ms {
			wm := w
			var prof *os.File
			if m.profile {
				var err error
				if prof, err = os.Create(fmt.Sprintf("%s.%d", *cpuprofile, r)); err != nil {
					fmt.Fprintln(os.Stderr, "hops:", err)
					os.Exit(1)
				}
				wm.Profile = prof
			}
			res, err := m.f(ctx, wm)
			if prof != nil {
				prof.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "hops:", err)
				os.Exit(1)
			}
			*m.out = append(*m.out, res.PerSecond())
			perMsg := float64(res.CPU.Microseconds()) / float64(res.Messages)
			*m.cpu = append(*m.cpu, perMsg)
			fmt.Fprintf(os.Stderr, "round %d  %-10s %8.0f msg/s  (%s, process CPU %.1f µs/msg)\n", r, res.Name, res.PerSecond(), res.Elapsed.Round(time.Millisecond), perMsg)
			if res.Name != "raw relay" {
				for _, s := range []string{"LEDGER", "DELIVER", "TIMERS", "SUBMIT"} {
					u := res.Stored[s]
					fmt.Fprintf(os.Stderr, "          %-8s %10d bytes %8d msgs  %6.0f bytes/hop\n", s, u.Bytes, u.Msgs, float64(u.Bytes)/float64(res.Messages))
				}
			}
		}
	}
	mr, mg := median(raw), median(gov)
	fmt.Printf("raw relay   %8.0f msg/s (median of %d)\n", mr, len(raw))
	fmt.Printf("governed    %8.0f hops/s (median of %d)\n", mg, len(gov))
	fmt.Printf("ratio       %8.2f\n", mg/mr)
	fmt.Printf("process CPU raw %.1f µs/msg, governed %.1f µs/hop (medians; enforcer or relay plus the embedded server)\n", median(rawCPU), median(govCPU))
	if *floor {
		mf := median(flo)
		fmt.Printf("floor       %8.0f hops/s (median of %d), ratio to the raw relay %.2f, process CPU %.1f µs/hop\n", mf, len(flo), mf/mr, median(floCPU))
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
