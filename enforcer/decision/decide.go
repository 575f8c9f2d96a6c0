package decision

import (
	"slices"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Plan is what deciding a submission produces: the events to append to the
// run's ledger, in order. Reject is set instead when the submission belongs
// to no run; it is then recorded in a ledger entry of its own (see
// Submission.RejectRun).
type Plan struct {
	Events []schemas.Event
	Reject *schemas.HopDecision
}

// Decide turns a submission into the events that record it, judged
// against the run's state st at time now. Whatever is wrong with the
// submission becomes a denial; only rate (the fleet-wide rate limit) can
// make it fail.
func (r *Rules) Decide(st *ledger.State, sub *Submission, now time.Time, rate RateFunc) (Plan, error) {
	if sub.DecodeErr != nil {
		return r.denied(st, sub, Deny(schemas.ReasonMalformed, "%v", sub.DecodeErr), now), nil
	}
	env := sub.Env
	caller, v := r.authenticate(sub)
	if v != nil {
		return r.denied(st, sub, v, now), nil
	}
	if skew := sub.StoredAt.Sub(env.SentAt).Abs(); skew > r.ReplayWindow {
		return r.denied(st, sub, Deny(schemas.ReasonReplay,
			"sent_at %s is %s from when the broker received it (window %s)", env.SentAt.Format(time.RFC3339), skew.Round(time.Second), r.ReplayWindow), now), nil
	}
	switch env.Kind {
	case schemas.KindInvoke:
		return r.decideInvoke(st, sub, caller, now, rate)
	case schemas.KindReply:
		return r.decideClose(st, sub, now, true), nil
	default:
		return r.decideClose(st, sub, now, false), nil
	}
}

// authenticate checks that the sender is who the broker says it is: the
// subject token (which the broker binds to the connection's credential)
// names a known, enabled identity, "from" agrees, and the signature holds.
func (r *Rules) authenticate(sub *Submission) (*broker.Identity, *Verdict) {
	env := sub.Env
	if env.From != sub.Caller {
		return nil, Deny(schemas.ReasonIdentity, "envelope says from %q but it was published by %q", env.From, sub.Caller)
	}
	id, ok := r.Dir.Get(sub.Caller)
	switch {
	case !ok:
		return nil, Deny(schemas.ReasonIdentity, "%q is not a registered identity", sub.Caller)
	case id.Disabled:
		return nil, Deny(schemas.ReasonIdentity, "%q is disabled", sub.Caller)
	case !id.IsCaller() && env.Kind != schemas.KindReply:
		return nil, Deny(schemas.ReasonIdentity, "%q is a %s: it may only reply", id.ID, id.Type)
	}
	if id.RequireSignature || env.Signature != "" {
		if id.SigningKey() == nil {
			return nil, Deny(schemas.ReasonIdentity, "envelope is signed but %q has no registered key", id.ID)
		}
		if err := schemas.VerifySignature(sub.Wire, id.SigningKey()); err != nil {
			return nil, Deny(schemas.ReasonIdentity, "%v", err)
		}
	}
	return id, nil
}

func (r *Rules) decideInvoke(st *ledger.State, sub *Submission, caller *broker.Identity, now time.Time, rate RateFunc) (Plan, error) {
	env := sub.Env
	d := &schemas.HopDecision{
		Kind: schemas.KindInvoke, From: caller.ID, To: env.To,
		FromType: caller.Type, FromTeam: caller.Team, FromTags: caller.Tags, Estimate: env.Estimate,
	}
	var parent *ledger.Hop
	newRun := false
	if env.ParentHopID == "" {
		if env.RunID != "" && env.RunID != sub.RunToken {
			return r.denied(st, sub, Deny(schemas.ReasonMalformed, "run_id %q differs from the run %q of the subject", env.RunID, sub.RunToken), now), nil
		}
		if st.Started && (st.RootHopID != env.HopID || st.Hops[env.HopID] != nil) {
			return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s already exists; start a run with a fresh run id", st.RunID), now), nil
		}
		// A run that started but whose first hop was not decided yet is a
		// crash between the two appends: decide the hop now.
		newRun = !st.Started
		d.Ancestry, d.OnBehalfOf = []string{caller.ID}, caller.ID
	} else {
		if !st.Started {
			return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s does not exist", sub.RunToken), now), nil
		}
		if v := r.checkParent(st, sub); v != nil {
			return r.denied(st, sub, v, now), nil
		}
		parent = st.Hops[env.ParentHopID]
		d.Depth, d.Ancestry = ledger.ChildContext(parent)
		d.OnBehalfOf, d.ParentHopID = st.OnBehalfOf, parent.ID
	}
	d.Cycle = slices.Contains(d.Ancestry, env.To)
	d.TraceID, d.SpanID, d.ParentSpanID = hopTrace(st, sub, parent)

	var events []schemas.Event
	lim := r.LimitsOf(st)
	if newRun {
		workflow := r.WorkflowFor(env.To)
		lim = r.Limits.ForWorkflow(workflow)
		started := &schemas.RunStarted{
			RootHopID: env.HopID, Caller: caller.ID, CallerType: caller.Type, OnBehalfOf: d.OnBehalfOf,
			Workflow: workflow, Limits: lim.Record(), TraceID: d.TraceID,
		}
		events = append(events, schemas.EventOf(sub.RunToken, schemas.EventRunStarted, "", now, started))
		// Decide against the run as it will be once started.
		st = startedState(st.RunID, now, started)
	}
	target, v := r.checkTarget(env.To)
	if v == nil {
		d.Action = ActionFor(target.Type)
		d.ToType, d.ToTeam, d.ToTags = target.Type, target.Team, target.Tags
		inv := &Invoke{State: st, Caller: caller, Target: target, Decision: d, Estimate: env.Estimate, Limits: lim, Now: now}
		g, err := r.Govern(inv, r.Engine, rate)
		if err != nil {
			return Plan{}, err
		}
		d.PolicyIDs, d.Audit, v = g.PolicyIDs, g.Findings, g.Denial
	}
	if v == nil {
		d.Deadline = now.Add(r.TimeoutFor(target)).UTC()
	}
	return Plan{Events: append(events, decisionEvent(sub, d, v, now))}, nil
}

func (r *Rules) checkTarget(to string) (*broker.Identity, *Verdict) {
	target, ok := r.Dir.Get(to)
	switch {
	case !ok:
		return nil, Deny(schemas.ReasonTarget, "%q is not a registered agent, tool or model", to)
	case target.Disabled:
		return nil, Deny(schemas.ReasonTarget, "%q is disabled", to)
	case target.Type == schemas.TypeUser:
		return nil, Deny(schemas.ReasonTarget, "%q is a user; users start runs, they are not invoked", to)
	}
	return target, nil
}

// checkParent verifies the hop the caller says it is working on: it is in
// this run, it was delivered to the caller, and it is still open.
func (r *Rules) checkParent(st *ledger.State, sub *Submission) *Verdict {
	env := sub.Env
	parent := st.Hops[env.ParentHopID]
	switch {
	case st.Closed():
		return closedRun(st)
	case parent == nil || parent.Status == ledger.HopDenied:
		return Deny(schemas.ReasonParent, "parent hop %s is not an allowed hop of run %s", env.ParentHopID, st.RunID)
	case parent.To != sub.Caller:
		return Deny(schemas.ReasonParent, "parent hop %s was delivered to %q, not to %q", parent.ID, parent.To, sub.Caller)
	case !parent.Open():
		return Deny(schemas.ReasonParent, "parent hop %s is closed (%s)", parent.ID, parent.Status)
	case st.Hops[env.HopID] != nil:
		return Deny(schemas.ReasonReplay, "hop id %s is already used in run %s", env.HopID, st.RunID)
	}
	return nil
}

func closedRun(st *ledger.State) *Verdict {
	if st.Halted {
		return Deny(schemas.ReasonHalted, "run %s is halted", st.RunID)
	}
	return Deny(schemas.ReasonRun, "run %s has completed (%s)", st.RunID, st.Status)
}

// decideClose handles a reply (from the hop's target) or a cancel (from its
// caller): the hop must be open and the sender's to close.
func (r *Rules) decideClose(st *ledger.State, sub *Submission, now time.Time, reply bool) Plan {
	env := sub.Env
	if !st.Started {
		return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s does not exist", sub.RunToken), now)
	}
	hop := st.Hops[env.HopID]
	var v *Verdict
	switch {
	case hop == nil || hop.Status == ledger.HopDenied:
		v = Deny(schemas.ReasonHop, "hop %s is not an allowed hop of run %s", env.HopID, st.RunID)
	case reply && hop.To != sub.Caller:
		v = Deny(schemas.ReasonHop, "hop %s was delivered to %q; only it may reply", hop.ID, hop.To)
	case reply && env.To != hop.From:
		v = Deny(schemas.ReasonHop, "reply is addressed to %q but hop %s was called by %q", env.To, hop.ID, hop.From)
	case !reply && hop.From != sub.Caller:
		v = Deny(schemas.ReasonHop, "hop %s was called by %q; only it may cancel", hop.ID, hop.From)
	case !hop.Open() && st.Halted:
		v = Deny(schemas.ReasonHalted, "run %s is halted; hop %s was cancelled", st.RunID, hop.ID)
	case !hop.Open():
		v = Deny(schemas.ReasonHop, "hop %s is already closed (%s)", hop.ID, hop.Status)
	}
	if v != nil {
		return r.denied(st, sub, v, now)
	}
	done := &schemas.HopCompleted{
		Status: schemas.StateCanceled, By: sub.Caller, LatencyMS: now.Sub(hop.OpenedAt).Milliseconds(),
		SubmitSeq: sub.Seq, Envelope: sub.Wire, Digest: sub.Digest,
	}
	if reply {
		done.Status, done.Usage, done.Error = env.Result.Status, env.Usage, env.Result.Error
	}
	return Plan{Events: []schemas.Event{schemas.EventOf(st.RunID, schemas.EventHopCompleted, hop.ID, now, done)}}
}

// denied records a denial: in the run's ledger when the run exists,
// otherwise in a ledger entry of its own.
func (r *Rules) denied(st *ledger.State, sub *Submission, v *Verdict, now time.Time) Plan {
	d := &schemas.HopDecision{From: sub.Caller}
	if env := sub.Env; env != nil {
		d.Kind, d.To, d.ParentHopID = env.Kind, env.To, env.ParentHopID
	}
	if !st.Started {
		fillDecision(sub, d, v)
		return Plan{Reject: d}
	}
	return Plan{Events: []schemas.Event{decisionEvent(sub, d, v, now)}}
}

// decisionEvent completes d with the verdict and the submission as
// received, and wraps it in hop.allowed (v nil) or hop.denied.
func decisionEvent(sub *Submission, d *schemas.HopDecision, v *Verdict, now time.Time) schemas.Event {
	fillDecision(sub, d, v)
	typ := schemas.EventHopAllowed
	if v != nil {
		typ = schemas.EventHopDenied
	}
	return schemas.EventOf(sub.RunToken, typ, sub.HopID(), now, d)
}

func fillDecision(sub *Submission, d *schemas.HopDecision, v *Verdict) {
	d.SubmitSeq, d.Size, d.Digest = sub.Seq, len(sub.Raw), sub.Digest
	d.Envelope, d.Raw = sub.recorded()
	if v != nil {
		d.Reason, d.Message, d.Breach = v.Reason, v.Message, v.Breach
		if v.PolicyIDs != nil {
			d.PolicyIDs = v.PolicyIDs
		}
		d.Deadline = time.Time{}
	}
}

// RejectEvent is the one event of a rejected submission's own ledger
// entry.
func RejectEvent(sub *Submission, d *schemas.HopDecision) schemas.Event {
	return schemas.EventOf(sub.RejectRun(), schemas.EventHopDenied, sub.HopID(), sub.StoredAt, d)
}
