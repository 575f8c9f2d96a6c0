package enforcer

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tollgate/tollgate/ledger"
)

// runCache keeps the states of recent runs, shared by the workers. A run
// is worked on by one worker at a time (the mailbox sees to it), so a
// state is never touched by two goroutines at once; the lock guards the
// cache itself. It is bounded by an estimate of the states' bytes
// (budget), not by their count: one long run can weigh as much as
// thousands of short ones. An evicted run is folded from the ledger again
// when it is next touched; a run with work queued or being worked on is never evicted.
type runCache struct {
	e      *Enforcer
	mu     sync.Mutex
	lru    *simplelru.LRU[string, *cached]
	bytes  int
	budget int
	// open counts the cached runs that are open.
	open int
	// busy reports whether a run has work queued or being worked on
	// (mailbox.queued): such a run is not evicted.
	busy func(run string) bool
	// armed is the due time each run's timer was last set to.
	armed map[string]time.Time
}

// cached is a run's state in the cache, with its size when it was last
// counted.
type cached struct {
	st    *ledger.State
	bytes int
	// open is whether the run was open (started, not ended) when counted.
	open bool
}

// maxSkips bounds the busy runs one eviction pass steps over.
const maxSkips = 256

func newRunCache(e *Enforcer, budget int, busy func(run string) bool) (*runCache, error) {
	c := &runCache{e: e, budget: max(budget, 1), busy: busy, armed: map[string]time.Time{}}
	lru, err := simplelru.NewLRU[string, *cached](math.MaxInt32, func(run string, v *cached) {
		c.bytes -= v.bytes
		if v.open {
			c.open--
		}
		delete(c.armed, run)
	})
	if err != nil {
		return nil, fmt.Errorf("run cache: %w", err)
	}
	c.lru = lru
	return c, nil
}

func (c *runCache) get(run string) (*ledger.State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.lru.Get(run)
	if !ok {
		return nil, false
	}
	return v.st, true
}

func (c *runCache) add(run string, st *ledger.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := &cached{st: st, bytes: st.Bytes(), open: st.Started && !st.Closed()}
	c.lru.Remove(run)
	c.bytes += v.bytes
	if v.open {
		c.open++
	}
	if st.Started && !st.Halted && (!st.Closed() || len(st.Open) > 0) {
		// An earlier process (or this one, before an eviction) may have
		// set the run's timer: count it as armed at an unknown time, so
		// that it is set again when due and removed when nothing is.
		if _, ok := c.armed[run]; !ok {
			c.armed[run] = time.Time{}
		}
	}
	c.lru.Add(run, v)
}

// remove forgets a run (it is folded from the ledger when next touched)
// and what was armed for it.
func (c *runCache) remove(run string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(run)
	delete(c.armed, run)
}

// account counts what a run's state weighs after it was worked on, and
// evicts the least recently used runs nobody works on while the cache is
// over its budget.
func (c *runCache) account(run string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.lru.Peek(run); ok {
		n := v.st.Bytes()
		c.bytes += n - v.bytes
		v.bytes = n
		if open := v.st.Started && !v.st.Closed(); open != v.open {
			v.open = open
			if open {
				c.open++
			} else {
				c.open--
			}
		}
	}
	// Busy runs met at the old end are moved to the new end; past
	// maxSkips of them the cache stays over budget until a later pass.
	for skipped := 0; c.bytes > c.budget && c.lru.Len() > 1 && skipped < min(c.lru.Len(), maxSkips); {
		oldest, _, ok := c.lru.GetOldest()
		if !ok {
			break
		}
		if oldest == run || c.busy(oldest) {
			c.lru.Get(oldest)
			skipped++
			continue
		}
		c.lru.RemoveOldest()
	}
	c.e.cacheBytes.Store(int64(c.bytes))
	c.e.openRuns.Store(int64(c.open))
}

// arm returns the run's next due time when its timer must be set to it
// (set), or that the schedule of an ended run must be removed (purge).
// What was armed is remembered per run and forgotten on eviction and
// failure, so the next touch of the run arms again.
func (c *runCache) arm(run string, nextDue func(*ledger.State) time.Time) (due time.Time, set, purge bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.lru.Peek(run)
	if !ok {
		return time.Time{}, false, false
	}
	due = nextDue(v.st)
	if due.IsZero() {
		if _, armed := c.armed[run]; armed {
			// Nothing is due any more (the run has ended, its last open
			// hop closed) with its schedule still set: remove it, so an
			// ended run carries no timer.
			delete(c.armed, run)
			return time.Time{}, false, true
		}
	}
	if due.IsZero() || c.armed[run].Equal(due) {
		return time.Time{}, false, false
	}
	c.armed[run] = due
	return due, true, false
}

func (c *runCache) disarm(run string) {
	c.mu.Lock()
	delete(c.armed, run)
	c.mu.Unlock()
}
