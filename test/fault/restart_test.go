package fault_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

var flagRuns = flag.Int("fault.runs", 10000, "completed runs in the ledger before TestRestartWithManyRuns restarts everything")

// TestRestartWithManyRuns: with many completed runs in the ledger and a
// few runs whose hops an agent holds, the nats-server and serve are both
// killed; the held hops' deadlines pass while everything is down. After
// the restart every overdue hop is timed out and its caller told within
// seconds, no run needed a consumer to be read (LEDGER has none), no
// ended run carries a timer, and replay answers while the gateway recovers.
func TestRestartWithManyRuns(t *testing.T) {
	const held = 20
	hopTimeout := 6 * time.Second
	s := start(t, options{external: true, hopTimeout: hopTimeout, agents: []agentSpec{
		{id: "sink", tokens: 1, entry: true},
		{id: "staller", tokens: 1, entry: true, extra: []string{"-stuck", "stall"}},
	}})
	tomas := s.client("tomas", nil)

	// Many completed runs.
	began := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*flagRuns) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				r, err := tomas.Start(ctx, "sink", agent.UserText("x"))
				cancel()
				if err != nil || r.Status != schemas.StateCompleted {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d runs failed before any fault", n, *flagRuns)
	}
	t.Logf("%d runs completed in %s", *flagRuns, time.Since(began).Round(time.Millisecond))

	// Runs whose hop the staller holds past its deadline.
	type heldRun struct {
		run  string
		err  error
		told time.Time
	}
	runs := make([]*heldRun, held)
	var calls sync.WaitGroup
	for i := range runs {
		h := &heldRun{run: schemas.NewID()}
		runs[i] = h
		calls.Add(1)
		go func() {
			defer calls.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, h.err = tomas.Start(ctx, "staller", agent.UserText("stall"), agent.WithRunID(h.run))
			h.told = time.Now()
		}()
	}
	led := s.reader()
	var deadline time.Time
	for _, h := range runs {
		st := waitState(t, led, h.run, func(st *ledger.State) bool { return len(st.OpenHops()) == 1 })
		if d := st.OpenHops()[0].Deadline; d.After(deadline) {
			deadline = d
		}
	}

	// Everything down until every held hop is overdue.
	s.serves[0].kill()
	s.nats.kill()
	if wait := time.Until(deadline.Add(2 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	restarted := time.Now()
	s.nats.start()
	s.serves[0].start()
	ready := time.Since(restarted)

	// Replay answers while the gateway recovers.
	replay := exec.Command(bins.tollgate, "replay", runs[0].run, "--nats", s.url, "--creds", filepath.Join(s.dir, "ops.nk"), "--json")
	var stderr syncBuffer
	replay.Stderr = &stderr
	out, err := replay.Output()
	if err != nil {
		t.Fatalf("replay while recovering: %v\n%s%s", err, out, stderr.String())
	}
	var replayed map[string]any
	if err := json.Unmarshal(out, &replayed); err != nil {
		t.Fatalf("replay --json: %v\n%s", err, out)
	}

	// Every overdue hop is timed out, and its caller told, within seconds.
	for _, h := range runs {
		waitState(t, led, h.run, func(st *ledger.State) bool {
			hop := st.Hops[schemas.DeriveHopID(schemas.RunScope(h.run), "0")]
			return hop != nil && hop.Status == ledger.HopTimedOut
		})
	}
	timedOut := time.Since(restarted)
	calls.Wait()
	var lastTold time.Time
	for _, h := range runs {
		if !errors.Is(h.err, agent.ErrTimedOut) {
			t.Errorf("run %s: tomas was told %v, want a timeout", h.run, h.err)
		}
		if h.told.After(lastTold) {
			lastTold = h.told
		}
	}
	told := lastTold.Sub(restarted)
	const bound = 20 * time.Second
	if timedOut > bound || told > bound {
		t.Errorf("overdue hops timed out %s and callers told %s after the restart, want within %s", timedOut, told, bound)
	}

	// No read consumer on LEDGER; no timer left to an ended run.
	leftover := checkBus(t, s, led)
	fmt.Printf("\nrestart with %d runs in the ledger: serve ready %s after the restart; %d overdue hops timed out within %s, callers told within %s; LEDGER consumers 0; ended runs with a timer %d\n",
		*flagRuns+held, ready.Round(time.Millisecond), held, timedOut.Round(time.Millisecond), told.Round(time.Millisecond), leftover)
}

// checkBus asserts that LEDGER has no consumer (runs are read by direct
// gets) and that no ended run keeps a timer (within 30 s: the start-up
// sweep is in the background). It returns the ended runs with a timer.
func checkBus(t *testing.T, s *system, led *ledger.Ledger) int {
	t.Helper()
	admin := s.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	subj := broker.DefaultSubjects()
	ls, err := admin.Stream(ctx, subj.Stream(broker.StreamLedger))
	if err != nil {
		t.Fatal(err)
	}
	if n := ls.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("LEDGER has %d consumers, want 0", n)
	}
	leftover := 0
	brokerWait(t, 30*time.Second, func() bool {
		ts, err := admin.Stream(ctx, subj.Stream(broker.StreamTimers))
		if err != nil {
			t.Fatal(err)
		}
		info, err := ts.Info(ctx, jetstream.WithSubjectFilter(subj.TimerSchedule("*", broker.TimerRunKey)))
		if err != nil {
			t.Fatal(err)
		}
		leftover = 0
		for subject := range info.State.Subjects {
			run, _ := subj.ParseTimerSchedule(subject)
			st, err := led.Load(ctx, run)
			if err != nil {
				t.Fatal(err)
			}
			if st.Closed() && len(st.OpenHops()) == 0 {
				leftover++
			}
		}
		return leftover == 0
	})
	if leftover > 0 {
		t.Errorf("%d ended runs still carry a timer", leftover)
	}
	return leftover
}

// waitState polls a run's state until cond holds (60 s at most).
func waitState(t *testing.T, led *ledger.Ledger, run string, cond func(*ledger.State) bool) *ledger.State {
	t.Helper()
	var st *ledger.State
	brokerWait(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		st, err = led.Load(ctx, run)
		return err == nil && cond(st)
	})
	if !cond(st) {
		t.Fatalf("run %s: state never reached (status %s)", run, st.RunStatus())
	}
	return st
}

// brokerWait polls cond every 50 ms until it holds or within passes.
func brokerWait(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(within)
	for !cond() && time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
	}
}
