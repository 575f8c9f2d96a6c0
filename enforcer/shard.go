package enforcer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/enforcer/ratelimit"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// work is one thing for a shard to do for one run.
type work struct {
	run string
	// caller is the caller token of a submission's subject.
	caller string
	// msg is a submission or, when timer is set, a fired timer.
	msg   jetstream.Msg
	timer bool
	// halt is an operator's halt request.
	halt *haltRequest
}

// shard handles the runs that hash to it, one message at a time. It owns
// their states, so nothing here is locked.
type shard struct {
	e   *Enforcer
	ctx context.Context
	// js and ledger are the connection this shard appends and publishes on.
	js     jetstream.JetStream
	ledger *ledger.Ledger
	in     chan work
	acks   chan pending
	runs   *simplelru.LRU[string, *ledger.State]
	once   sync.Once

	// armed is the due time this shard last set each run's timer to.
	armedMu sync.Mutex
	armed   map[string]time.Time
}

// pending waits for a message's outgoing publishes to be stored, then
// completes it: ack (or reply to the operator) when all were stored.
type pending struct {
	futures []jetstream.PubAckFuture
	done    func(ok bool)
}

func newShard(e *Enforcer, ctx context.Context, js jetstream.JetStream) (*shard, error) {
	s := &shard{e: e, ctx: ctx, js: js, in: make(chan work, 256), acks: make(chan pending, 1024), armed: map[string]time.Time{}}
	s.ledger = ledger.New(js, e.subjects.Stream(broker.StreamLedger), e.subjects)
	runs, err := simplelru.NewLRU[string, *ledger.State](e.cfg.RunCacheSize, func(run string, _ *ledger.State) { s.disarm(run) })
	if err != nil {
		return nil, fmt.Errorf("run cache: %w", err)
	}
	s.runs = runs
	return s, nil
}

func (s *shard) close() { s.once.Do(func() { close(s.in) }) }

func (s *shard) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(s.acks)
	for w := range s.in {
		s.handle(w)
	}
}

// acker completes each message once its publishes are stored, in order.
func (s *shard) acker(wg *sync.WaitGroup) {
	defer wg.Done()
	for p := range s.acks {
		ok := true
		for _, f := range p.futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				// Written before: an earlier attempt delivered it.
				if !ledger.IsWrongLastSequence(err) {
					s.e.cfg.Logger.Warn("publish", "subject", f.Msg().Subject, "err", err)
					ok = false
				}
			}
		}
		if !ok {
			s.e.stats.errors.Add(1)
		}
		p.done(ok)
	}
}

// ackOrNak is the completion of a JetStream message.
func (s *shard) ackOrNak(m jetstream.Msg) func(bool) {
	return func(ok bool) {
		if !ok {
			s.nak(m)
			return
		}
		if err := m.Ack(); err != nil {
			s.e.cfg.Logger.Warn("ack", "err", err)
		}
	}
}

func (s *shard) nak(m jetstream.Msg) {
	var delivered uint64 = 1
	if meta, err := m.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	if err := m.NakWithDelay(backoff(delivered)); err != nil {
		s.e.cfg.Logger.Warn("nak", "err", err)
	}
}

// handle does one piece of work. Infrastructure failures nak it for a later
// retry; nothing about a message's content can make it fail.
func (s *shard) handle(w work) {
	ctx, cancel := context.WithTimeout(s.ctx, s.e.cfg.OpTimeout)
	defer cancel()
	var sub *decision.Submission
	if w.msg != nil && !w.timer {
		sub = s.e.parse(w)
	}
	var out []outgoing
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		switch {
		case w.halt != nil:
			out, err = s.processHalt(ctx, w.halt)
		case w.timer:
			out, err = s.processTimer(ctx, w.run, redelivered(w.msg))
		default:
			out, err = s.process(ctx, sub)
		}
		if !errors.Is(err, ledger.ErrConflict) {
			break
		}
		// Another writer appended to the run: forget what we knew.
		s.runs.Remove(w.run)
	}
	done := s.completion(w)
	if errors.Is(err, errAbandon) {
		s.disarm(w.run)
		return
	}
	if err != nil {
		s.e.stats.errors.Add(1)
		s.e.cfg.Logger.Warn("handle", "run", w.run, "err", err)
		s.runs.Remove(w.run)
		if w.halt != nil {
			w.halt.reply(schemas.HaltReply{Error: err.Error()})
			return
		}
		done(false)
		return
	}
	if w.timer {
		s.disarm(w.run) // it fired: whatever is due next must be set again
	}
	out = append(out, s.armTimer(w.run)...)
	futures, err := s.e.publish(s.js, out)
	run := w.run
	complete := func(ok bool) {
		if !ok {
			s.disarm(run)
		}
		done(ok)
	}
	if err != nil {
		s.e.stats.errors.Add(1)
		s.e.cfg.Logger.Warn("publish", "err", err)
		complete(false)
		return
	}
	s.acks <- pending{futures: futures, done: complete}
}

// redelivered reports whether the broker delivered m before.
func redelivered(m jetstream.Msg) bool {
	meta, err := m.Metadata()
	return err == nil && meta.NumDelivered > 1
}

func (s *shard) completion(w work) func(bool) {
	if w.halt != nil {
		return w.halt.complete
	}
	return s.ackOrNak(w.msg)
}

// errAbandon is returned when a test hook simulates a crash.
var errAbandon = errors.New("abandoned by hook")

// process decides and records one submission and returns what to publish.
func (s *shard) process(ctx context.Context, sub *decision.Submission) ([]outgoing, error) {
	rules := s.e.rules.Load()
	now := s.e.cfg.Clock()
	if !schemas.ValidID(sub.RunToken) {
		p, err := rules.Decide(ledger.NewState(sub.RunToken), sub, now, s.rate(ctx, now))
		if err != nil {
			return nil, err
		}
		return s.reject(ctx, sub, p.Reject)
	}
	st, err := s.state(ctx, sub.RunToken)
	if err != nil {
		return nil, err
	}
	if seq, ok := st.Decided(sub.Digest); ok {
		s.e.stats.redelivered.Add(1)
		if err := s.finish(ctx, st); err != nil {
			return nil, err
		}
		return s.e.effectsFrom(ctx, st, seq, sub)
	}
	p, err := rules.Decide(st, sub, now, s.rate(ctx, now))
	if err != nil {
		return nil, err
	}
	if p.Reject != nil {
		return s.reject(ctx, sub, p.Reject)
	}
	return s.record(ctx, st, p.Events, sub, sub.HopID())
}

// rate is the decision core's view of the fleet-wide rate limits: a take
// from the caller's bucket in the KV store.
func (s *shard) rate(ctx context.Context, now time.Time) decision.RateFunc {
	if s.e.limiter == nil {
		return nil
	}
	return func(caller string, rate ratelimit.Rate) (ratelimit.Decision, error) {
		return s.e.limiter.Take(ctx, caller, rate, now)
	}
}

// record appends events (and the follow-ups they call for) to a run and
// returns the effects of all of them.
func (s *shard) record(ctx context.Context, st *ledger.State, events []schemas.Event, sub *decision.Submission, hop string) ([]outgoing, error) {
	var recs []ledger.Record
	for _, ev := range events {
		rec, err := s.append(ctx, st, ev)
		if err != nil {
			return nil, err
		}
		s.count(ev.Type)
		recs = append(recs, rec)
	}
	more, err := s.followUps(ctx, st)
	if err != nil {
		return nil, err
	}
	recs = append(recs, more...)
	if hook := s.e.cfg.Hooks.AfterAppend; hook != nil {
		if err := hook(st.RunID, hop); err != nil {
			s.runs.Remove(st.RunID)
			return nil, errAbandon
		}
	}
	var out []outgoing
	for _, rec := range recs {
		o, err := s.e.effects(st, rec, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, o...)
	}
	s.e.exportSpans(st, recs)
	return out, nil
}

func (s *shard) count(t schemas.EventType) {
	switch t {
	case schemas.EventHopAllowed:
		s.e.stats.allowed.Add(1)
	case schemas.EventHopDenied:
		s.e.stats.denied.Add(1)
	case schemas.EventHopCompleted:
		s.e.stats.completed.Add(1)
	case schemas.EventHopTimedOut:
		s.e.stats.timedOut.Add(1)
	case schemas.EventRunHalted:
		s.e.stats.halted.Add(1)
	}
}

// finish appends the follow-up events the state calls for (after a crash).
func (s *shard) finish(ctx context.Context, st *ledger.State) error {
	_, err := s.followUps(ctx, st)
	return err
}

func (s *shard) followUps(ctx context.Context, st *ledger.State) ([]ledger.Record, error) {
	var recs []ledger.Record
	rules := s.e.rules.Load()
	for range 8 {
		ev, ok := rules.FollowUp(st, s.e.cfg.Clock())
		if !ok {
			return recs, nil
		}
		rec, err := s.append(ctx, st, ev)
		if err != nil {
			return nil, err
		}
		s.count(ev.Type)
		recs = append(recs, rec)
	}
	return recs, nil
}

// reject records a denial that belongs to no run in a ledger entry of its
// own, named after the submission. Its content depends only on the
// submission, so recording it again after a crash is a no-op.
func (s *shard) reject(ctx context.Context, sub *decision.Submission, d *schemas.HopDecision) ([]outgoing, error) {
	ev := decision.RejectEvent(sub, d)
	_, rec, err := s.ledger.Append(ctx, ledger.Head{}, ev)
	if err != nil {
		return nil, err
	}
	s.e.stats.denied.Add(1)
	if hook := s.e.cfg.Hooks.AfterAppend; hook != nil {
		if err := hook(ev.RunID, sub.HopID()); err != nil {
			return nil, errAbandon
		}
	}
	return s.e.effects(ledger.NewState(ev.RunID), rec, sub)
}

// append writes one event at the state's head and folds it in.
func (s *shard) append(ctx context.Context, st *ledger.State, ev schemas.Event) (ledger.Record, error) {
	_, rec, err := s.ledger.Append(ctx, st.Head, ev)
	if err != nil {
		return ledger.Record{}, err
	}
	if err := st.Apply(rec); err != nil {
		s.runs.Remove(st.RunID)
		return ledger.Record{}, err
	}
	return rec, nil
}

// state returns the run's state from the cache, or folds it from the ledger.
func (s *shard) state(ctx context.Context, run string) (*ledger.State, error) {
	if st, ok := s.runs.Get(run); ok {
		return st, nil
	}
	st, err := s.e.ledger.Load(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", run, err)
	}
	s.runs.Add(run, st)
	return st, nil
}
