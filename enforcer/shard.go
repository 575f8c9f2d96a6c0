package enforcer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/enforcer/guardrail"
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
	// timerKey is the fired timer's key: the run's own, or a hop's retry.
	timerKey string
	// halt is an operator's halt request, approve an operator's answer
	// to a hop held for approval.
	halt    *haltRequest
	approve *approveRequest
}

// shard is one of the enforcer's workers. It takes a run from the
// mailbox, does its next piece of work, and gives the run back; the
// run's state is in the shared cache, touched only by the worker holding
// the run.
type shard struct {
	e   *Enforcer
	ctx context.Context
	// acks are this worker's messages waiting for their publishes.
	acks chan pending
	// lastDropLog is when a dropped submission was last logged.
	lastDropLog time.Time
	// lastKeptLog is when a kept submission was last logged.
	lastKeptLog time.Time
	// extra are outgoing messages the decision's inputs called for (circuit
	// alerts), published with the work's own.
	extra []outgoing
}

// publisher is a connection that appends and forwards; a run always uses
// the same one, so its publishes are never reordered between connections.
type publisher struct {
	js     jetstream.JetStream
	ledger *ledger.Ledger
}

// pending waits for a message's outgoing publishes to be stored, then
// completes it: ack (or reply to the operator) when all were stored.
type pending struct {
	futures []jetstream.PubAckFuture
	done    func(ok bool)
	// storedAt is when the broker stored the submission, for the
	// submit-to-deliver latency; zero for timers and operator commands.
	storedAt time.Time
}

// runBatch is how many pieces of one run's work a worker does in a row
// before it gives the run back.
const runBatch = 16

func newShard(e *Enforcer, ctx context.Context) *shard {
	return &shard{e: e, ctx: ctx, acks: make(chan pending, 1024)}
}

// run does work from the mailbox until it is closed and empty.
func (s *shard) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(s.acks)
	for {
		q, w, ok := s.e.mailbox.take()
		if !ok {
			return
		}
		for n := 1; ; n++ {
			s.handle(w)
			if w, ok = s.e.mailbox.next(q, n, runBatch); !ok {
				break
			}
		}
		s.e.mailbox.done(q)
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
			s.e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.errors })
		} else if !p.storedAt.IsZero() && len(p.futures) > 0 {
			s.e.cfg.Metrics.delivered(time.Since(p.storedAt))
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
	began := time.Now()
	s.extra = nil
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
		case w.approve != nil:
			out, err = s.processApprove(ctx, w.approve)
		case w.timer:
			out, err = s.processTimer(ctx, w.run, w.timerKey, redelivered(w.msg))
		default:
			out, err = s.process(ctx, sub)
		}
		// Another writer appended to the run. Operator commands reach any
		// instance and are retried on the run as it is now; a submission or
		// a timer is nacked instead (below) and redelivered to whichever
		// instance owns its partition then: conflicts on them happen only
		// while a partition changes hands (or without partitions).
		if !errors.Is(err, ledger.ErrConflict) || w.halt == nil && w.approve == nil {
			break
		}
		s.e.cache.remove(w.run)
	}
	done := s.completion(w)
	if errors.Is(err, errAbandon) {
		s.disarm(w.run)
		return
	}
	if err != nil && errors.Is(err, ledger.ErrConflict) && w.halt == nil && w.approve == nil {
		s.e.stats.conflicts.Add(1)
		s.e.cfg.Logger.Info("run appended to by another instance: redelivering", "run", w.run)
		s.e.cache.remove(w.run)
		done(false)
		return
	}
	if err != nil {
		s.e.stats.errors.Add(1)
		s.e.cfg.Logger.Warn("handle", "run", w.run, "err", err)
		s.e.cache.remove(w.run)
		if w.halt != nil {
			w.halt.reply(schemas.HaltReply{Error: err.Error()})
			return
		}
		if w.approve != nil {
			w.approve.reply(schemas.ApprovalReply{Error: err.Error()})
			return
		}
		if sub != nil && storeFull(err) && !errors.Is(err, errRecordedSome) {
			if kept(sub) {
				// An answer to an open hop is not refused: its sender
				// has finished and would not send it again, so refusing
				// it would leave the hop to time out. It stays in SUBMIT,
				// unforwarded, and is tried again soon.
				s.deferred(w, err)
				return
			}
			// Fail closed: nothing unrecorded is forwarded, and the sender
			// is told why instead of waiting for a store that has no room.
			s.failClosed(sub, err, done)
			return
		}
		done(false)
		return
	}
	s.e.cache.account(w.run)
	out = append(out, s.extra...)
	s.extra = nil
	if sub != nil {
		s.e.cfg.Metrics.decided(time.Since(began))
	}
	if w.timer {
		s.disarm(w.run) // it fired: whatever is due next must be set again
	}
	out = append(out, s.armTimer(w.run)...)
	futures, err := s.e.publish(s.e.publisher(w.run).js, out)
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
	p := pending{futures: futures, done: complete}
	if sub != nil {
		p.storedAt = sub.StoredAt
	}
	s.acks <- p
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
	if w.approve != nil {
		return w.approve.complete
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
		p, err := rules.Decide(ledger.NewState(sub.RunToken), sub, now, s.inputs(ctx, rules, now))
		if err != nil || p.Dropped != nil {
			s.dropped(sub, p.Dropped)
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
		s.e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.redelivered })
		if err := s.finish(ctx, st); err != nil {
			return nil, fmt.Errorf("%w: %w", errRecordedSome, err)
		}
		return s.e.effectsFrom(ctx, st, seq, sub)
	}
	in := s.inputs(ctx, rules, now)
	// A rejection, a replay or a drop appends nothing to the run, so no
	// expected sequence would catch a stale state: another instance may
	// have written the run since it was cached (admitted the hop a reply
	// answers). Decide checks the state is current before it charges one.
	in.Current = func(st *ledger.State) error { return s.fresh(ctx, st) }
	p, err := rules.Decide(st, sub, now, in)
	if err != nil {
		return nil, err
	}
	if p.Dropped != nil {
		s.dropped(sub, p.Dropped)
		return nil, nil
	}
	if p.Replayed != nil {
		s.e.stats.replayed.Add(1)
		s.e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.replayed })
		return s.e.replayed(ctx, st, p.Replayed, sub)
	}
	if p.Reject != nil {
		return s.reject(ctx, sub, p.Reject)
	}
	return s.record(ctx, st, p.Events, sub, sub.HopID())
}

// dropped counts (and logs, at most once a second per shard) a submission
// dropped unrecorded because its sender is over its rate of rejected
// submissions.
func (s *shard) dropped(sub *decision.Submission, v *decision.Verdict) {
	if v == nil {
		return
	}
	s.e.stats.dropped.Add(1)
	s.e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.dropped })
	if now := time.Now(); now.Sub(s.lastDropLog) >= time.Second {
		s.lastDropLog = now
		s.e.cfg.Logger.Warn("submission dropped", "caller", sub.Caller, "run", sub.RunToken, "submit_seq", sub.Seq, "reason", v.Message)
	}
}

// inputs are the decision core's I/O: takes from the fleet-wide rate
// limits in the KV store, other runs' states, read from the ledger (never
// from another shard's cache, which this shard does not own), and the
// external guardrail checker of rules.
func (s *shard) inputs(ctx context.Context, rules *decision.Rules, now time.Time) decision.Inputs {
	in := decision.Inputs{Run: func(id string) (*ledger.State, error) {
		st, err := s.e.ledger.Load(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("load run %s: %w", id, err)
		}
		return st, nil
	}}
	if s.e.limiter != nil {
		in.Rate = func(key string, rate ratelimit.Rate) (ratelimit.Decision, error) {
			return s.e.limiter.Take(ctx, key, rate, now)
		}
	}
	s.e.quotaInputs(ctx, rules, now, &in, &s.extra)
	if rules.Guard != nil && rules.Checker != nil {
		in.Scan = func(req guardrail.Request) guardrail.Result {
			return rules.Guard.Check(ctx, rules.Checker, req)
		}
	}
	return in
}

// record appends events (and the follow-ups they call for) to a run and
// returns the effects of all of them.
func (s *shard) record(ctx context.Context, st *ledger.State, events []schemas.Event, sub *decision.Submission, hop string) ([]outgoing, error) {
	var recs []ledger.Record
	for _, ev := range events {
		rec, err := s.append(ctx, st, ev)
		if err != nil {
			return nil, partial(recs, err)
		}
		s.count(&ev)
		recs = append(recs, rec)
	}
	more, err := s.followUps(ctx, st)
	if err != nil {
		return nil, partial(recs, err)
	}
	recs = append(recs, more...)
	if hook := s.e.cfg.Hooks.AfterAppend; hook != nil {
		if err := hook(st.RunID, hop); err != nil {
			s.e.cache.remove(st.RunID)
			return nil, errAbandon
		}
	}
	var out []outgoing
	for _, rec := range recs {
		s.e.spendOf(st, &rec.Event)
		o, err := s.e.effects(ctx, st, rec, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, o...)
	}
	s.e.exportSpans(st, recs)
	return out, nil
}

// errRecordedSome marks a failure after some of a submission's events
// were appended: its decision is recorded, so it must not be refused as
// unrecorded; it is retried, and the retry finds the decision and finishes
// what was cut off (follow-ups, effects).
var errRecordedSome = errors.New("the decision is recorded, what follows it is not yet")

func partial(recs []ledger.Record, err error) error {
	if len(recs) == 0 {
		return err
	}
	return fmt.Errorf("%w: %w", errRecordedSome, err)
}

// count counts an appended event in the enforcer's stats and metrics, and
// logs what operators want to hear of: every denial (at debug), a failed
// authentication, a breach and a halt. Allowed hops are never logged above
// debug.
func (s *shard) count(ev *schemas.Event) {
	m, log := s.e.cfg.Metrics, s.e.cfg.Logger
	switch ev.Type {
	case schemas.EventHopAllowed:
		s.e.stats.allowed.Add(1)
		m.hop("allowed", "")
	case schemas.EventHopDenied:
		s.e.stats.denied.Add(1)
		d, _ := ev.DecodeData()
		hd, _ := d.(*schemas.HopDecision)
		if hd == nil {
			hd = &schemas.HopDecision{}
		}
		m.hop("denied", string(hd.Reason))
		if hd.Breach != nil && hd.Reason == schemas.ReasonRate {
			m.limit(hd.Breach.Limit)
		}
		log.Debug("hop denied", "run", ev.RunID, "hop", ev.HopID, "caller", hd.From, "target", hd.To,
			"reason", hd.Reason, "policy_ids", hd.PolicyIDs, "message", hd.Message)
		if hd.Reason == schemas.ReasonIdentity {
			if strings.Contains(hd.Message, "signature") || strings.Contains(hd.Message, "signed") {
				m.count(func(m *Metrics) prometheus.Counter { return m.signatures })
			}
			log.Warn("authentication failed", "run", ev.RunID, "caller", hd.From, "submit_seq", hd.SubmitSeq, "message", hd.Message)
		}
	case schemas.EventHopCompleted:
		s.e.stats.completed.Add(1)
	case schemas.EventHopTimedOut:
		s.e.stats.timedOut.Add(1)
		log.Info("hop timed out", "run", ev.RunID, "hop", ev.HopID)
	case schemas.EventRunLimitBreached:
		if d, err := ev.DecodeData(); err == nil {
			b := d.(*schemas.RunLimitBreached)
			log.Warn("limit breached", "run", ev.RunID, "limit", b.Limit, "value", b.Value, "bound", b.Bound,
				"caller", b.From, "target", b.To, "action", b.Action)
		}
	case schemas.EventRunHalted:
		s.e.stats.halted.Add(1)
		m.count(func(m *Metrics) prometheus.Counter { return m.halts })
		m.count(func(m *Metrics) prometheus.Counter { return m.alerts })
		if d, err := ev.DecodeData(); err == nil {
			h := d.(*schemas.RunHalted)
			log.Warn("run halted", "run", ev.RunID, "by", h.By, "reason", h.Reason, "open_hops", len(h.OpenHops))
		}
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
		s.count(&ev)
		recs = append(recs, rec)
	}
	return recs, nil
}

// reject records a denial that belongs to no run in a ledger entry of its
// own, named after the submission. Its content depends only on the
// submission, so recording it again after a crash is a no-op.
func (s *shard) reject(ctx context.Context, sub *decision.Submission, d *schemas.HopDecision) ([]outgoing, error) {
	ev := decision.RejectEvent(sub, d)
	_, rec, err := s.e.publisher(ev.RunID).ledger.Append(ctx, ledger.Head{}, ev)
	if err != nil {
		return nil, err
	}
	s.count(&rec.Event)
	if hook := s.e.cfg.Hooks.AfterAppend; hook != nil {
		if err := hook(ev.RunID, sub.HopID()); err != nil {
			return nil, errAbandon
		}
	}
	return s.e.effects(ctx, ledger.NewState(ev.RunID), rec, sub)
}

// append writes one event at the state's head and folds it in.
func (s *shard) append(ctx context.Context, st *ledger.State, ev schemas.Event) (ledger.Record, error) {
	_, rec, err := s.e.publisher(st.RunID).ledger.Append(ctx, st.Head, ev)
	if err != nil {
		return ledger.Record{}, err
	}
	if err := st.Apply(rec); err != nil {
		s.e.cache.remove(st.RunID)
		return ledger.Record{}, err
	}
	return rec, nil
}

// fresh returns ledger.ErrConflict when the run's ledger has moved past
// st (another instance appended), so that the caller decides again.
func (s *shard) fresh(ctx context.Context, st *ledger.State) error {
	head, err := s.e.ledger.Head(ctx, st.RunID)
	if err != nil {
		return err
	}
	if head.StreamSeq != st.Head.StreamSeq {
		return fmt.Errorf("run %s moved from stream seq %d to %d: %w", st.RunID, st.Head.StreamSeq, head.StreamSeq, ledger.ErrConflict)
	}
	return nil
}

// state returns the run's state from the cache, or folds it from the ledger.
func (s *shard) state(ctx context.Context, run string) (*ledger.State, error) {
	if st, ok := s.e.cache.get(run); ok {
		return st, nil
	}
	st, err := s.e.ledger.Load(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", run, err)
	}
	s.e.cache.add(run, st)
	return st, nil
}

// storeFull reports whether err is JetStream refusing to store because a
// stream or the server has no room: the ledger is full (discard new, at
// max_bytes) or its disk is.
func storeFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10077, // stream store failed: maximum bytes or messages exceeded
		10047, // insufficient storage resources
		10023: // insufficient resources
		return true
	}
	return false
}

// kept reports whether a submission the ledger has no room for is kept
// for a later try instead of refused: a reply or a cancel closes a hop
// its sender will not send again (an agent acknowledges its task once the
// reply is stored in SUBMIT), while a refused invoke or progress is the
// sender's to send again.
func kept(sub *decision.Submission) bool {
	return sub.Env != nil && (sub.Env.Kind == schemas.KindReply || sub.Env.Kind == schemas.KindCancel)
}

// keptRetry is how soon a kept submission is tried again: often enough
// that a reply recorded once the ledger has room beats its hop's deadline.
const keptRetry = time.Second

// deferred leaves a kept submission in SUBMIT, unacknowledged, to be
// tried again in keptRetry: nothing of it is recorded or forwarded yet.
func (s *shard) deferred(w work, cause error) {
	s.e.stats.kept.Add(1)
	s.e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.kept })
	if now := time.Now(); now.Sub(s.lastKeptLog) >= time.Second {
		s.lastKeptLog = now
		s.e.cfg.Logger.Warn("the ledger has no room: an answer is kept to be recorded later", "run", w.run, "err", cause)
	}
	if err := w.msg.NakWithDelay(keptRetry); err != nil {
		s.e.cfg.Logger.Warn("nak", "err", err)
	}
}

// failClosed answers a submission that could not be recorded with a
// denial (reason unavailable), which is not recorded either, and
// acknowledges it: a hop is never forwarded without its record.
func (s *shard) failClosed(sub *decision.Submission, cause error, done func(bool)) {
	s.e.stats.unavailable.Add(1)
	s.e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.unavailable })
	if !schemas.ValidPrincipalID(sub.Caller) {
		done(true)
		return
	}
	denial := &schemas.Denial{Reason: schemas.ReasonUnavailable, SubmitSeq: sub.Seq,
		Message: "the gateway cannot record this submission now (" + cause.Error() + "); nothing was forwarded: try again later"}
	if sub.Env != nil {
		denial.SubmitKind = sub.Env.Kind
	}
	hc := schemas.Context{RunID: sub.RunToken, HopID: sub.HopID()}
	futures, err := s.e.publish(s.e.publisher(sub.RunToken).js, []outgoing{s.e.delivery(sub.Caller, sub.DenialToken(), schemas.DeliverDenied, nil, hc, 0, denial)})
	if err != nil {
		done(false)
		return
	}
	s.acks <- pending{futures: futures, done: done}
}
