package a2ahttp

import (
	"cmp"
	"container/heap"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// The task list answers ListTasks without a contextId: which tasks each
// caller made at each agent. It is derived from the ledger, never from
// what this instance served: every instance rebuilds it from the LEDGER
// stream when it starts (a window back) and follows the stream from then
// on, folding each run with the one fold (ledger.State) that decides what
// a hop's events mean. A call reads the list in memory; it never scans
// the ledger.

// TaskListConfig bounds the task list.
type TaskListConfig struct {
	// Window is how far back, on the ledger stream's clock, the list is
	// rebuilt when the ingress starts: a task whose run has no event in
	// the window is not listed (GetTask and ListTasks with its contextId
	// still read it). As the list follows the ledger, a task decided
	// longer than Window ago (its decision event's time) is dropped from
	// it too. Default 24 hours.
	Window time.Duration
	// PerCaller bounds the tasks listed per caller and agent: the newest
	// are kept. It bounds the work of one ListTasks call. Default 1,000.
	PerCaller int
	// MaxTasks bounds the tasks the list holds in all (and so its caller
	// and agent pairs): past it the oldest decided tasks are dropped
	// first. Default 100,000 (about half a KiB each).
	MaxTasks int
	// StateBytes bounds the memory of the run states the list folds
	// (ledger.State.Bytes): the states of the runs that changed least
	// recently are dropped first, their tasks keep the status they had,
	// and a dropped run is read again from the ledger when it next
	// changes. Default 64 MiB.
	StateBytes int
}

func (c *TaskListConfig) setDefaults() {
	if c.Window <= 0 {
		c.Window = 24 * time.Hour
	}
	if c.PerCaller <= 0 {
		c.PerCaller = 1000
	}
	if c.StateBytes <= 0 {
		c.StateBytes = 64 << 20
	}
	if c.MaxTasks <= 0 {
		c.MaxTasks = 100_000
	}
}

// Timing of the task list.
const (
	// followEvery is how often the list reads what the ledger appended
	// when no ListTasks call asks it to sooner.
	followEvery = time.Second
	// catchUpWait bounds how long a ListTasks call waits for the list to
	// reach the ledger's head at the time of the call.
	catchUpWait = 5 * time.Second
	// loadTries is how many reads of a run that fail stop the list
	// before it leaves the run as it had it.
	loadTries = 3
)

// errListBehind: the list did not reach the ledger's head in time (it is
// being rebuilt, or the ledger cannot be read).
var errListBehind = errors.New("the task list is catching up with the ledger")

// taskKey is a caller at an agent.
type taskKey struct{ caller, agent string }

// listedTask is a task of the list: a hop of a run, as the fold has it.
type listedTask struct {
	run string
	// hop is the fold's own hop, read and written under taskList.mu; when
	// its run's state is dropped it keeps the status it had.
	hop *ledger.Hop
	key taskKey
	// at is when the task was decided (its decision event's time), and
	// index its place in taskList.byAge.
	at    time.Time
	index int
}

// taskAges orders the listed tasks oldest decided first (container/heap).
type taskAges []*listedTask

func (a taskAges) Len() int { return len(a) }
func (a taskAges) Less(i, j int) bool {
	if !a[i].at.Equal(a[j].at) {
		return a[i].at.Before(a[j].at)
	}
	return a[i].hop.DecisionStreamSeq < a[j].hop.DecisionStreamSeq
}
func (a taskAges) Swap(i, j int) {
	a[i], a[j] = a[j], a[i]
	a[i].index, a[j].index = i, j
}
func (a *taskAges) Push(x any) {
	t := x.(*listedTask)
	t.index = len(*a)
	*a = append(*a, t)
}
func (a *taskAges) Pop() any {
	old := *a
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*a = old[:len(old)-1]
	t.index = -1
	return t
}

// foldedRun is a run the list follows.
type foldedRun struct {
	id string
	// st is the run's state; nil once dropped to bound memory.
	st    *ledger.State
	bytes int
	elem  *list.Element // in taskList.lru while st is held
	tasks map[string]*listedTask
}

// taskList is the list. One goroutine (follow) reads the ledger and
// changes it; ListTasks calls read it under mu.
type taskList struct {
	l   *ledger.Ledger
	cfg TaskListConfig
	log *slog.Logger
	// listable reports whether a ListTasks call can return the tasks of
	// caller at agent (both registered, agent one the HTTP front serves):
	// only those are listed, so that the names a caller puts in its
	// envelopes (a made-up target is denied and recorded) hold no memory.
	listable func(caller, agent string) bool
	// now is the clock the list's window is read on (time.Now).
	now func() time.Time
	ctx context.Context
	// poke asks the follower to read the ledger now.
	poke chan struct{}
	// reads counts the ledger events read, loads the runs read whole.
	reads, loads atomic.Int64
	// started is set when the follower is started (Server.Start).
	started atomic.Bool

	mu sync.Mutex
	// pos is the stream sequence of the last event read, ready whether
	// the first read (the rebuild) has reached the head it aimed at.
	pos   uint64
	ready bool
	// moved is closed, and replaced, when a read ends.
	moved chan struct{}
	runs  map[string]*foldedRun
	// failed counts the failed reads of a run (the follower's own).
	failed map[string]int
	lru    *list.List // of *foldedRun with a state, least recently changed first
	bytes  int
	// byKey lists each caller's tasks at each agent, oldest first (by the
	// stream sequence of the decision that admitted them).
	byKey map[taskKey][]*listedTask
	// byAge holds every listed task, oldest decided first: what MaxTasks
	// and Window drop.
	byAge taskAges
}

// newTaskList returns the task list of ledger l; it lists the tasks of
// the caller and agent pairs listable accepts.
func newTaskList(l *ledger.Ledger, cfg TaskListConfig, listable func(caller, agent string) bool, log *slog.Logger) *taskList {
	cfg.setDefaults()
	return &taskList{l: l, cfg: cfg, log: log, listable: listable, now: time.Now, poke: make(chan struct{}, 1), moved: make(chan struct{}),
		runs: map[string]*foldedRun{}, failed: map[string]int{}, lru: list.New(), byKey: map[taskKey][]*listedTask{}}
}

// follow rebuilds the list from the ledger's window, then reads what the
// ledger appends, until ctx ends.
func (x *taskList) follow(ctx context.Context) {
	x.ctx = ctx
	from := time.Now().Add(-x.cfg.Window)
	t := time.NewTicker(followEvery)
	defer t.Stop()
	for {
		x.mu.Lock()
		pos := x.pos
		x.mu.Unlock()
		var last uint64
		var err error
		if pos == 0 {
			last, err = x.l.ScanFrom(ctx, 0, from, x.apply)
		} else {
			last, err = x.l.ScanFrom(ctx, pos, time.Time{}, x.apply)
		}
		switch {
		case err == nil:
			x.advance(last)
		case ctx.Err() == nil:
			x.log.Warn("a2a ingress: task list: read the ledger", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-x.poke:
		case <-t.C:
		}
	}
}

// advance records a read that reached last, and wakes the calls waiting.
func (x *taskList) advance(last uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.trim()
	x.pos, x.ready = max(x.pos, last), true
	close(x.moved)
	x.moved = make(chan struct{})
}

// sync waits until the list has read the ledger as far as it went when
// sync was called, so that a task the gateway admitted before the call,
// at any instance, is listed.
func (x *taskList) sync(ctx context.Context) error {
	if !x.started.Load() {
		return fmt.Errorf("%w: it is not started", errListBehind)
	}
	s, err := x.l.JetStream().Stream(ctx, x.l.StreamName())
	if err != nil {
		return fmt.Errorf("%w: %w", errListBehind, err)
	}
	last := s.CachedInfo().State.LastSeq
	select {
	case x.poke <- struct{}{}:
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	for {
		x.mu.Lock()
		done, moved := x.ready && x.pos >= last, x.moved
		x.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return errListBehind
		}
	}
}

// apply folds one ledger event into its run and lists the hops it
// admitted or denied. Only the follower calls it. An event that does not
// decode is skipped (verification reports it; the list only lists).
func (x *taskList) apply(run string, raw []byte, streamSeq uint64) (err error) {
	x.reads.Add(1)
	defer func() {
		if err == nil {
			x.mu.Lock()
			x.pos = max(x.pos, streamSeq)
			x.mu.Unlock()
		}
	}()
	if strings.HasPrefix(run, ledger.RejectedPrefix) || !schemas.ValidID(run) {
		return nil // a rejected submission's entry: no task of anyone
	}
	ev, derr := schemas.DecodeEvent(raw)
	if derr != nil {
		return nil
	}
	data, derr := ev.DecodeData()
	if derr != nil {
		return nil
	}
	r := x.runs[run]
	if r == nil || r.st == nil || ev.Seq > r.st.Head.Seq+1 {
		// A run first seen, or dropped: a run that starts here is folded
		// from this event, any other read whole (up to the ledger's head,
		// past this event).
		st := ledger.NewViewState(run)
		if ev.Seq != 1 {
			x.loads.Add(1)
			if st, err = x.l.Load(x.ctx, run); err != nil {
				// The read stops here and the next one starts again at this
				// event; a run that cannot be read after loadTries is left
				// as the list last had it.
				if x.failed[run]++; x.failed[run] < loadTries {
					return fmt.Errorf("task list: read run %s: %w", run, err)
				}
				delete(x.failed, run)
				x.log.Error("a2a ingress: task list: run left unread", "run", run, "err", err)
				return nil
			}
			delete(x.failed, run)
		}
		r = x.attach(run, st)
	}
	if ev.Seq <= r.st.Head.Seq {
		return nil // read with the run
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ferr := r.st.ApplyDecoded(ev, data, streamSeq)
	if ferr != nil {
		return nil
	}
	switch c.Kind {
	case ledger.ChangeOpened, ledger.ChangeDeniedHop, ledger.ChangePending:
		x.add(r, c.Hop)
	case ledger.ChangeRerouted:
		x.rekey(r, c.Hop)
	}
	x.touch(r)
	x.trim()
	return nil
}

// attach gives run the state st, folded from the ledger, and lists its
// hops: those listed before now point at st's.
func (x *taskList) attach(run string, st *ledger.State) *foldedRun {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.runs[run]
	if r == nil {
		r = &foldedRun{id: run, tasks: map[string]*listedTask{}}
		x.runs[run] = r
	}
	r.st = st
	hops := slices.SortedFunc(func(yield func(*ledger.Hop) bool) {
		for _, h := range st.Hops {
			if !yield(h) {
				return
			}
		}
	}, func(a, b *ledger.Hop) int { return cmp.Compare(a.DecisionStreamSeq, b.DecisionStreamSeq) })
	for _, h := range hops {
		if t := r.tasks[h.ID]; t != nil {
			t.hop = h
			x.rekey(r, h)
		} else {
			x.add(r, h)
		}
	}
	x.touch(r)
	return r
}

// add lists hop h of run r under its caller and agent, dropping the
// caller's oldest task there past the bound. Only invokes are tasks, and
// only those a ListTasks call can return (listable), decided within the
// window.
func (x *taskList) add(r *foldedRun, h *ledger.Hop) {
	if h.Action != schemas.ActionInvoke && h.Action != "" {
		return
	}
	if !x.listable(h.From, h.To) || h.OpenedAt.Before(x.cutoff()) {
		return
	}
	t := &listedTask{run: r.id, hop: h, key: taskKey{h.From, h.To}, at: h.OpenedAt}
	r.tasks[h.ID] = t
	heap.Push(&x.byAge, t)
	x.insert(t)
}

// cutoff is the decision time before which a task is no longer listed.
func (x *taskList) cutoff() time.Time { return x.now().Add(-x.cfg.Window) }

// trim drops the oldest decided tasks while the list holds more than
// MaxTasks or they were decided before the window.
func (x *taskList) trim() {
	cutoff := x.cutoff()
	for len(x.byAge) > 0 && (len(x.byAge) > x.cfg.MaxTasks || x.byAge[0].at.Before(cutoff)) {
		t := x.byAge[0]
		l := x.byKey[t.key]
		if i := slices.Index(l, t); i >= 0 {
			l = slices.Delete(l, i, i+1)
		}
		if len(l) == 0 {
			delete(x.byKey, t.key)
		} else {
			x.byKey[t.key] = l
		}
		x.forget(t)
	}
}

// insert puts t in its key's list, in decision order.
func (x *taskList) insert(t *listedTask) {
	l := x.byKey[t.key]
	i, _ := slices.BinarySearchFunc(l, t.hop.DecisionStreamSeq, func(e *listedTask, seq uint64) int {
		return cmp.Compare(e.hop.DecisionStreamSeq, seq)
	})
	l = slices.Insert(l, i, t)
	for len(l) > x.cfg.PerCaller {
		x.forget(l[0])
		l[0] = nil
		l = l[1:]
	}
	x.byKey[t.key] = l
}

// forget drops t from its run and from byAge (not from byKey: the
// caller does); a run with no state and no task left is dropped.
func (x *taskList) forget(t *listedTask) {
	if t.index >= 0 {
		heap.Remove(&x.byAge, t.index)
	}
	r := x.runs[t.run]
	if r == nil {
		return
	}
	delete(r.tasks, t.hop.ID)
	if r.st == nil && len(r.tasks) == 0 {
		delete(x.runs, r.id)
	}
}

// rekey moves the task of h to the agent h goes to now (a re-routed hop
// is the task of its fallback target, as GetTask reads it).
func (x *taskList) rekey(r *foldedRun, h *ledger.Hop) {
	t := r.tasks[h.ID]
	if t == nil || t.key == (taskKey{h.From, h.To}) {
		return
	}
	l := x.byKey[t.key]
	if i := slices.Index(l, t); i >= 0 {
		x.byKey[t.key] = slices.Delete(l, i, i+1)
	}
	if len(x.byKey[t.key]) == 0 {
		delete(x.byKey, t.key)
	}
	if !x.listable(h.From, h.To) {
		x.forget(t) // re-routed to an agent no call can list it under
		return
	}
	t.key = taskKey{h.From, h.To}
	x.insert(t)
}

// touch accounts for r's state after a change, marks r the most recently
// changed, and drops the states of the least recently changed runs while
// the states hold more than the bound.
func (x *taskList) touch(r *foldedRun) {
	b := r.st.Bytes()
	x.bytes += b - r.bytes
	r.bytes = b
	if r.elem == nil {
		r.elem = x.lru.PushBack(r)
	} else {
		x.lru.MoveToBack(r.elem)
	}
	for x.bytes > x.cfg.StateBytes && x.lru.Len() > 1 {
		old := x.lru.Remove(x.lru.Front()).(*foldedRun)
		x.bytes -= old.bytes
		old.st, old.bytes, old.elem = nil, 0, nil
		if len(old.tasks) == 0 {
			delete(x.runs, old.id)
		}
	}
}

// held counts the runs whose state the list holds, the tasks it lists
// and its caller and agent pairs (for tests of its bounds).
func (x *taskList) held() (states, tasks, keys int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, l := range x.byKey {
		tasks += len(l)
	}
	return x.lru.Len(), tasks, len(x.byKey)
}

// each calls fn with the caller's tasks at agent, newest first, until fn
// returns false. It reads the list only: at most PerCaller tasks.
func (x *taskList) each(caller, agent string, fn func(run string, h *ledger.Hop) bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.byKey[taskKey{caller, agent}]
	for i := len(l) - 1; i >= 0; i-- {
		if !fn(l[i].run, l[i].hop) {
			return
		}
	}
}

// runHops returns copies of the hops of run from caller to agent when
// the list holds run's state, and false when it does not (the run is
// then read from the ledger).
func (x *taskList) runHops(run, caller, agent string) ([]ledger.Hop, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.runs[run]
	if r == nil || r.st == nil {
		return nil, false
	}
	var out []ledger.Hop
	for _, h := range r.st.Hops {
		if h.From == caller && h.To == agent {
			out = append(out, *h)
		}
	}
	return out, true
}
