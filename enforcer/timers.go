package enforcer

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// processTimer handles a fired timer: a hop's deadline, or the run's wall
// clock. Timers live on the server (TIMERS stream schedules), so they fire
// whether or not this enforcer was running when they were due.
func (s *shard) processTimer(ctx context.Context, run, key string) ([]outgoing, error) {
	st, err := s.state(ctx, run)
	if err != nil {
		return nil, err
	}
	if !st.Started {
		return nil, nil
	}
	now := s.e.cfg.Clock()
	if key == broker.TimerRunKey {
		return s.wallClock(ctx, st, now)
	}
	hop := st.Hops[key]
	switch {
	case hop == nil:
		return nil, nil // never allowed: nothing to time out
	case hop.Status == ledger.HopTimedOut:
		// Timed out before, but a crash may have cut off the effects.
		if err := s.finish(ctx, st); err != nil {
			return nil, err
		}
		return s.e.effectsFrom(ctx, st, hop.CloseStreamSeq, nil)
	case !hop.Open():
		return nil, nil // replied, cancelled or halted in time
	case now.Before(hop.Deadline):
		// A clock ahead of ours fired it early: set it again.
		return []outgoing{s.e.timer(run, hop.ID, hop.Deadline)}, nil
	}
	ev, ok := mustEvent(run, schemas.EventHopTimedOut, hop.ID, now, &schemas.HopTimedOut{
		Deadline: hop.Deadline, LatencyMS: now.Sub(hop.OpenedAt).Milliseconds(),
	})
	if !ok {
		return nil, nil
	}
	return s.record(ctx, st, []schemas.Event{ev}, nil, hop.ID)
}

// wallClock records a run that outlived max_wall_clock_seconds as a breach
// (and so halts it, unless the run only denies).
func (s *shard) wallClock(ctx context.Context, st *ledger.State, now time.Time) ([]outgoing, error) {
	limits := s.e.limitsOf(st)
	wc := limits.wallClock()
	if st.Closed() || wc == 0 || st.Breached(LimitWallClock) {
		return nil, nil
	}
	if elapsed := now.Sub(st.StartedAt); elapsed < wc {
		return []outgoing{s.e.timer(st.RunID, broker.TimerRunKey, st.StartedAt.Add(wc))}, nil
	}
	action := "deny"
	if limits.OnBreach == HaltAndAlert {
		action = "halt"
	}
	ev, ok := mustEvent(st.RunID, schemas.EventRunLimitBreached, "", now, &schemas.RunLimitBreached{
		Limit: LimitWallClock, Value: now.Sub(st.StartedAt).Seconds(), Bound: wc.Seconds(),
		Reason: schemas.ReasonBudget, Action: action,
	})
	if !ok {
		return nil, nil
	}
	return s.record(ctx, st, []schemas.Event{ev}, nil, "")
}
