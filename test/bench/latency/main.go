// Command latency offers submissions at fixed rates, open loop, to the
// governed path and to a raw JetStream relay doing the same message work,
// and prints the latency from each submission's scheduled send time to its
// delivery at the target (p50, p90, p99, p99.9, max) for both, with what
// what the governed path (and, with -floor, the floor) adds (see
// docs/benchmarks.md).
//
//	go run ./test/bench/latency -rates 1000,5000,10000 -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/test/bench/benchkit"
)

func main() {
	var o benchkit.OpenLoop
	rates := flag.String("rates", "1000,5000,10000", "offered rates in hops/s, comma-separated")
	flag.IntVar(&o.Hops, "hops", 20, "delegations per run (after its root invoke)")
	flag.BoolVar(&o.Unsigned, "unsigned", false, "send unsigned envelopes")
	flag.IntVar(&o.Conns, "conns", -1, "extra connections the enforcer publishes on (-1: the gateway's default, as serve)")
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time at each rate")
	flag.DurationVar(&o.Warmup, "warmup", 2*time.Second, "time offered at each rate first, not counted")
	floor := flag.Bool("floor", false, "also offer each rate to the floor: the write-ahead append and delivery the design requires, with no decisions (benchkit.Floor)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	fmt.Fprintf(os.Stderr, "open loop, %d hops per run, %s measured after %s warm-up, GOMAXPROCS %d\n", 1+o.Hops, o.Duration, o.Warmup, runtime.GOMAXPROCS(0))
	fmt.Printf("%-9s %-10s %9s %9s %9s %9s %9s %9s %9s %9s\n", "offered", "path", "sent", "delivered", "p50", "p90", "p99", "p99.9", "max", "send lag")
	for _, r := range strings.Split(*rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "latency: bad rate:", r)
			os.Exit(2)
		}
		o.Rate = rate
		paths := []func(context.Context, benchkit.OpenLoop) (benchkit.Latencies, error){benchkit.RawLatency, benchkit.GovernedLatency}
		if *floor {
			paths = append(paths, benchkit.FloorLatency)
		}
		res := make([]benchkit.Latencies, len(paths))
		for i, f := range paths {
			if res[i], err = f(ctx, o); err != nil {
				fmt.Fprintln(os.Stderr, "latency:", err)
				os.Exit(1)
			}
			l := res[i]
			fmt.Printf("%-9.0f %-10s %9d %9d %9s %9s %9s %9s %9s %9s\n", l.Offered, l.Name, l.Sent, l.Delivered, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), ms(l.SendLag))
		}
		w := res[0]
		for _, g := range res[1:] {
			fmt.Printf("%-9.0f %-10s %9s %9s %9s %9s %9s %9s %9s\n", rate, "added", g.Name, "", ms(g.P50-w.P50), ms(g.P90-w.P90), ms(g.P99-w.P99), ms(g.P999-w.P999), ms(g.Max-w.Max))
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
