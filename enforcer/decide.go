package enforcer

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// plan is what deciding a submission produces: the events to append to the
// run's ledger, in order. reject is set instead when the submission belongs
// to no run; it is then recorded in a ledger entry of its own.
type plan struct {
	events []schemas.Event
	reject *schemas.HopDecision
}

// verdict is a denial being built: a reason code, an explanation, the
// policies that decided when Cedar did, and the limit when one tripped.
type verdict struct {
	reason    schemas.Reason
	message   string
	policyIDs []string
	breach    *schemas.Breach
}

func deny(reason schemas.Reason, format string, args ...any) *verdict {
	return &verdict{reason: reason, message: fmt.Sprintf(format, args...)}
}

func breached(reason schemas.Reason, limit string, value, bound float64, format string, args ...any) *verdict {
	v := deny(reason, format, args...)
	v.breach = &schemas.Breach{Limit: limit, Value: value, Bound: bound}
	return v
}

// hopContext is the governance context of an invoke, derived from the
// ledger (or, for a run's first hop, from the registry).
type hopContext struct {
	depth      int
	ancestry   []string
	onBehalfOf string
	parentID   string
}

// decide turns a submission into the events that record it. Whatever is
// wrong with the submission becomes a denial; only infrastructure failures
// (the rate-limit store) return an error.
func (e *Enforcer) decide(ctx context.Context, st *ledger.State, sub *submission, now time.Time) (plan, error) {
	reg := e.registry.Load()
	if sub.decodeErr != nil {
		return e.denied(st, sub, nil, deny(schemas.ReasonMalformed, "%v", sub.decodeErr)), nil
	}
	env := sub.env
	caller, v := e.authenticate(reg.dir, sub)
	if v != nil {
		return e.denied(st, sub, nil, v), nil
	}
	if skew := sub.storedAt.Sub(env.SentAt).Abs(); skew > e.cfg.ReplayWindow {
		return e.denied(st, sub, nil, deny(schemas.ReasonReplay,
			"sent_at %s is %s from when the broker received it (window %s)", env.SentAt.Format(time.RFC3339), skew.Round(time.Second), e.cfg.ReplayWindow)), nil
	}
	switch env.Kind {
	case schemas.KindInvoke:
		return e.decideInvoke(ctx, reg, st, sub, caller, now)
	case schemas.KindReply:
		return e.decideClose(st, sub, now, true), nil
	default:
		return e.decideClose(st, sub, now, false), nil
	}
}

// authenticate checks that the sender is who the broker says it is: the
// subject token (which NATS permissions bind to the connection's nkey)
// names a known, enabled identity, "from" agrees, and the signature holds.
func (e *Enforcer) authenticate(dir *broker.Directory, sub *submission) (*broker.Identity, *verdict) {
	env := sub.env
	if env.From != sub.caller {
		return nil, deny(schemas.ReasonIdentity, "envelope says from %q but it was published by %q", env.From, sub.caller)
	}
	id, ok := dir.Get(sub.caller)
	switch {
	case !ok:
		return nil, deny(schemas.ReasonIdentity, "%q is not a registered identity", sub.caller)
	case id.Disabled:
		return nil, deny(schemas.ReasonIdentity, "%q is disabled", sub.caller)
	case !id.IsCaller() && env.Kind != schemas.KindReply:
		return nil, deny(schemas.ReasonIdentity, "%q is a %s: it may only reply", id.ID, id.Type)
	}
	if id.RequireSignature || env.Signature != "" {
		if id.SigningKey() == nil {
			return nil, deny(schemas.ReasonIdentity, "envelope is signed but %q has no registered key", id.ID)
		}
		if err := schemas.VerifySignature(sub.wire, id.SigningKey()); err != nil {
			return nil, deny(schemas.ReasonIdentity, "%v", err)
		}
	}
	return id, nil
}

func (e *Enforcer) decideInvoke(ctx context.Context, reg *registry, st *ledger.State, sub *submission, caller *broker.Identity, now time.Time) (plan, error) {
	env := sub.env
	var hc hopContext
	var parent *ledger.Hop
	newRun := false
	if env.ParentHopID == "" {
		if env.RunID != "" && env.RunID != sub.runToken {
			return e.denied(st, sub, nil, deny(schemas.ReasonMalformed, "run_id %q differs from the run %q of the subject", env.RunID, sub.runToken)), nil
		}
		if st.Started && (st.RootHopID != env.HopID || st.Hops[env.HopID] != nil) {
			return e.denied(st, sub, nil, deny(schemas.ReasonRun, "run %s already exists; start a run with a fresh run id", st.RunID)), nil
		}
		// A run that started but whose first hop was not decided yet is a
		// crash between the two appends: decide the hop now.
		newRun = !st.Started
		hc = hopContext{ancestry: []string{caller.ID}, onBehalfOf: caller.ID}
	} else {
		if !st.Started {
			return e.denied(st, sub, nil, deny(schemas.ReasonRun, "run %s does not exist", sub.runToken)), nil
		}
		if v := e.checkParent(st, sub); v != nil {
			return e.denied(st, sub, nil, v), nil
		}
		parent = st.Hops[env.ParentHopID]
		depth, ancestry := ledger.ChildContext(parent)
		hc = hopContext{depth: depth, ancestry: ancestry, onBehalfOf: st.OnBehalfOf, parentID: parent.ID}
	}

	var events []schemas.Event
	limits := e.limitsOf(st)
	traceID, spanID, parentSpanID := hopTrace(st, sub, parent, st.TraceID)
	if newRun {
		workflow := e.workflowFor(reg, env.To)
		limits = e.limitsForWorkflow(workflow)
		start, err := schemas.NewEvent(sub.runToken, schemas.EventRunStarted, "", now, &schemas.RunStarted{
			RootHopID: env.HopID, Caller: caller.ID, CallerType: caller.Type, OnBehalfOf: hc.onBehalfOf,
			Workflow: workflow, Limits: limits.record(), TraceID: traceID,
		})
		if err != nil {
			return plan{}, err
		}
		events = append(events, start)
		// Decide against the run as it will be once started.
		st = startedView(st, start, now, limits)
	}
	decision := &schemas.HopDecision{
		Kind: schemas.KindInvoke, ParentHopID: hc.parentID, From: caller.ID, To: env.To,
		FromType: caller.Type, FromTeam: caller.Team, FromTags: caller.Tags,
		Depth: hc.depth, Ancestry: hc.ancestry, OnBehalfOf: hc.onBehalfOf, Estimate: env.Estimate,
		Cycle:   contains(hc.ancestry, env.To),
		TraceID: traceID, SpanID: spanID, ParentSpanID: parentSpanID,
	}
	target, v := e.checkTarget(reg.dir, env.To)
	if v == nil {
		decision.Action = actionFor(target.Type)
		decision.ToType, decision.ToTeam, decision.ToTags = target.Type, target.Team, target.Tags
		var err error
		if v, err = e.govern(ctx, reg, st, sub, caller, target, hc, limits, now, decision); err != nil {
			return plan{}, err
		}
	}
	if v == nil {
		decision.Deadline = now.Add(e.timeoutFor(target)).UTC()
	}
	return plan{events: append(events, e.decisionEvent(sub, decision, v, now))}, nil
}

// startedView is the state a new run will have once start is appended,
// for deciding its first hop before anything is written.
func startedView(st *ledger.State, start schemas.Event, now time.Time, limits Limits) *ledger.State {
	view := ledger.NewState(st.RunID)
	view.Started, view.StartedAt, view.Limits = true, now, limits.record()
	view.Workflow = st.Workflow
	if d, err := start.DecodeData(); err == nil {
		view.Workflow, view.TraceID = d.(*schemas.RunStarted).Workflow, d.(*schemas.RunStarted).TraceID
	}
	return view
}

func (e *Enforcer) checkTarget(dir *broker.Directory, to string) (*broker.Identity, *verdict) {
	target, ok := dir.Get(to)
	switch {
	case !ok:
		return nil, deny(schemas.ReasonTarget, "%q is not a registered agent, tool or model", to)
	case target.Disabled:
		return nil, deny(schemas.ReasonTarget, "%q is disabled", to)
	case target.Type == schemas.TypeUser:
		return nil, deny(schemas.ReasonTarget, "%q is a user; users start runs, they are not invoked", to)
	}
	return target, nil
}

// checkParent verifies the hop the caller says it is working on: it is in
// this run, it was delivered to the caller, and it is still open.
func (e *Enforcer) checkParent(st *ledger.State, sub *submission) *verdict {
	env := sub.env
	parent := st.Hops[env.ParentHopID]
	switch {
	case st.Closed():
		return e.closedRun(st)
	case parent == nil || parent.Status == ledger.HopDenied:
		return deny(schemas.ReasonParent, "parent hop %s is not an allowed hop of run %s", env.ParentHopID, st.RunID)
	case parent.To != sub.caller:
		return deny(schemas.ReasonParent, "parent hop %s was delivered to %q, not to %q", parent.ID, parent.To, sub.caller)
	case !parent.Open():
		return deny(schemas.ReasonParent, "parent hop %s is closed (%s)", parent.ID, parent.Status)
	case st.Hops[env.HopID] != nil:
		return deny(schemas.ReasonReplay, "hop id %s is already used in run %s", env.HopID, st.RunID)
	}
	return nil
}

func (e *Enforcer) closedRun(st *ledger.State) *verdict {
	if st.Halted {
		return deny(schemas.ReasonHalted, "run %s is halted", st.RunID)
	}
	return deny(schemas.ReasonRun, "run %s has completed (%s)", st.RunID, st.Status)
}

// decideClose handles a reply (from the hop's target) or a cancel (from its
// caller): the hop must be open and the sender's to close.
func (e *Enforcer) decideClose(st *ledger.State, sub *submission, now time.Time, reply bool) plan {
	env := sub.env
	if !st.Started {
		return e.denied(st, sub, nil, deny(schemas.ReasonRun, "run %s does not exist", sub.runToken))
	}
	hop := st.Hops[env.HopID]
	var v *verdict
	switch {
	case hop == nil || hop.Status == ledger.HopDenied:
		v = deny(schemas.ReasonHop, "hop %s is not an allowed hop of run %s", env.HopID, st.RunID)
	case reply && hop.To != sub.caller:
		v = deny(schemas.ReasonHop, "hop %s was delivered to %q; only it may reply", hop.ID, hop.To)
	case reply && env.To != hop.From:
		v = deny(schemas.ReasonHop, "reply is addressed to %q but hop %s was called by %q", env.To, hop.ID, hop.From)
	case !reply && hop.From != sub.caller:
		v = deny(schemas.ReasonHop, "hop %s was called by %q; only it may cancel", hop.ID, hop.From)
	case !hop.Open() && st.Halted:
		v = deny(schemas.ReasonHalted, "run %s is halted; hop %s was cancelled", st.RunID, hop.ID)
	case !hop.Open():
		v = deny(schemas.ReasonHop, "hop %s is already closed (%s)", hop.ID, hop.Status)
	}
	if v != nil {
		return e.denied(st, sub, nil, v)
	}
	done := &schemas.HopCompleted{
		Status: schemas.StateCanceled, By: sub.caller, LatencyMS: now.Sub(hop.OpenedAt).Milliseconds(),
		SubmitSeq: sub.seq, Envelope: sub.wire, Digest: sub.digest,
	}
	if reply {
		done.Status, done.Usage, done.Error = env.Result.Status, env.Usage, env.Result.Error
	}
	ev, err := schemas.NewEvent(st.RunID, schemas.EventHopCompleted, hop.ID, now, done)
	if err != nil {
		return e.denied(st, sub, nil, deny(schemas.ReasonMalformed, "%v", err))
	}
	return plan{events: []schemas.Event{ev}}
}

// denied records a denial: in the run's ledger when the run exists,
// otherwise in a ledger entry of its own.
func (e *Enforcer) denied(st *ledger.State, sub *submission, hc *hopContext, v *verdict) plan {
	d := &schemas.HopDecision{From: sub.caller}
	if env := sub.env; env != nil {
		d.Kind, d.To, d.ParentHopID = env.Kind, env.To, env.ParentHopID
	}
	if hc != nil {
		d.Depth, d.Ancestry, d.OnBehalfOf = hc.depth, hc.ancestry, hc.onBehalfOf
	}
	if !st.Started {
		e.fillDecision(sub, d, v)
		return plan{reject: d}
	}
	return plan{events: []schemas.Event{e.decisionEvent(sub, d, v, e.cfg.Clock())}}
}

// decisionEvent completes d with the verdict and the submission as
// received, and wraps it in hop.allowed (v nil) or hop.denied.
func (e *Enforcer) decisionEvent(sub *submission, d *schemas.HopDecision, v *verdict, now time.Time) schemas.Event {
	e.fillDecision(sub, d, v)
	typ := schemas.EventHopAllowed
	if v != nil {
		typ = schemas.EventHopDenied
	}
	ev, err := schemas.NewEvent(sub.runToken, typ, sub.hopID(), now, d)
	if err != nil {
		// Every member of HopDecision encodes; this is unreachable short of
		// memory corruption. Record the failure itself as the denial.
		ev, _ = schemas.NewEvent(sub.runToken, schemas.EventHopDenied, sub.hopID(), now,
			&schemas.HopDecision{From: sub.caller, Reason: schemas.ReasonMalformed, Message: err.Error(), Digest: sub.digest, SubmitSeq: sub.seq})
	}
	return ev
}

func (e *Enforcer) fillDecision(sub *submission, d *schemas.HopDecision, v *verdict) {
	d.SubmitSeq, d.Size, d.Digest = sub.seq, len(sub.raw), sub.digest
	d.Envelope, d.Raw = sub.recorded()
	if v != nil {
		d.Reason, d.Message, d.Breach = v.reason, v.message, v.breach
		if v.policyIDs != nil {
			d.PolicyIDs = v.policyIDs
		}
		d.Deadline = time.Time{}
	}
}

// limitsOf returns the limits a run is held to: those recorded when it
// started.
func (e *Enforcer) limitsOf(st *ledger.State) Limits {
	if st.Limits != nil {
		return limitsFromRecord(st.Limits)
	}
	return e.cfg.Limits
}

// limitsForWorkflow returns the gateway's limits with the workflow's
// overrides.
func (e *Enforcer) limitsForWorkflow(workflow string) Limits {
	l := e.cfg.Limits
	if o, ok := e.cfg.Workflows[workflow]; ok {
		l = l.override(o)
	}
	return l
}

// agentLimits returns the per-agent settings of caller.
func (e *Enforcer) agentLimits(caller string) AgentLimits {
	a := e.cfg.PerAgent
	if o, ok := e.cfg.Agents[caller]; ok {
		a = a.override(o)
	}
	return a
}

func (e *Enforcer) timeoutFor(target *broker.Identity) time.Duration {
	if target.Timeout > 0 {
		return target.Timeout
	}
	return e.cfg.DefaultTimeout
}

// workflowFor is the workflow of a run entered at agent: the agent's
// configured workflow, or "default".
func (e *Enforcer) workflowFor(reg *registry, agent string) string {
	if id, ok := reg.dir.Get(agent); ok && id.Workflow != "" {
		return id.Workflow
	}
	return "default"
}

func actionFor(t schemas.PrincipalType) schemas.Action {
	switch t {
	case schemas.TypeTool:
		return schemas.ActionCallTool
	case schemas.TypeModel:
		return schemas.ActionCallModel
	}
	return schemas.ActionInvoke
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
