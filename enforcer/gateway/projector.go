package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/projections"
)

// Analytics never block governance: the gateway runs its projector under a
// supervisor that starts it in the background and, while ClickHouse is
// down or an insert fails, starts it again with exponential backoff. The
// durable consumer keeps the place, so a restarted projector catches up.

// Projector backoff bounds.
const (
	projectorBackoffMin = time.Second
	projectorBackoffMax = time.Minute
)

// ProjectorState is the projector's state as /readyz reports it.
type ProjectorState struct {
	// State is starting, running or retrying.
	State string `json:"state"`
	// LastError is the error that stopped it last, if any.
	LastError string `json:"last_error,omitempty"`
	// Restarts counts the starts after the first.
	Restarts uint64 `json:"restarts"`
	// RetryAt is when the next start is tried, while retrying.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// supervisor keeps a projector running.
type supervisor struct {
	g      *Gateway
	cfg    projections.Config
	cur    atomic.Pointer[projections.Projector]
	mu     sync.Mutex
	state  ProjectorState
	stop   context.CancelFunc
	done   chan struct{}
	starts prometheus.Counter
	up     prometheus.Gauge
}

func (g *Gateway) startProjector(pc projections.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{g: g, cfg: pc, stop: cancel, done: make(chan struct{}), state: ProjectorState{State: "starting"}}
	if m := g.metrics; m != nil {
		s.starts, s.up = m.projectorStarts, m.projectorUp
	}
	g.sup = s
	go s.run(ctx)
}

func (s *supervisor) set(f func(*ProjectorState)) {
	s.mu.Lock()
	f(&s.state)
	s.mu.Unlock()
}

// State returns the projector's state.
func (s *supervisor) State() ProjectorState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *supervisor) run(ctx context.Context) {
	defer close(s.done)
	log := s.g.log
	backoff := projectorBackoffMin
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.set(func(st *ProjectorState) { st.Restarts++ })
		}
		if s.starts != nil {
			s.starts.Inc()
		}
		p, err := projections.New(s.g.ledger, s.cfg)
		if err == nil {
			startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = p.Start(startCtx)
			cancel()
		}
		if err == nil {
			s.cur.Store(p)
			s.set(func(st *ProjectorState) { st.State, st.RetryAt = "running", time.Time{} })
			if s.up != nil {
				s.up.Set(1)
			}
			started := time.Now()
			select {
			case <-ctx.Done():
				return
			case <-p.Done():
			}
			err = p.Err()
			_ = p.Stop(context.Background())
			if time.Since(started) > projectorBackoffMax {
				backoff = projectorBackoffMin
			}
		}
		if ctx.Err() != nil {
			return
		}
		if s.up != nil {
			s.up.Set(0)
		}
		if err == nil {
			err = errors.New("stopped")
		}
		retry := time.Now().Add(backoff)
		s.set(func(st *ProjectorState) { st.State, st.LastError, st.RetryAt = "retrying", err.Error(), retry })
		log.Warn("projector down; analytics wait, governance goes on", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, projectorBackoffMax)
	}
}

// close stops the supervisor and the projector, which writes what it has.
func (s *supervisor) close(ctx context.Context) error {
	s.stop()
	<-s.done
	if p := s.cur.Load(); p != nil {
		if err := p.Stop(ctx); err != nil && !errors.Is(err, projections.ErrNotStarted) {
			return err
		}
	}
	return nil
}
