package enforcer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// outgoing is one message an event calls for: a delivery, a timer or an
// alert. once marks subjects written at most once (expected last subject
// sequence 0): deliveries and alerts.
type outgoing struct {
	subject string
	data    []byte
	header  nats.Header
	opts    []jetstream.PublishOpt
	once    bool
	// purge, instead of a message, names a TIMERS subject to empty (the
	// schedule of a run that ended).
	purge string
}

// effects returns what a ledger record calls for. It is the same whether
// the record was just appended or is found again when a message is
// redelivered after a crash, so forwarding is repeatable; the broker
// refuses the second write of any delivery subject. sub is the submission
// being handled, nil for timers and operator commands.
func (e *Enforcer) effects(ctx context.Context, st *ledger.State, rec ledger.Record, sub *decision.Submission) ([]outgoing, error) {
	ev := &rec.Event
	data, err := ev.DecodeData()
	if err != nil {
		return nil, fmt.Errorf("effects of %s seq %d: %w", ev.RunID, ev.Seq, err)
	}
	hop := st.Hops[ev.HopID]
	switch d := data.(type) {
	case *schemas.HopDecision:
		if ev.Type == schemas.EventHopPending {
			return e.approvalAlert(st, ev, d)
		}
		if ev.Type == schemas.EventHopAllowed {
			if hop == nil {
				return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
			}
			if hop.To != d.To {
				return nil, nil // re-routed at admission: hop.rerouted delivers it
			}
			return []outgoing{e.delivery(hop.To, hop.ID, schemas.DeliverInvoke, d.Delivered(), contextOf(st, hop), ev.Seq, nil)}, nil
		}
		if !schemas.ValidPrincipalID(d.From) || sub == nil {
			return nil, nil // nobody to tell: the subject named no valid identity
		}
		hc := schemas.Context{RunID: st.RunID, HopID: ev.HopID, ParentHopID: d.ParentHopID, Depth: d.Depth, Ancestry: d.Ancestry, OnBehalfOf: d.OnBehalfOf}
		if !st.Started {
			hc.RunID = sub.RunToken
		}
		denial := &schemas.Denial{Reason: d.Reason, Message: d.Message, SubmitKind: d.Kind, SubmitSeq: sub.Seq}
		if d.Reason == schemas.ReasonPolicy {
			denial.PolicyIDs = d.PolicyIDs // for other reasons they name the permits
		}
		return []outgoing{e.delivery(d.From, sub.DenialToken(), schemas.DeliverDenied, d.Envelope, hc, ev.Seq, denial)}, nil
	case *schemas.HopCompleted:
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		if err := e.settleQuota(ctx, st, hop, d.Usage); err != nil {
			return nil, err
		}
		if d.Settles {
			return nil, nil // the usage of a hop the halt closed: its caller was told then
		}
		if d.By == hop.To {
			out := e.circuitResult(ctx, hop.To, d.Status == schemas.StateFailed, ev.At)
			return append(out, e.delivery(hop.From, hop.ID, schemas.DeliverReply, d.Delivered(), contextOf(st, hop), ev.Seq, nil)), nil
		}
		return []outgoing{e.delivery(hop.To, decision.AttemptToken(hop.ID, hop.CurrentAttempt()), schemas.DeliverCancel, d.Envelope, contextOf(st, hop), ev.Seq, nil)}, nil
	case *schemas.HopTimedOut:
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		if err := e.settleQuota(ctx, st, hop, nil); err != nil {
			return nil, err
		}
		hc := contextOf(st, hop)
		return append(e.circuitResult(ctx, hop.To, true, ev.At),
			e.delivery(hop.From, hop.ID, schemas.DeliverTimeout, nil, hc, ev.Seq, nil),
			e.delivery(hop.To, decision.AttemptToken(hop.ID, hop.CurrentAttempt()), schemas.DeliverCancel, nil, hc, ev.Seq, nil),
		), nil
	case *schemas.HopRetried:
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		// What the failed attempt reported is charged to the quotas as
		// to the run budget; the hop keeps its reservation until the next
		// attempt's deadline.
		if err := e.chargeQuota(ctx, st, hop, d.Usage, ev.Seq, d.Deadline.Add(decision.QuotaGrace)); err != nil {
			return nil, err
		}
		// The attempt that failed is cancelled at the target (one that
		// answered failed needs no cancel), and the next one is delivered
		// when its timer fires (retryDelivery).
		out := e.circuitResult(ctx, hop.To, true, ev.At)
		if d.Cause == schemas.RetryTimeout {
			hc := contextOf(st, hop)
			if hc.Attempt = d.Attempt - 1; hc.Attempt < 2 {
				hc.Attempt = 0
			}
			out = append(out, e.delivery(hop.To, decision.AttemptToken(hop.ID, d.Attempt-1), schemas.DeliverCancel, nil, hc, ev.Seq, nil))
		}
		return append(out, e.timerAt(st.RunID, hop.ID, d.RetryAt)), nil
	case *schemas.HopProgress:
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		// The n-th progress of the hop has a subject of its own, written
		// once: n comes from the ledger, never from the sender.
		o := e.delivery(hop.From, hop.ID, schemas.DeliverProgress, d.Delivered(), contextOf(st, hop), ev.Seq, nil)
		o.subject = e.subjects.Deliver(hop.From, hop.ID, schemas.ProgressToken(d.N))
		return []outgoing{o}, nil
	case *schemas.HopRerouted:
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		// The re-routed hop keeps its reservation until the fallback's
		// deadline.
		if err := e.chargeQuota(ctx, st, hop, nil, ev.Seq, d.Deadline.Add(decision.QuotaGrace)); err != nil {
			return nil, err
		}
		return e.rerouteEffects(ctx, st, ev, hop, d)
	case *schemas.HopApproved:
		if hop == nil || hop.DecisionStreamSeq == 0 {
			return nil, fmt.Errorf("effects: approved hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		// The invoke recorded when the hop was held is delivered now.
		held, err := e.ledger.Get(ctx, hop.DecisionStreamSeq)
		if err != nil {
			return nil, fmt.Errorf("effects: the held invoke of hop %s: %w", hop.ID, err)
		}
		data, err := held.Event.DecodeData()
		if err != nil {
			return nil, fmt.Errorf("effects: the held invoke of hop %s: %w", hop.ID, err)
		}
		dec, ok := data.(*schemas.HopDecision)
		if !ok {
			return nil, fmt.Errorf("effects: hop %s was decided by a %s, not a hop.pending", hop.ID, held.Event.Type)
		}
		return []outgoing{e.delivery(hop.To, hop.ID, schemas.DeliverInvoke, dec.Delivered(), contextOf(st, hop), ev.Seq, nil)}, nil
	case *schemas.HopRejected:
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		if err := e.settleQuota(ctx, st, hop, nil); err != nil {
			return nil, err
		}
		denial := &schemas.Denial{Reason: schemas.ReasonApproval, Message: fmt.Sprintf("not approved (%s): %s", d.By, d.Message), SubmitKind: schemas.KindInvoke}
		return []outgoing{e.delivery(hop.From, hop.ID, schemas.DeliverDenied, nil, contextOf(st, hop), ev.Seq, denial)}, nil
	case *schemas.RunHalted:
		for _, id := range d.OpenHops {
			if err := e.haltQuota(ctx, st, st.Hops[id]); err != nil {
				return nil, err
			}
		}
		return e.haltEffects(st, ev, d)
	}
	return nil, nil
}

// approvalAlert asks the approvers of a held hop to approve or reject it,
// on tg.alert.<run>.approval.<hop>.
func (e *Enforcer) approvalAlert(st *ledger.State, ev *schemas.Event, d *schemas.HopDecision) ([]outgoing, error) {
	a := d.Approval
	alert := schemas.Alert{
		Version: schemas.Version, Kind: schemas.AlertApproval, RunID: st.RunID, At: ev.At, By: schemas.GatewayActor,
		Message: fmt.Sprintf("%s -> %s (%s) waits for approval under %v: tollgate approve %s %s, or reject it; rejected at %s unless approved",
			d.From, d.To, d.Action, a.PolicyIDs, st.RunID, ev.HopID, a.Deadline.Format(time.RFC3339)),
		Agent: d.From, From: d.From, To: d.To, HopID: ev.HopID, OnBehalfOf: st.OnBehalfOf, Workflow: st.Workflow,
		LedgerSeq: ev.Seq, Approvers: a.Approvers, Deadline: a.Deadline,
	}
	data, err := schemas.Encode(&alert)
	if err != nil {
		return nil, fmt.Errorf("encode alert: %w", err)
	}
	e.cfg.Logger.Info("hop held for approval", "run", st.RunID, "hop", ev.HopID, "caller", d.From, "target", d.To,
		"approvers", a.Approvers, "policy_ids", a.PolicyIDs, "deadline", a.Deadline)
	return []outgoing{{subject: e.subjects.AlertApproval(st.RunID, ev.HopID), data: data, once: true}}, nil
}

// haltEffects cancel the halted run's open hops at their targets, tell
// their callers, and publish the alert.
func (e *Enforcer) haltEffects(st *ledger.State, ev *schemas.Event, d *schemas.RunHalted) ([]outgoing, error) {
	var out []outgoing
	for _, id := range d.OpenHops {
		hop := st.Hops[id]
		if hop == nil {
			continue
		}
		hc := contextOf(st, hop)
		out = append(out, e.delivery(hop.To, decision.AttemptToken(hop.ID, hop.CurrentAttempt()), schemas.DeliverCancel, nil, hc, ev.Seq, nil))
		denial := &schemas.Denial{Reason: schemas.ReasonHalted, Message: "run halted: " + d.Reason, SubmitKind: schemas.KindInvoke}
		out = append(out, e.delivery(hop.From, hop.ID, schemas.DeliverDenied, nil, hc, ev.Seq, denial))
	}
	alert := schemas.Alert{
		Version: schemas.Version, Kind: schemas.AlertHalt, RunID: st.RunID, At: ev.At, By: d.By, Message: d.Reason, OpenHops: d.OpenHops,
		LedgerSeq: ev.Seq, OnBehalfOf: st.OnBehalfOf, Workflow: st.Workflow, Limit: d.Limit, Reason: schemas.ReasonOperator,
	}
	if n := len(st.Breaches); n > 0 && d.By == schemas.GatewayActor {
		b := st.Breaches[n-1]
		alert.Reason, alert.Value, alert.Bound, alert.Agent, alert.From, alert.To, alert.HopID = b.Reason, b.Value, b.Bound, b.From, b.From, b.To, b.HopID
	}
	data, err := schemas.Encode(&alert)
	if err != nil {
		return nil, fmt.Errorf("encode alert: %w", err)
	}
	return append(out, outgoing{subject: e.subjects.Alert(st.RunID), data: data, once: true}), nil
}

func contextOf(st *ledger.State, hop *ledger.Hop) schemas.Context {
	hc := schemas.Context{
		RunID: st.RunID, HopID: hop.ID, ParentHopID: hop.ParentID, Depth: hop.Depth,
		Ancestry: hop.Ancestry, OnBehalfOf: st.OnBehalfOf, Deadline: hop.Deadline, TraceParent: traceParentOf(hop),
	}
	if hop.Attempt > 1 {
		hc.Attempt = hop.Attempt
	}
	return hc
}

// retryDelivery delivers a retried attempt of hop to its target, when its
// timer fired: the invoke as recorded when the hop was decided, under the
// attempt's own token (written once, so a timer fired again delivers
// nothing twice).
func (e *Enforcer) retryDelivery(ctx context.Context, st *ledger.State, hop *ledger.Hop) ([]outgoing, error) {
	rec, err := e.ledger.Get(ctx, hop.DecisionStreamSeq)
	if err != nil {
		return nil, fmt.Errorf("retry of hop %s: its decision: %w", hop.ID, err)
	}
	data, err := rec.Event.DecodeData()
	if err != nil {
		return nil, fmt.Errorf("retry of hop %s: its decision: %w", hop.ID, err)
	}
	dec, ok := data.(*schemas.HopDecision)
	if !ok {
		return nil, fmt.Errorf("retry of hop %s: decided by a %s", hop.ID, rec.Event.Type)
	}
	return []outgoing{e.delivery(hop.To, decision.AttemptToken(hop.ID, hop.Attempt), schemas.DeliverInvoke, dec.Delivered(), contextOf(st, hop), st.Head.Seq, nil)}, nil
}

func (e *Enforcer) delivery(to, token string, kind schemas.DeliveryKind, envelope []byte, hc schemas.Context, seq uint64, denial *schemas.Denial) outgoing {
	d := schemas.Delivery{Version: schemas.Version, Kind: kind, Envelope: envelope, Context: hc, Denial: denial, LedgerSeq: seq}
	data, err := d.Marshal()
	if err != nil {
		// Delivery holds only strings, numbers and raw JSON that was
		// validated on the way in; it always encodes.
		data = []byte(`{"v":1,"kind":"` + string(kind) + `"}`)
	}
	o := outgoing{subject: e.subjects.Deliver(to, token, kind), data: data, once: true}
	if hc.TraceParent != "" {
		// The W3C context travels in the header too, where propagators look.
		o.header = nats.Header{broker.TraceParentHeader: []string{hc.TraceParent}}
	}
	return o
}

// timer (re)sets the run's server-side timer to fire on TimerFire at (or
// just after) at. A run has one timer, set to its earliest due time; a new
// schedule on the same subject replaces the old one. A fired timer finds the
// run in the ledger and acts only if something is due, so an extra firing
// is harmless.
func (e *Enforcer) timer(run string, at time.Time) outgoing {
	return e.timerAt(run, broker.TimerRunKey, at)
}

// timerAt schedules the timer key of run (the run's own, or a hop's retry)
// to fire at at.
func (e *Enforcer) timerAt(run, key string, at time.Time) outgoing {
	// Schedules have second resolution: round up, never fire early.
	fire := at.Truncate(time.Second)
	if fire.Before(at) {
		fire = fire.Add(time.Second)
	}
	target := e.subjects.TimerFire(run, key)
	if n := e.cfg.Partitions; n > 0 {
		// Fired in the run's partition, owned by the instance that owns
		// the run's submissions.
		target = e.subjects.TimerFireIn(broker.Partition(run, n), run, key)
	}
	return outgoing{
		subject: e.subjects.TimerSchedule(run, key),
		data:    []byte{},
		opts: []jetstream.PublishOpt{
			jetstream.WithScheduleAt(fire),
			jetstream.WithScheduleTarget(target),
		},
	}
}

// effectsFrom repeats the effects of the record at streamSeq and of the
// follow-up events appended right after it: what a crash may have cut off.
func (e *Enforcer) effectsFrom(ctx context.Context, st *ledger.State, streamSeq uint64, sub *decision.Submission) ([]outgoing, error) {
	rec, err := e.ledger.Get(ctx, streamSeq)
	if err != nil {
		return nil, err
	}
	out, err := e.effects(ctx, st, rec, sub)
	if err != nil {
		return nil, err
	}
	for seq := rec.StreamSeq; seq < st.Head.StreamSeq; {
		next, err := e.ledger.Next(ctx, st.RunID, seq)
		if err != nil {
			return nil, err
		}
		if next.StreamSeq == 0 || !decision.IsFollowUp(next.Event.Type) {
			break
		}
		more, err := e.effects(ctx, st, next, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
		seq = next.StreamSeq
	}
	return out, nil
}

// publish sends outgoing messages without waiting; the futures tell when
// they are stored.
func (e *Enforcer) publish(js jetstream.JetStream, out []outgoing) ([]jetstream.PubAckFuture, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(out))
	for _, o := range out {
		if o.purge != "" {
			e.purgeTimer(o.purge)
			continue
		}
		msg := nats.NewMsg(o.subject)
		msg.Data = o.data
		for k, v := range o.header {
			msg.Header[k] = v
		}
		opts := o.opts
		if o.once {
			opts = append(opts, jetstream.WithExpectLastSequencePerSubject(0))
		}
		f, err := js.PublishMsgAsync(msg, opts...)
		if err != nil {
			return futures, fmt.Errorf("publish to %s: %w", o.subject, err)
		}
		futures = append(futures, f)
	}
	return futures, nil
}

// replayed answers a repeated invoke (a task run again after a crash makes
// the same delegation) with its hop's recorded outcome, on a delivery
// subject of the submission's own, so that the caller's new wait is
// answered without the hop running again. An open hop needs no answer
// now: its reply reaches the caller on the hop's own delivery.
func (e *Enforcer) replayed(ctx context.Context, st *ledger.State, hop *ledger.Hop, sub *decision.Submission) ([]outgoing, error) {
	hc := contextOf(st, hop)
	token := sub.DenialToken()
	denied := func(reason schemas.Reason, msg string, policyIDs []string) []outgoing {
		d := &schemas.Denial{Reason: reason, Message: msg, SubmitKind: schemas.KindInvoke, SubmitSeq: sub.Seq, PolicyIDs: policyIDs}
		return []outgoing{e.delivery(hop.From, token, schemas.DeliverDenied, nil, hc, hop.Seq, d)}
	}
	switch {
	case hop.Live():
		return nil, nil // the caller waits for it: its reply, or its approval
	case hop.Status == ledger.HopDenied:
		var ids []string
		if hop.Reason == schemas.ReasonPolicy {
			ids = hop.PolicyIDs
		}
		return denied(hop.Reason, "this delegation was decided before: "+string(hop.Reason), ids), nil
	case hop.Status == ledger.HopTimedOut:
		return []outgoing{e.delivery(hop.From, token, schemas.DeliverTimeout, nil, hc, hop.Seq, nil)}, nil
	case st.Halted && hop.CloseStreamSeq == st.HaltedStreamSeq:
		return denied(schemas.ReasonHalted, "run halted; this delegation was cancelled", nil), nil
	}
	rec, err := e.ledger.Get(ctx, hop.CloseStreamSeq)
	if err != nil {
		return nil, fmt.Errorf("replay hop %s: %w", hop.ID, err)
	}
	data, err := rec.Event.DecodeData()
	if err != nil {
		return nil, fmt.Errorf("replay hop %s: %w", hop.ID, err)
	}
	done, ok := data.(*schemas.HopCompleted)
	if !ok || done.By != hop.To {
		return denied(schemas.ReasonHop, "this delegation was cancelled by its caller", nil), nil
	}
	return []outgoing{e.delivery(hop.From, token, schemas.DeliverReply, done.Delivered(), hc, rec.Event.Seq, nil)}, nil
}

// purgeTimer removes an ended run's schedule from TIMERS. It is tidiness:
// a schedule left behind fires once, finds the run ended and is dropped,
// so a failure is only logged.
func (e *Enforcer) purgeTimer(subject string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	s, err := e.timersStream(ctx)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(subject))
	}
	if err != nil {
		e.cfg.Logger.Warn("remove an ended run's timer", "subject", subject, "err", err)
	}
}

// timersStream looks the TIMERS stream up once.
func (e *Enforcer) timersStream(ctx context.Context) (jetstream.Stream, error) {
	e.timersMu.Lock()
	defer e.timersMu.Unlock()
	if e.timers != nil {
		return e.timers, nil
	}
	s, err := e.js.Stream(ctx, e.subjects.Stream(broker.StreamTimers))
	if err != nil {
		return nil, err
	}
	e.timers = s
	return s, nil
}

// rerouteEffects cancel a hop at the target it left (when it had been
// delivered there) and deliver it to the fallback: the invoke as recorded
// when the hop was decided. A hop re-routed again since is delivered by
// its last hop.rerouted.
func (e *Enforcer) rerouteEffects(ctx context.Context, st *ledger.State, ev *schemas.Event, hop *ledger.Hop, d *schemas.HopRerouted) ([]outgoing, error) {
	var out []outgoing
	hc := contextOf(st, hop)
	if d.Cause == schemas.RerouteTimeout {
		out = append(out, e.circuitResult(ctx, d.From, true, ev.At)...)
		cancel := hc
		if cancel.Attempt = d.Attempts; cancel.Attempt < 2 {
			cancel.Attempt = 0
		}
		out = append(out, e.delivery(d.From, decision.AttemptToken(hop.ID, d.Attempts), schemas.DeliverCancel, nil, cancel, ev.Seq, nil))
	}
	if hop.To != d.To {
		return out, nil
	}
	rec, err := e.ledger.Get(ctx, hop.DecisionStreamSeq)
	if err != nil {
		return nil, fmt.Errorf("re-route of hop %s: its decision: %w", hop.ID, err)
	}
	data, err := rec.Event.DecodeData()
	if err != nil {
		return nil, fmt.Errorf("re-route of hop %s: its decision: %w", hop.ID, err)
	}
	dec, ok := data.(*schemas.HopDecision)
	if !ok {
		return nil, fmt.Errorf("re-route of hop %s: decided by a %s", hop.ID, rec.Event.Type)
	}
	return append(out, e.delivery(d.To, hop.ID, schemas.DeliverInvoke, dec.Delivered(), hc, ev.Seq, nil)), nil
}
