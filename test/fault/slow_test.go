package fault_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSlowAndStuckAgents: research is slow (but within its deadline) and
// writer never answers, not even when its deadline passes. Every writer
// hop is timed out by the gateway within its deadline plus a bound, the
// orchestrator and then tomas are told, nothing runs twice, and serve's
// memory stays flat while stuck tasks pile up.
func TestSlowAndStuckAgents(t *testing.T) {
	c := sizes()
	hopTimeout := 3 * time.Second
	s := start(t, options{external: true, hopTimeout: hopTimeout, agents: []agentSpec{
		{id: "orchestrator", delegate: "research,writer", tokens: 50, entry: true},
		{id: "research", tokens: 100, extra: []string{"-delay", "500ms"}},
		{id: "writer", tokens: 200, extra: []string{"-stuck", "work"}},
	}})
	l := startLoad(s, c.workers)
	time.Sleep(2 * hopTimeout) // warm: the first stuck hops have timed out
	pid := s.serves[0].pid()
	before := rss(t, pid)
	period := 20 * time.Second
	if *flagFull {
		period = 5 * time.Minute
	}
	time.Sleep(period)
	after := rss(t, pid)
	tl := account(t, s, "slow research, stuck writer", 0, 0, l.finish())
	tl.assert(t)
	fmt.Printf("serve RSS %d MiB -> %d MiB over %s with every writer hop stuck\n", before>>20, after>>20, period)
	if tl.timedOut < tl.runs {
		t.Fatalf("%d hops timed out in %d runs: want at least the writer's in each", tl.timedOut, tl.runs)
	}
	if tl.completed != 0 || tl.told != tl.runs {
		t.Fatalf("%d runs completed and %d callers were told of %d: want every caller told of a failure", tl.completed, tl.told, tl.runs)
	}
	if limit := before + before/2 + 32<<20; after > limit {
		t.Fatalf("serve's memory grew from %d to %d bytes", before, after)
	}
}

// rss returns a process's resident set size in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
