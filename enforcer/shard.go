package enforcer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// shard handles the runs that hash to it, one submission at a time. It owns
// their states, so nothing here is locked.
type shard struct {
	e    *Enforcer
	ctx  context.Context
	in   chan jetstream.Msg
	acks chan pendingAck
	runs *simplelru.LRU[string, *ledger.State]
	once sync.Once
}

// pendingAck is a submission waiting for its deliveries to be stored.
type pendingAck struct {
	msg     jetstream.Msg
	futures []jetstream.PubAckFuture
}

func newShard(e *Enforcer, ctx context.Context) (*shard, error) {
	runs, err := simplelru.NewLRU[string, *ledger.State](e.cfg.RunCacheSize, nil)
	if err != nil {
		return nil, fmt.Errorf("run cache: %w", err)
	}
	return &shard{e: e, ctx: ctx, in: make(chan jetstream.Msg, 256), acks: make(chan pendingAck, 1024), runs: runs}, nil
}

func (s *shard) close() { s.once.Do(func() { close(s.in) }) }

func (s *shard) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(s.acks)
	for m := range s.in {
		s.handle(m)
	}
}

// acker acks each submission once its deliveries are stored, in order.
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
					s.e.cfg.Logger.Warn("forward", "subject", f.Msg().Subject, "err", err)
					ok = false
				}
			}
		}
		if !ok {
			s.e.stats.errors.Add(1)
			s.nak(p.msg)
			continue
		}
		if err := p.msg.Ack(); err != nil {
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

// handle decides one submission. Infrastructure failures nak it for a later
// retry; nothing about its content can make it fail.
func (s *shard) handle(m jetstream.Msg) {
	sub := s.e.parse(m)
	var ds []delivery
	var err error
	ctx, cancel := context.WithTimeout(s.ctx, s.e.cfg.OpTimeout)
	defer cancel()
	for attempt := 0; attempt < 5; attempt++ {
		ds, err = s.process(ctx, sub)
		if !errors.Is(err, ledger.ErrConflict) {
			break
		}
		// Another writer appended to the run: forget what we knew.
		s.runs.Remove(sub.runToken)
	}
	if errors.Is(err, errAbandon) {
		return
	}
	if err != nil {
		s.e.stats.errors.Add(1)
		s.e.cfg.Logger.Warn("submission", "subject", m.Subject(), "seq", sub.seq, "err", err)
		s.runs.Remove(sub.runToken)
		s.nak(m)
		return
	}
	futures, err := s.e.publish(ds)
	if err != nil {
		s.e.stats.errors.Add(1)
		s.e.cfg.Logger.Warn("forward", "err", err)
	}
	if err != nil || len(futures) == 0 && len(ds) > 0 {
		s.nak(m)
		return
	}
	s.acks <- pendingAck{msg: m, futures: futures}
}

// errAbandon is returned when a test hook simulates a crash.
var errAbandon = errors.New("abandoned by hook")

// process decides and records one submission and returns what to forward.
func (s *shard) process(ctx context.Context, sub *submission) ([]delivery, error) {
	if !schemas.ValidID(sub.runToken) {
		return s.reject(ctx, sub, s.e.decide(ledger.NewState(sub.runToken), sub, s.e.cfg.Clock()).reject)
	}
	st, err := s.state(ctx, sub.runToken)
	if err != nil {
		return nil, err
	}
	if seq, ok := st.Decided(sub.digest); ok {
		s.e.stats.redelivered.Add(1)
		return s.redo(ctx, st, seq, sub)
	}
	now := s.e.cfg.Clock()
	p := s.e.decide(st, sub, now)
	if p.reject != nil {
		return s.reject(ctx, sub, p.reject)
	}
	var decision ledger.Record
	for _, ev := range p.events {
		rec, err := s.append(ctx, st, ev)
		if err != nil {
			return nil, err
		}
		if ev.Type != schemas.EventRunStarted {
			decision = rec
		}
	}
	s.count(decision.Event.Type)
	if err := s.finish(ctx, st); err != nil {
		return nil, err
	}
	if hook := s.e.cfg.Hooks.AfterAppend; hook != nil {
		if err := hook(st.RunID, sub.hopID()); err != nil {
			s.runs.Remove(st.RunID)
			return nil, errAbandon
		}
	}
	return s.e.effects(st, decision, sub)
}

func (s *shard) count(t schemas.EventType) {
	switch t {
	case schemas.EventHopAllowed:
		s.e.stats.allowed.Add(1)
	case schemas.EventHopDenied:
		s.e.stats.denied.Add(1)
	case schemas.EventHopCompleted:
		s.e.stats.completed.Add(1)
	}
}

// redo repeats the effects of a submission already in the ledger: the crash
// happened after the append, so only the forward (refused by the broker if
// it happened too) and the follow-ups remain.
func (s *shard) redo(ctx context.Context, st *ledger.State, streamSeq uint64, sub *submission) ([]delivery, error) {
	rec, err := s.e.ledger.Get(ctx, streamSeq)
	if err != nil {
		return nil, err
	}
	if err := s.finish(ctx, st); err != nil {
		return nil, err
	}
	return s.e.effects(st, rec, sub)
}

// finish appends the follow-up events the state calls for.
func (s *shard) finish(ctx context.Context, st *ledger.State) error {
	for _, ev := range s.e.followUps(st, s.e.cfg.Clock()) {
		if _, err := s.append(ctx, st, ev); err != nil {
			return err
		}
	}
	return nil
}

// reject records a denial that belongs to no run in a ledger entry of its
// own, named after the submission. Its content depends only on the
// submission, so recording it again after a crash is a no-op.
func (s *shard) reject(ctx context.Context, sub *submission, d *schemas.HopDecision) ([]delivery, error) {
	run := sub.rejectRun()
	ev, err := schemas.NewEvent(run, schemas.EventHopDenied, sub.hopID(), sub.storedAt, d)
	if err != nil {
		return nil, fmt.Errorf("reject: %w", err)
	}
	_, rec, err := s.e.ledger.Append(ctx, ledger.Head{}, ev)
	if err != nil {
		return nil, err
	}
	s.e.stats.denied.Add(1)
	if hook := s.e.cfg.Hooks.AfterAppend; hook != nil {
		if err := hook(run, sub.hopID()); err != nil {
			return nil, errAbandon
		}
	}
	return s.e.effects(ledger.NewState(run), rec, sub)
}

// append writes one event at the state's head and folds it in.
func (s *shard) append(ctx context.Context, st *ledger.State, ev schemas.Event) (ledger.Record, error) {
	_, rec, err := s.e.ledger.Append(ctx, st.Head, ev)
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
