package policy

import (
	"fmt"
	"testing"

	"github.com/tollgate/tollgate/test/bench/cputime"
)

// BenchmarkDecide measures one decision with 1,000 agents and the shipped
// policies alone, 200 and 2,000 policies (see scalePolicies), in the same run on the full scan
// (path=scan: decideScan, Decide as it was before the policy index) and on
// Decide (path=decide). path=decide-firing is Decide on the same requests
// with a context that makes the conditions of the type-level forbids true
// (tainted, deep, cyclic, a quarantined ancestor: see firingRequests),
// where the guards (guard.go) exclude far fewer candidates. Figures in
// docs/benchmarks.md.
//
// Each path decides every request once before it is timed: what is
// measured is the steady state of an enforcer deciding hop after hop, not
// the first touch of each request's data, which dominated a short run
// (-benchtime 100x is 0.4 ms of decisions: one page fault or GC cycle
// moved it from 4 to 50 us). Beside the wall time it reports the CPU time
// per decision (cpu-ns/op), which a shared machine disturbs much less.
func BenchmarkDecide(b *testing.B) {
	const agents = 1000
	dir := scaleDirectory(b, agents)
	reqs := scaleRequests(b, dir, agents, 1024)
	firing := firingRequests(reqs)
	for _, n := range []int{0, 200, 2000} {
		set, err := Compile(scalePolicies(b, n, agents))
		if err != nil {
			b.Fatal(err)
		}
		n := set.Len()
		e, err := NewEngine(set, dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range []struct {
			name   string
			decide func(Request) Decision
			reqs   []Request
		}{{"scan", e.decideScan, reqs}, {"decide", e.Decide, reqs}, {"decide-firing", e.Decide, firing}} {
			b.Run(fmt.Sprintf("policies=%d/path=%s", n, path.name), func(b *testing.B) {
				for _, r := range path.reqs { // warm the caches
					path.decide(r)
				}
				i := 0
				cputime.Loop(b, func() {
					path.decide(path.reqs[i%len(path.reqs)])
					i++
				})
			})
		}
	}
}
