package enforcer

import "sync"

// mailbox queues work per run and hands runs, not messages, to the
// workers: a run's work is done in order by one worker at a time, and a
// run that is slow (a slow append, a held checker) holds one worker, never
// the queue of other runs. Putting never blocks, so the consume callbacks
// that feed it never stall: what waits in it is bounded by the consumers'
// MaxAckPending, not by the mailbox.
type mailbox struct {
	mu   sync.Mutex
	cond sync.Cond
	// runs holds every run with work queued or being worked on.
	runs map[string]*runQueue
	// ready are the runs with work queued and no worker, oldest first.
	ready  []*runQueue
	closed bool
}

// runQueue is one run's queued work.
type runQueue struct {
	run   string
	items []work
}

func newMailbox() *mailbox {
	m := &mailbox{runs: map[string]*runQueue{}}
	m.cond.L = &m.mu
	return m
}

// put queues w behind the run's earlier work. It never blocks.
func (m *mailbox) put(w work) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.runs[w.run]
	if q == nil {
		q = &runQueue{run: w.run}
		m.runs[w.run] = q
		m.ready = append(m.ready, q)
		m.cond.Signal()
	}
	q.items = append(q.items, w)
}

// take waits for a run with work and no worker, and returns its next
// piece of work; the caller then owns the run until it calls done. ok is
// false once the mailbox is closed and empty.
func (m *mailbox) take() (q *runQueue, w work, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.ready) == 0 {
		if m.closed && len(m.runs) == 0 {
			return nil, work{}, false
		}
		m.cond.Wait()
	}
	q = m.ready[0]
	m.ready[0] = nil
	m.ready = m.ready[1:]
	w = q.items[0]
	q.items[0] = work{}
	q.items = q.items[1:]
	return q, w, true
}

// next returns the run's next piece of work when it has one and the
// worker has done fewer than batch of its pieces in a row: a busy run's
// backlog is worked off without a hand-over per message (other runs have
// other workers). Otherwise the worker must call done.
func (m *mailbox) next(q *runQueue, done, batch int) (work, bool) {
	if done >= batch {
		return work{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(q.items) == 0 {
		return work{}, false
	}
	w := q.items[0]
	q.items[0] = work{}
	q.items = q.items[1:]
	return w, true
}

// queued reports whether run has work queued or being worked on.
func (m *mailbox) queued(run string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.runs[run]
	return ok
}

// done gives the run back: to the tail of the ready runs when it has more
// work (so a busy run takes its turn with the others), else it is
// forgotten.
func (m *mailbox) done(q *runQueue) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(q.items) == 0 {
		delete(m.runs, q.run)
		if m.closed && len(m.runs) == 0 {
			m.cond.Broadcast()
		}
		return
	}
	m.ready = append(m.ready, q)
	m.cond.Signal()
}

// close lets the workers return once every queued piece of work is done.
func (m *mailbox) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.cond.Broadcast()
}
