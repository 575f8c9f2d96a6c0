package fault_test

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	flagSoak     = flag.Duration("fault.soak", 0, "run TestSoak for this long (not in CI: go test ./test/fault -run TestSoak -fault.soak 10m -timeout 30m -v)")
	flagSoakRate = flag.Int("fault.soak.rate", 100, "runs per second TestSoak offers (3 hops each)")
	flagSoakHeap = flag.String("fault.soak.heap", "", "save serve's heap profile (admin pprof) at every memory sample to DIR/heap-<seconds>s.pb.gz")
)

// TestSoak holds an offered rate of runs (orchestrator -> research,
// writer: three hops each) against serve with its embedded NATS for
// -fault.soak, samples serve's memory every 30 s, and then accounts for
// every run: zero errors, every run completed, the books balanced, and
// memory flat: the enforcer's run cache (capped at 32 MiB here; it fills by
// design) and the server's caches fill in the first half, so the second
// half may grow by at most 10% + 16 MiB. It only runs when -fault.soak is
// given.
func TestSoak(t *testing.T) {
	if *flagSoak == 0 {
		t.Skip("the soak runs only with -fault.soak DURATION (see docs/reliability.md)")
	}
	s := start(t, options{runCacheBytes: 32 << 20, pprof: *flagSoakHeap != ""})
	l := &load{tomas: s.client("tomas", nil), stop: make(chan struct{}), runs: map[string]*outcome{}}
	sem := make(chan struct{}, 1024)
	var inflight sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(*flagSoakRate))
	defer tick.Stop()
	sample := time.NewTicker(30 * time.Second)
	defer sample.Stop()
	began := time.Now()
	end := began.Add(*flagSoak)
	var samples []int64
	pid := s.serves[0].pid()
	offered := 0
	for time.Now().Before(end) {
		select {
		case <-tick.C:
			select {
			case sem <- struct{}{}:
			default:
				t.Fatalf("over 1024 runs in flight after %s: the gateway does not keep up with %d runs/s", time.Since(began).Round(time.Second), *flagSoakRate)
			}
			offered++
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-sem }()
				l.one()
			}()
		case <-sample.C:
			samples = append(samples, rss(t, pid))
			fmt.Printf("soak %s: %d runs offered, serve RSS %d MiB\n", time.Since(began).Round(time.Second), offered, samples[len(samples)-1]>>20)
			if *flagSoakHeap != "" {
				s.heapProfile(filepath.Join(*flagSoakHeap, fmt.Sprintf("heap-%ds.pb.gz", int(time.Since(began).Seconds()))))
			}
		}
	}
	inflight.Wait()
	elapsed := time.Since(began)
	tl := account(t, s, fmt.Sprintf("soak %s at %d runs/s", *flagSoak, *flagSoakRate), 0, 0, l.runs)
	tl.assertAllCompleted(t)
	fmt.Printf("soak: %d runs (%d hops) in %s = %.0f runs/s, %.0f hops/s; errors 0\n", tl.runs, tl.submitted, elapsed.Round(time.Second),
		float64(tl.runs)/elapsed.Seconds(), float64(tl.submitted)/elapsed.Seconds())
	if len(samples) >= 2 {
		mid, last := samples[(len(samples)-1)/2], samples[len(samples)-1]
		fmt.Printf("soak: serve RSS samples (MiB, every 30 s):")
		for _, v := range samples {
			fmt.Printf(" %d", v>>20)
		}
		fmt.Printf("; half-way %d MiB, at the end %d MiB\n", mid>>20, last>>20)
		if last > mid+mid/10+16<<20 {
			t.Fatalf("serve's memory grew from %d to %d bytes in the second half", mid, last)
		}
	}
}

// heapProfile saves serve's heap profile (after a collection) from its
// admin listener to path.
func (s *system) heapProfile(path string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+s.adminAddr+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+pprofToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("heap profile: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("heap profile: %s %v", resp.Status, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		s.t.Fatal(err)
	}
}
