package enforcer

import (
	"context"
	"slices"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// processTimer handles a run's fired timer: it times out every open hop
// past its deadline and records a run that outlived its wall clock. Timers
// live on the server (TIMERS stream schedules), so they fire whether or not
// an enforcer was running when they were due. redelivered is set when the
// broker delivered this firing before: a crash may then have cut off the
// effects of what the first attempt recorded, and they are repeated.
func (s *shard) processTimer(ctx context.Context, run, key string, redelivered bool) ([]outgoing, error) {
	st, err := s.state(ctx, run)
	if err != nil {
		return nil, err
	}
	if !st.Started {
		return nil, nil
	}
	var out []outgoing
	if key != broker.TimerRunKey {
		// A hop's retry timer: deliver the attempt that is due.
		if hop := st.Hops[key]; decision.RetryDue(hop, s.e.cfg.Clock()) {
			if out, err = s.e.retryDelivery(ctx, st, hop); err != nil {
				return nil, err
			}
		}
	}
	if redelivered {
		if out, err = s.redoTimerEffects(ctx, st); err != nil {
			return nil, err
		}
	}
	rules, now := s.e.rules.Load(), s.e.cfg.Clock()
	events := rules.DueWith(st, now, s.e.circuitFunc(ctx, rules, now, &s.extra))
	if len(events) == 0 {
		return out, nil
	}
	more, err := s.record(ctx, st, events, nil, "")
	return append(out, more...), err
}

// redoTimerEffects repeats the effects of every timeout, every hop rejected
// for want of approval, and a halt the run has recorded; deliveries
// already made are refused by the broker.
func (s *shard) redoTimerEffects(ctx context.Context, st *ledger.State) ([]outgoing, error) {
	var seqs []uint64
	for _, h := range st.Hops {
		if h.Status == ledger.HopTimedOut || h.Status == ledger.HopDenied && h.Reason == schemas.ReasonApproval {
			seqs = append(seqs, h.CloseStreamSeq)
		}
	}
	if st.Halted {
		seqs = append(seqs, st.HaltedStreamSeq)
	}
	slices.Sort(seqs)
	var out []outgoing
	for _, seq := range seqs {
		o, err := s.e.effectsFrom(ctx, st, seq, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, o...)
	}
	return out, nil
}

// armTimer returns the schedule that keeps the run's timer at its next due
// time, or nothing when it is already there (runCache.arm).
func (s *shard) armTimer(run string) []outgoing {
	due, set, purge := s.e.cache.arm(run, s.e.rules.Load().NextDue)
	switch {
	case purge:
		return []outgoing{{purge: s.e.subjects.TimerSchedule(run, broker.TimerRunKey)}}
	case set:
		return []outgoing{s.e.timer(run, due)}
	}
	return nil
}

func (s *shard) disarm(run string) { s.e.cache.disarm(run) }
