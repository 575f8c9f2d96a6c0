package decision

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
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
	// Dropped is set instead when a submission that fails the integrity
	// checks finds its sender over the rate of rejected submissions: it is
	// not recorded anywhere, so a flood of garbage cannot grow the ledger.
	Dropped *Verdict
	// Replayed is set instead when the submission repeats an invoke the run
	// already decided (a task run again after a crash makes the same
	// delegations, with the same derived hop ids): nothing is appended,
	// and the caller is answered with the hop's recorded outcome.
	Replayed *ledger.Hop
	// alone is set when the plan rejects the submission on its own
	// (malformed, not its sender's, outside the replay window): no state
	// of the run could have decided otherwise, so it need not be checked
	// current before it is charged.
	alone bool
}

// Decide turns a submission into the events that record it, judged
// against the run's state st at time now. Whatever is wrong with the
// submission becomes a denial; only the inputs (I/O) can make it fail.
func (r *Rules) Decide(st *ledger.State, sub *Submission, now time.Time, in Inputs) (Plan, error) {
	p, err := r.decide(st, sub, now, in)
	if err != nil || !p.charged() {
		return p, err
	}
	if in.Current != nil && !p.alone {
		// A rejection is charged, and may be dropped or answered without
		// an append whose expected sequence would catch a stale st, so it
		// must be judged on the run as the ledger holds it: a reply to a
		// hop another instance admitted is no rejection.
		if err := in.Current(st); err != nil {
			return Plan{}, err
		}
	}
	return r.chargeRejection(st, sub, p, in.Rate)
}

// charged reports whether a plan counts against its sender's rate of
// rejected submissions: every denial (an integrity denial, a governance
// denial in a run, a run started only to record that its first hop is
// denied) and every repeated invoke answered from the ledger. Allowed hops
// are bounded by the run limits; these are bounded by that rate, so no
// sender can grow the ledger, or the deliveries, without bound.
func (p Plan) charged() bool {
	if p.Reject != nil || p.Replayed != nil {
		return true
	}
	for _, ev := range p.Events {
		if ev.Type == schemas.EventHopDenied {
			return true
		}
	}
	return false
}

// chargeRejection counts a charged plan against its sender's rate of
// rejected submissions, and drops it unrecorded when the sender is over
// that rate, unless it records a breach the run has not recorded yet (a
// breach changes the run: it may halt it).
func (r *Rules) chargeRejection(st *ledger.State, sub *Submission, p Plan, rate RateFunc) (Plan, error) {
	if rate == nil || !schemas.ValidPrincipalID(sub.Caller) {
		return p, nil
	}
	lim := r.Limits.ForAgent(sub.Caller).RejectRateLimit
	if lim.Unlimited() {
		return p, nil
	}
	d, err := rate(limits.RejectKey(sub.Caller), lim)
	if err != nil || d.Allowed || newBreach(st, p) {
		return p, err
	}
	return Plan{Dropped: Deny(schemas.ReasonRate, "%s is over its rate of rejected submissions (%s): not recorded", sub.Caller, lim)}, nil
}

// newBreach reports whether p records a denial that trips a limit the run
// has not recorded a breach of. A run that would only start to record its
// first hop's denial has nothing a breach could halt.
func newBreach(st *ledger.State, p Plan) bool {
	if !st.Started {
		return false
	}
	for _, ev := range p.Events {
		if ev.Type != schemas.EventHopDenied {
			continue
		}
		if data, err := ev.DecodeData(); err == nil {
			if d, ok := data.(*schemas.HopDecision); ok && d.Breach != nil && !st.Breached(d.Breach.Limit) {
				return true
			}
		}
	}
	return false
}

func (r *Rules) decide(st *ledger.State, sub *Submission, now time.Time, in Inputs) (Plan, error) {
	// The integrity checks judge the submission alone, never the run.
	integrity := func(v *Verdict) (Plan, error) {
		p := r.denied(st, sub, v, now)
		p.alone = true
		return p, nil
	}
	if sub.DecodeErr != nil {
		return integrity(Deny(schemas.ReasonMalformed, "%v", sub.DecodeErr))
	}
	env := sub.Env
	caller, v := r.authenticate(sub)
	if v != nil {
		return integrity(v)
	}
	if env.Version == schemas.EnvelopeV1 && !sub.StoredAt.Before(schemas.EnvelopeV1Until) {
		return integrity(Deny(schemas.ReasonMalformed,
			"envelope v=%d was accepted until %s; send v=%d (A2A v1.0 messages)", env.Version, schemas.EnvelopeV1Until.Format(time.DateOnly), schemas.EnvelopeVersion))
	}
	if skew := sub.StoredAt.Sub(env.SentAt).Abs(); skew > r.ReplayWindow {
		return integrity(Deny(schemas.ReasonReplay,
			"sent_at %s is %s from when the broker received it (window %s)", env.SentAt.Format(time.RFC3339), skew.Round(time.Second), r.ReplayWindow))
	}
	switch env.Kind {
	case schemas.KindInvoke:
		return r.decideInvoke(st, sub, caller, now, in)
	case schemas.KindProgress:
		return r.decideProgress(st, sub, caller, now, in)
	default:
		return r.decideClose(st, sub, caller, now, in)
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
	case !id.IsCaller() && env.Kind != schemas.KindReply && env.Kind != schemas.KindProgress:
		return nil, Deny(schemas.ReasonIdentity, "%q is a %s: it may only reply", id.ID, id.Type)
	}
	if env.Via == schemas.ViaIngress {
		// The ingress submitted it for an HTTP caller it authenticated:
		// only the ingress key can have signed it, never the caller's
		// own connection.
		if r.Ingress == nil {
			return nil, Deny(schemas.ReasonIdentity, "envelope says it came through the HTTP ingress, but this gateway has none")
		}
		if err := schemas.VerifySignature(sub.Wire, r.Ingress); err != nil {
			return nil, Deny(schemas.ReasonIdentity, "envelope says it came through the HTTP ingress: %v", err)
		}
		return id, nil
	}
	if id.RequireSignature || env.Signature != "" {
		if id.SigningKey() == nil {
			return nil, Deny(schemas.ReasonIdentity, "envelope is signed but %q has no registered key", id.ID)
		}
		if err := id.VerifyEnvelope(sub.Wire); err != nil {
			return nil, Deny(schemas.ReasonIdentity, "%v", err)
		}
	}
	return id, nil
}

func (r *Rules) decideInvoke(st *ledger.State, sub *Submission, caller *broker.Identity, now time.Time, in Inputs) (Plan, error) {
	env := sub.Env
	if h := st.Hops[env.HopID]; h != nil && h.From == caller.ID && h.ParentID == env.ParentHopID && h.To == env.To {
		return Plan{Replayed: h}, nil
	}
	d := &schemas.HopDecision{
		Kind: schemas.KindInvoke, From: caller.ID, To: env.To,
		FromType: caller.Type, FromTeam: caller.Team, FromTags: caller.Tags, Estimate: env.Estimate,
	}
	// parent is the hop the caller works on; above is the task the hop
	// comes from: the parent, or the hop of another run a run is spawned
	// from.
	var parent, above *ledger.Hop
	var start *schemas.RunStarted // set for a run's first hop
	lim := r.LimitsOf(st)
	if env.ParentHopID == "" {
		if env.RunID != sub.RunToken {
			return r.denied(st, sub, Deny(schemas.ReasonMalformed, "run_id %q differs from the run %q of the subject", env.RunID, sub.RunToken), now), nil
		}
		if st.Started && (st.RootHopID != env.HopID || st.Hops[env.HopID] != nil) {
			return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s already exists; start a run with a fresh run id", st.RunID), now), nil
		}
		// A run that started but whose first hop was not decided yet is a
		// crash between the two appends: decide the hop now, as it was
		// started.
		start = &schemas.RunStarted{RootHopID: env.HopID, Caller: caller.ID, CallerType: caller.Type, OnBehalfOf: caller.ID}
		d.Ancestry, d.OnBehalfOf = []string{caller.ID}, caller.ID
		start.Workflow = r.WorkflowFor(env.To)
		lim = r.Limits.ForWorkflow(start.Workflow)
		if sp := env.SpawnedFrom; sp != nil {
			from, v, err := r.spawnedFrom(sub, caller, in)
			if err != nil {
				return Plan{}, err
			}
			if v != nil {
				return r.denied(st, sub, v, now), nil
			}
			// The run continues the run it was started from: its principal,
			// workflow and limits, and the depth and ancestry of the hop.
			start.SpawnedFrom, start.OnBehalfOf, start.Workflow = sp, from.OnBehalfOf, from.Workflow
			lim = r.LimitsOf(from)
			above = from.Hops[sp.HopID]
			d.Depth, d.Ancestry = ledger.ChildContext(above)
			d.OnBehalfOf = from.OnBehalfOf
		}
		start.Limits = lim.Record()
		if st.Started {
			lim = r.LimitsOf(st) // as the run recorded them
		}
	} else {
		if !st.Started {
			return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s does not exist", sub.RunToken), now), nil
		}
		if v := r.checkParent(st, sub); v != nil {
			return r.denied(st, sub, v, now), nil
		}
		parent = st.Hops[env.ParentHopID]
		above = parent
		d.Depth, d.Ancestry = ledger.ChildContext(parent)
		d.OnBehalfOf, d.ParentHopID = st.OnBehalfOf, parent.ID
	}
	d.Cycle = slices.Contains(d.Ancestry, env.To)
	if t := invokeTaint(above, caller, env); t.tainted {
		d.Tainted, d.TaintSources = true, t.sources
	}
	d.TraceID, d.SpanID, d.ParentSpanID = hopTrace(st, sub, parent)

	var events []schemas.Event
	if start != nil {
		start.TraceID = d.TraceID
		if !st.Started {
			events = append(events, schemas.EventOf(sub.RunToken, schemas.EventRunStarted, "", now, start))
			// Decide against the run as it will be once started.
			st = ledger.StartedState(st.RunID, now, start)
		}
	}
	target, v := r.checkTarget(env.To)
	circuitOpen := v == nil && in.Circuit != nil && in.Circuit(target.ID)
	if circuitOpen && len(r.Limits.TargetFor(st.Workflow, target.ID).Fallback) == 0 {
		v = Deny(schemas.ReasonUnavailable, "the circuit of %s is open: it failed repeatedly; try again after its cool-down", target.ID)
	}
	if v == nil {
		d.Action = ActionFor(target.Type)
		d.ToType, d.ToTeam, d.ToTags = target.Type, target.Team, target.Tags
		inv := &Invoke{
			State: st, Caller: caller, Target: target, Decision: d, Estimate: env.Estimate, Limits: lim, Now: now,
			Message: env.Message, Scan: r.scanner(in),
			Quota: in.Quota, QuotaUsed: in.QuotaUsed, QuotaUntil: now.Add(r.TimeoutFor(target) + QuotaGrace), HopID: env.HopID,
		}
		g, err := r.Govern(inv, r.Engine, in.Rate)
		if err != nil {
			return Plan{}, err
		}
		d.PolicyIDs, d.Audit, v = g.PolicyIDs, g.Findings, g.Denial
		if v == nil && g.Redacted != nil {
			if d.Redacted, err = redactedEnvelope(env, g.Redacted, nil); err != nil {
				return Plan{}, err
			}
		}
	}
	if v == nil {
		r.holdForApproval(d, caller, now)
	}
	if v == nil && d.Approval == nil {
		d.Deadline = now.Add(r.TimeoutFor(target)).UTC()
	}
	events = append(events, decisionEvent(sub, d, v, now))
	if v == nil && d.Approval == nil {
		rr, err := r.rerouteAtAdmission(st, events[len(events)-1], target, circuitOpen, now, in)
		if err != nil {
			return Plan{}, err
		}
		if rr != nil {
			events = append(events, *rr)
		}
	}
	return Plan{Events: events}, nil
}

// spawnedFrom checks the hop an agent says it starts a run from: a hop of
// another run, open, and delivered to the agent. It returns that run.
func (r *Rules) spawnedFrom(sub *Submission, caller *broker.Identity, in Inputs) (*ledger.State, *Verdict, error) {
	sp := sub.Env.SpawnedFrom
	if in.Run == nil {
		return nil, Deny(schemas.ReasonParent, "spawned_from cannot be checked here"), nil
	}
	from, err := in.Run(sp.RunID)
	if err != nil {
		return nil, nil, err
	}
	h := from.Hops[sp.HopID]
	switch {
	case !from.Started:
		return nil, Deny(schemas.ReasonParent, "spawned_from names run %s, which does not exist", sp.RunID), nil
	case from.Closed():
		return nil, Deny(schemas.ReasonParent, "spawned_from names run %s, which has ended", sp.RunID), nil
	case h == nil || h.Status == ledger.HopDenied:
		return nil, Deny(schemas.ReasonParent, "spawned_from names hop %s, which is not an allowed hop of run %s", sp.HopID, sp.RunID), nil
	case h.To != caller.ID:
		return nil, Deny(schemas.ReasonParent, "spawned_from names hop %s, which was delivered to %q, not to %q", h.ID, h.To, caller.ID), nil
	case !h.Open():
		return nil, Deny(schemas.ReasonParent, "spawned_from names hop %s, which is closed (%s)", h.ID, h.Status), nil
	}
	return from, nil, nil
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
	case parent.Pending():
		return Deny(schemas.ReasonParent, "parent hop %s is held for approval: it was not delivered", parent.ID)
	case !parent.Open():
		return Deny(schemas.ReasonParent, "parent hop %s is closed (%s)", parent.ID, parent.Status)
	case st.Hops[env.HopID] != nil:
		return Deny(schemas.ReasonReplay, "hop id %s is already used in run %s, for another call", env.HopID, st.RunID)
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
func (r *Rules) decideClose(st *ledger.State, sub *Submission, sender *broker.Identity, now time.Time, in Inputs) (Plan, error) {
	env := sub.Env
	reply := env.Kind == schemas.KindReply
	if !st.Started {
		return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s does not exist", sub.RunToken), now), nil
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
	case hop.Pending():
		v = Deny(schemas.ReasonHop, "hop %s is held for approval: it was not delivered, and only an operator can answer it now", hop.ID)
	case reply && hop.CutByHalt && !hop.Settled && env.Usage != nil:
		return Plan{Events: []schemas.Event{settleEvent(st, sub, hop, now)}}, nil
	case !hop.Open() && st.Halted:
		v = Deny(schemas.ReasonHalted, "run %s is halted; hop %s was cancelled", st.RunID, hop.ID)
	case !hop.Open():
		v = Deny(schemas.ReasonHop, "hop %s is already closed (%s)", hop.ID, hop.Status)
	}
	if v != nil {
		return r.denied(st, sub, v, now), nil
	}
	done := &schemas.HopCompleted{
		Status: schemas.StateCanceled, By: sub.Caller, LatencyMS: now.Sub(hop.OpenedAt).Milliseconds(),
		SubmitSeq: sub.Seq, Envelope: sub.Wire, Digest: sub.Digest,
	}
	if reply && env.Result.Status == schemas.StateFailed && env.Result.ErrorClass != "" {
		if d, ok := r.retry(st, hop, schemas.RetryFailed, env.Result.ErrorClass, 0, now); ok {
			// The failure stays between the gateway and the target: the
			// hop is delivered again, the caller hears only the outcome.
			d.Error, d.SubmitSeq, d.Digest, d.Usage = env.Result.Error, sub.Seq, sub.Digest, env.Usage
			return Plan{Events: []schemas.Event{schemas.EventOf(st.RunID, schemas.EventHopRetried, hop.ID, now, d)}}, nil
		}
	}
	if reply {
		done.Status, done.Usage, done.Error = env.Result.Status, env.Usage, env.Result.Error
		if err := r.guardReply(hop, sender, env, done, in); err != nil {
			return Plan{}, err
		}
	}
	return Plan{Events: []schemas.Event{schemas.EventOf(st.RunID, schemas.EventHopCompleted, hop.ID, now, done)}}, nil
}

// settleEvent records the late reply of a hop the run's halt closed while
// it was open: its target reports what it used before the cancel reached
// it (a model stream cut mid-way), which is charged to the run. The hop
// stays closed as the halt left it and nothing is delivered (its caller
// was told of the halt), so the reply is not scanned.
func settleEvent(st *ledger.State, sub *Submission, hop *ledger.Hop, now time.Time) schemas.Event {
	env := sub.Env
	return schemas.EventOf(st.RunID, schemas.EventHopCompleted, hop.ID, now, &schemas.HopCompleted{
		Status: env.Result.Status, By: sub.Caller, Usage: env.Usage, Error: env.Result.Error,
		LatencyMS: now.Sub(hop.OpenedAt).Milliseconds(), SubmitSeq: sub.Seq, Envelope: sub.Wire, Digest: sub.Digest,
		Settles: true,
	})
}

// guardReply scans a reply's result with the replier's outbound guardrail
// policy and works out its taint. A blocked reply does not reach the
// caller: a failed one the gateway makes, saying why, does instead. A
// reply is tainted when the task it answers was, when its sender is
// untrusted, or when a guardrail flagged or redacted it; its taint passes
// to the caller's task (ledger.State).
func (r *Rules) guardReply(hop *ledger.Hop, sender *broker.Identity, env *schemas.Envelope, done *schemas.HopCompleted, in Inputs) error {
	var t taint
	t.inherit(hop)
	if sender.Untrusted {
		t.add(taintUntrusted + sender.ID)
	}
	if scan := r.scanner(in); scan != nil {
		res, redacted := r.scanReply(scan, hop, env)
		done.Guardrail = guardrailRecord(&res)
		var err error
		switch {
		case res.Blocked():
			failed := &schemas.Result{Status: schemas.StateFailed, Error: guardrailDenial(&res, "reply").Message}
			done.Status, done.Error = failed.Status, failed.Error
			done.Redacted, err = redactedEnvelope(env, nil, failed)
			return err // nothing of the reply reaches the caller: no taint
		case redacted != nil:
			if done.Redacted, err = redactedEnvelope(env, nil, redacted); err != nil {
				return err
			}
		}
		t.flagged(&res)
	}
	done.Tainted, done.TaintSources = t.tainted, t.sources
	return nil
}

// denied records a denial by the integrity checks: in the run's ledger
// when the sender is a member of the run (it holds one of its open hops),
// otherwise in a ledger entry of its own, so that nobody can add to a run
// they have no part in.
func (r *Rules) denied(st *ledger.State, sub *Submission, v *Verdict, now time.Time) Plan {
	d := &schemas.HopDecision{From: sub.Caller}
	if env := sub.Env; env != nil {
		d.Kind, d.To, d.ParentHopID = env.Kind, env.To, env.ParentHopID
	}
	if !st.Started || !Member(st, sub.Caller) {
		fillDecision(sub, d, v)
		return Plan{Reject: d}
	}
	return Plan{Events: []schemas.Event{decisionEvent(sub, d, v, now)}}
}

// Member reports whether id holds an open hop of the run, as its caller
// or its target: only members may add to a run's ledger.
func Member(st *ledger.State, id string) bool {
	for hop := range st.Open {
		if h := st.Hops[hop]; h != nil && (h.To == id || h.From == id) {
			return true
		}
	}
	return false
}

// holdForApproval sets d.Approval when a permit that allows the hop
// requires a human's approval (policy.ApprovalAnnotation): the hop is
// then recorded as pending and forwarded only once approved. A caller in
// audit mode is not held; the hold is recorded as a finding instead.
func (r *Rules) holdForApproval(d *schemas.HopDecision, caller *broker.Identity, now time.Time) {
	a := r.Engine.Set().ApprovalFor(policy.Decision{Allow: true, PolicyIDs: d.PolicyIDs})
	if !a.Required {
		return
	}
	if r.Limits.ForAgent(caller.ID).Mode == limits.ModeAudit {
		d.Audit = append(d.Audit, schemas.Finding{Reason: schemas.ReasonApproval, PolicyIDs: a.PolicyIDs,
			Message: fmt.Sprintf("would be held for approval by %s", approversText(a.Approvers))})
		return
	}
	d.Approval = &schemas.Approval{Approvers: a.Approvers, PolicyIDs: a.PolicyIDs, Deadline: now.Add(r.approvalTimeout()).UTC()}
}

func approversText(groups []string) string {
	if len(groups) == 0 {
		return "any operator"
	}
	return "an operator of " + strings.Join(groups, " or ")
}

// DefaultApprovalTimeout is how long a hop waits for approval when the
// rules set no ApprovalTimeout.
const DefaultApprovalTimeout = time.Hour

func (r *Rules) approvalTimeout() time.Duration {
	if r.ApprovalTimeout > 0 {
		return r.ApprovalTimeout
	}
	return DefaultApprovalTimeout
}

// decisionEvent completes d with the verdict and the submission as
// received, and wraps it in hop.allowed (v nil), hop.pending (v nil, held
// for approval) or hop.denied.
func decisionEvent(sub *Submission, d *schemas.HopDecision, v *Verdict, now time.Time) schemas.Event {
	fillDecision(sub, d, v)
	typ := schemas.EventHopAllowed
	switch {
	case v != nil:
		typ = schemas.EventHopDenied
	case d.Approval != nil:
		typ = schemas.EventHopPending
	}
	return schemas.EventOf(sub.RunToken, typ, sub.HopID(), now, d)
}

func fillDecision(sub *Submission, d *schemas.HopDecision, v *Verdict) {
	d.SubmitSeq, d.Size, d.Digest = sub.Seq, len(sub.Raw), sub.Digest
	d.Envelope, d.Raw = sub.recorded(v != nil)
	if v != nil {
		d.Reason, d.Message, d.Breach = v.Reason, v.Message, v.Breach
		if v.PolicyIDs != nil {
			d.PolicyIDs = v.PolicyIDs
		}
		d.Deadline, d.Redacted, d.Approval = time.Time{}, nil, nil
	}
}

// RejectEvent is the one event of a rejected submission's own ledger
// entry.
func RejectEvent(sub *Submission, d *schemas.HopDecision) schemas.Event {
	return schemas.EventOf(sub.RejectRun(), schemas.EventHopDenied, sub.HopID(), sub.StoredAt, d)
}

// DefaultMaxProgressPerHop is how many progress messages a hop's target
// may send its caller when the config sets no bound.
const DefaultMaxProgressPerHop = 100

// decideProgress decides a progress of an open hop: only the hop's
// target may send it, exactly as only it may reply, and at most
// MaxProgressPerHop per hop. It is scanned by the target's outbound
// guardrails like a reply: a blocked progress is recorded as a denial and
// not forwarded, a redacted one is forwarded redacted. It closes nothing.
func (r *Rules) decideProgress(st *ledger.State, sub *Submission, sender *broker.Identity, now time.Time, in Inputs) (Plan, error) {
	env := sub.Env
	if !st.Started {
		return r.denied(st, sub, Deny(schemas.ReasonRun, "run %s does not exist", sub.RunToken), now), nil
	}
	hop := st.Hops[env.HopID]
	limit := r.MaxProgressPerHop
	if limit <= 0 {
		limit = DefaultMaxProgressPerHop
	}
	var v *Verdict
	switch {
	case hop == nil || hop.Status == ledger.HopDenied:
		v = Deny(schemas.ReasonHop, "hop %s is not an allowed hop of run %s", env.HopID, st.RunID)
	case hop.To != sub.Caller:
		v = Deny(schemas.ReasonHop, "hop %s was delivered to %q; only it may send progress", hop.ID, hop.To)
	case env.To != hop.From:
		v = Deny(schemas.ReasonHop, "progress is addressed to %q but hop %s was called by %q", env.To, hop.ID, hop.From)
	case hop.Pending():
		v = Deny(schemas.ReasonHop, "hop %s is held for approval: it was not delivered", hop.ID)
	case !hop.Open():
		v = Deny(schemas.ReasonHop, "hop %s is already closed (%s): no more progress", hop.ID, hop.Status)
	case hop.Progress >= limit:
		v = Deny(schemas.ReasonHop, "hop %s has sent its %d progress messages (max_progress_per_hop): the rest is refused", hop.ID, limit)
	}
	if v != nil {
		return r.denied(st, sub, v, now), nil
	}
	p := &schemas.HopProgress{N: hop.Progress + 1, By: sub.Caller, SubmitSeq: sub.Seq, Envelope: sub.Wire, Digest: sub.Digest}
	if scan := r.scanner(in); scan != nil {
		res, redacted := r.scanProgress(scan, hop, env)
		p.Guardrail = guardrailRecord(&res)
		switch {
		case res.Blocked():
			return r.denied(st, sub, guardrailDenial(&res, "progress"), now), nil
		case redacted != nil:
			var err error
			if p.Redacted, err = redactedEnvelope(env, nil, redacted); err != nil {
				return Plan{}, err
			}
		}
	}
	return Plan{Events: []schemas.Event{schemas.EventOf(st.RunID, schemas.EventHopProgress, hop.ID, now, p)}}, nil
}
