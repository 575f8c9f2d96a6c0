package fault_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// load keeps runs in flight: workers that each start a run of tomas at the
// orchestrator and wait for its reply, again and again, until stopped.
type load struct {
	tomas *agent.Client
	stop  chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	runs map[string]*outcome
}

// outcome is what tomas was told about a run.
type outcome struct {
	status schemas.TaskState
	err    error
	done   bool
}

// callTimeout bounds one run's call: far above any hop deadline.
const callTimeout = 90 * time.Second

func startLoad(s *system, workers int) *load {
	l := &load{tomas: s.client("tomas", nil), stop: make(chan struct{}), runs: map[string]*outcome{}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one()
			}
		}()
	}
	return l
}

func (l *load) one() {
	run := schemas.NewID()
	o := &outcome{}
	l.mu.Lock()
	l.runs[run] = o
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	r, err := l.tomas.Start(ctx, "orchestrator", agent.UserText("work"), agent.WithRunID(run))
	l.mu.Lock()
	defer l.mu.Unlock()
	o.done, o.err = true, err
	if r != nil {
		o.status = r.Status
	}
}

// count is how many runs were started so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.runs)
}

// finish stops starting runs and waits for every call to return.
func (l *load) finish() map[string]*outcome {
	close(l.stop)
	l.wg.Wait()
	return l.runs
}

// tally is a scenario's accounting.
type tally struct {
	scenario  string
	seed      int64
	kills     int
	runs      int
	completed int
	// submitted counts the hops the gateway decided; delivered the
	// allowed ones, denied the denied ones.
	submitted, delivered, denied int
	// duplicate counts hops decided more than once or made by a re-run
	// under a new id; lost the hops (or runs) nobody accounts for.
	duplicate, lost int
	// reruns counts handler runs past the first per hop; unrun the
	// allowed, completed hops no agent ran.
	reruns, unrun int
	// overspent counts runs that spent other than runTokens.
	overspent int
	verified  int
	timedOut  int
	// refused counts runs whose first hop the gateway refused unrecorded
	// (the ledger full): the caller was told, and nothing was forwarded.
	refused int
	// told counts runs whose caller was told of a denial or a timeout.
	told int
	// late counts hops closed more than closeBound past their deadline.
	late int
	// lateAnswers counts replies and cancels denied because their hop
	// had closed (by its timeout, or a halt) before they came.
	lateAnswers int
	// timeouts describe the first timed-out hops, printed with the table.
	timeouts []string
	// crashReruns counts handler runs again after the agent running the
	// hop was killed before its reply was stored: the crash's, not the
	// client's.
	crashReruns int
	problems    []string
}

// closeBound is how long after its deadline an open hop may stay open.
const closeBound = 15 * time.Second

func (t *tally) problem(format string, args ...any) {
	if len(t.problems) < 20 {
		t.problems = append(t.problems, fmt.Sprintf(format, args...))
	}
}

// account reads every run of the load back from the ledger and the
// agents' run log and checks the books. wantCompleted says every run must
// have completed (no fault made any fail).
func account(t *testing.T, s *system, scenario string, seed int64, kills int, runs map[string]*outcome) *tally {
	t.Helper()
	handled := handlerRuns(t, s.runLog)
	led := s.reader()
	tl := &tally{scenario: scenario, seed: seed, kills: kills, runs: len(runs)}
	ids := make([]string, 0, len(runs))
	for id := range runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Every run ends in the ledger (its root closed) within the bound.
	deadline := time.Now().Add(90 * time.Second)
	for _, run := range ids {
		o := runs[run]
		var denied *agent.DeniedError
		unavailable := errors.As(o.err, &denied) && denied.Denial.Reason == schemas.ReasonUnavailable
		switch {
		case o.err == nil:
			if o.status == schemas.StateCompleted {
				tl.completed++
			} else {
				tl.told++ // the run failed, and its caller was told so
			}
		case denied != nil || errors.Is(o.err, agent.ErrTimedOut):
			tl.told++
		default:
			tl.lost++
			tl.problem("run %s: tomas got no answer: %v", run, o.err)
		}
		var recs []ledger.Record
		var st *ledger.State
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			var err error
			recs, err = led.Read(ctx, run)
			cancel()
			if errors.Is(err, ledger.ErrNoRun) {
				recs, err = nil, nil
			}
			if err != nil {
				t.Fatalf("read run %s: %v", run, err)
			}
			if st, err = ledger.Fold(run, recs); err != nil {
				t.Fatalf("fold run %s: %v", run, err)
			}
			if st.Completed && len(st.OpenHops()) == 0 || unavailable && len(st.Hops) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Refused at its first hop: nothing of the run is recorded but,
		// at most, its run.started (the hop's own append found no room); the
		// caller may submit the same run again later.
		if unavailable && len(st.Hops) == 0 {
			tl.refused++
			if !strings.Contains(denied.Denial.Message, "nothing was forwarded") {
				tl.problem("run %s: the refusal does not say why: %q", run, denied.Denial.Message)
			}
			for hop, h := range handled {
				if h.run == run {
					tl.problem("run %s was refused, yet %s ran hop %s", run, h.agent, hop)
					tl.duplicate++
				}
			}
			continue
		}
		if err := ledger.Verify(run, recs, nil).Err(); err != nil {
			tl.problem("run %s does not verify: %v", run, err)
		} else if len(recs) > 0 {
			tl.verified++
		}
		tl.check(run, recs, st, handled)
	}
	// A hop run at an agent that no run of the load holds is a re-run
	// under a new id, or traffic nobody submitted.
	for hop, h := range handled {
		if _, ok := runs[h.run]; !ok {
			tl.duplicate++
			tl.problem("hop %s ran at %s for run %s the load never started", hop, h.agent, h.run)
		}
	}
	tl.print()
	return tl
}

// check accounts for one run.
func (tl *tally) check(run string, recs []ledger.Record, st *ledger.State, handled map[string]*handlerRun) {
	root := schemas.DeriveHopID(schemas.RunScope(run), "0")
	expected := map[string]string{
		root:                           "orchestrator",
		schemas.DeriveHopID(root, "0"): "research",
		schemas.DeriveHopID(root, "1"): "writer",
	}
	// A hop's decision is the hop.allowed or hop.denied of its invoke. A
	// denied reply or cancel (an answer that came after the hop had
	// closed, say by its timeout) is recorded under the hop's id too, but
	// decides nothing.
	decisions := map[string]int{}
	for _, r := range recs {
		switch r.Event.Type {
		case schemas.EventHopAllowed, schemas.EventHopDenied:
			data, err := r.Event.DecodeData()
			d, ok := data.(*schemas.HopDecision)
			if err != nil || !ok {
				tl.problem("run %s: %s of hop %s does not decode: %v", run, r.Event.Type, r.Event.HopID, err)
				tl.lost++
				continue
			}
			if d.Kind == schemas.KindInvoke {
				decisions[r.Event.HopID]++
			} else {
				tl.lateAnswers++
			}
		}
	}
	for hop, n := range decisions {
		tl.submitted++
		if _, ok := expected[hop]; !ok {
			tl.duplicate++
			tl.problem("run %s: hop %s is none of the run's hops (a re-run made it)", run, hop)
		}
		if n > 1 {
			tl.duplicate += n - 1
			tl.problem("run %s: hop %s decided %d times", run, hop, n)
		}
	}
	if !st.Completed {
		tl.lost++
		var evs []string
		for _, r := range recs {
			evs = append(evs, fmt.Sprintf("%s %s", r.Event.Type, r.Event.HopID))
		}
		tl.problem("run %s did not complete in the ledger (status %s): %s", run, st.RunStatus(), strings.Join(evs, ", "))
	}
	for hop, agentID := range expected {
		h := st.Hops[hop]
		ran := 0
		if hr := handled[hop]; hr != nil {
			ran = hr.n
			hr.seen = true
			tl.crashReruns += hr.crashRuns
			if hr.sameLife > 0 {
				tl.reruns += hr.sameLife
				tl.problem("run %s: %s ran hop %s %d times in one process", run, agentID, hop, hr.sameLife+1)
			}
		}
		if h == nil {
			if ran > 0 {
				tl.duplicate++
				tl.problem("run %s: %s ran hop %s, which the ledger never admitted", run, agentID, hop)
			}
			if hop == root || st.Hops[root] != nil && st.Hops[root].Status == ledger.HopStatus(schemas.StateCompleted) {
				tl.lost++
				tl.problem("run %s: hop %s to %s never decided", run, hop, agentID)
			}
			continue
		}
		switch h.Status {
		case ledger.HopDenied:
			tl.denied++
		case ledger.HopOpen, ledger.HopPending:
			tl.delivered++
			tl.lost++
			tl.problem("run %s: hop %s to %s still open", run, hop, agentID)
		default:
			tl.delivered++
			if h.Status == ledger.HopTimedOut {
				tl.timedOut++
				if len(tl.timeouts) < 10 {
					var evs []string
					for _, r := range recs {
						evs = append(evs, fmt.Sprintf("%s %s %s", r.Event.At.Format("15:04:05.000"), r.Event.Type, r.Event.HopID))
					}
					tl.timeouts = append(tl.timeouts, fmt.Sprintf("run %s: hop %s to %s timed out (ran %d times): %s", run, hop, agentID, ran, strings.Join(evs, ", ")))
				}
			}
			if h.Status == ledger.HopStatus(schemas.StateCompleted) && ran == 0 {
				tl.unrun++
				tl.problem("run %s: hop %s completed but %s never ran it", run, hop, agentID)
			}
			if !h.Deadline.IsZero() && h.ClosedAt.After(h.Deadline.Add(closeBound)) {
				tl.late++
				tl.problem("run %s: hop %s closed %s after its deadline", run, hop, h.ClosedAt.Sub(h.Deadline))
			}
		}
	}
	if st.Completed && st.RunStatus() == string(schemas.StateCompleted) {
		if got := st.Total().Tokens; got != runTokens {
			tl.overspent++
			tl.problem("run %s spent %d tokens, want %d", run, got, runTokens)
		}
	} else if got := st.Total().Tokens; got > runTokens {
		tl.overspent++
		tl.problem("run %s spent %d tokens, more than a run can", run, got)
	}
}

// assertAllCompleted fails the test unless the books balance and every
// run completed: a fault that governance recovers from fails no run.
func (tl *tally) assertAllCompleted(t *testing.T) {
	t.Helper()
	tl.assert(t)
	if tl.completed != tl.runs {
		t.Fatalf("%s: %d of %d runs completed (replay with -fault.seed %d)", tl.scenario, tl.completed, tl.runs, tl.seed)
	}
}

// assert fails the test unless the books balance.
func (tl *tally) assert(t *testing.T) {
	t.Helper()
	if tl.runs == 0 {
		t.Fatalf("%s: no run started", tl.scenario)
	}
	if tl.duplicate+tl.lost+tl.reruns+tl.unrun+tl.overspent+tl.late > 0 || tl.verified+tl.refused != tl.runs || len(tl.problems) > 0 {
		t.Fatalf("%s: the books do not balance (replay with -fault.seed %d):\n  %s", tl.scenario, tl.seed, strings.Join(tl.problems, "\n  "))
	}
}

func (tl *tally) print() {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\n%s (seed %d, %d kills)\n", tl.scenario, tl.seed, tl.kills)
	fmt.Fprintln(w, "runs\tcompleted\tcallers told\trefused\tsubmitted\tdelivered\tdenied\ttimed out\tduplicate\tlost\thandler re-runs\tunrun\toverspent\tlate\tlate answers\tre-runs after an agent kill\tverified runs")
	fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", tl.runs, tl.completed, tl.told, tl.refused, tl.submitted, tl.delivered, tl.denied,
		tl.timedOut, tl.duplicate, tl.lost, tl.reruns, tl.unrun, tl.overspent, tl.late, tl.lateAnswers, tl.crashReruns, tl.verified)
	_ = w.Flush()
	for _, p := range tl.problems {
		fmt.Println("  !", p)
	}
	for _, p := range tl.timeouts {
		fmt.Println("  timed out:", p)
	}
}

// handlerRun is how often an agent ran a hop's handler.
type handlerRun struct {
	agent, run string
	n          int
	seen       bool
	// lastLife is the agent's process life the hop's handler last ran
	// in. A run in a later life (the kill cut the earlier run off before
	// its reply was stored) is the crash's re-run, counted in crashRuns;
	// a second run in one life is the client running a task twice,
	// counted in sameLife.
	lastLife  int
	sameLife  int
	crashRuns int
}

// killMark starts a run-log line the test writes when it kills an agent
// process: "! kill <agent>". Every handler run the log holds after it is
// in the agent's next life.
const killMark = "!"

// handlerRuns reads the agents' run log.
func handlerRuns(t *testing.T, path string) map[string]*handlerRun {
	t.Helper()
	out := map[string]*handlerRun{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	life := map[string]int{} // agent -> its current life
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			t.Fatalf("run log line %q", sc.Text())
		}
		if fields[0] == killMark {
			life[fields[2]]++
			continue
		}
		h := out[fields[2]]
		l := life[fields[0]]
		switch {
		case h == nil:
			h = &handlerRun{agent: fields[0], run: fields[1], lastLife: l}
			out[fields[2]] = h
		case l == h.lastLife:
			h.sameLife++
		default:
			h.crashRuns++
			h.lastLife = l
		}
		h.n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
