package decision

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/enforcer/guardrail"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// RateFunc takes a token from a fleet-wide bucket (a caller's, see
// limits.RejectKey for the others) of the given rate. The enforcer backs
// it with the KV token buckets, tests with what they know.
type RateFunc func(key string, rate ratelimit.Rate) (ratelimit.Decision, error)

// Inputs are what a decision reads beyond the run it decides on, each a
// function the caller backs with I/O (the decision core does none). A nil
// function means the input is not available: no rate limit is taken, and
// a run cannot be started from another run's hop.
type Inputs struct {
	// Rate takes a token from a fleet-wide rate-limit bucket.
	Rate RateFunc
	// Run returns another run's state, folded from the ledger: the run an
	// agent starts a run from (spawned_from).
	Run func(id string) (*ledger.State, error)
	// Scan scans a message with Rules.Guard and the external checker; nil
	// scans with Rules.Guard alone.
	Scan ScanFunc
	// Quota reserves a hop's estimate in the fleet-wide quotas, and
	// QuotaUsed reads how much of them is used (context.quota_used); nil:
	// quotas are not checked.
	Quota     QuotaFunc
	QuotaUsed QuotaUsedFunc
	// Circuit reports whether a target's circuit is open; Bound whether a
	// target has a consumer bound (asked only of targets with fallbacks).
	// nil: every circuit closed, every target bound.
	Circuit CircuitFunc
	Bound   func(target string) (bool, error)
	// Current checks that a run's state is the ledger's latest before a
	// rejection is charged, and fails (with ledger.ErrConflict) when
	// another writer has appended to the run since; the caller then
	// decides again on a fresh state. nil: the state is taken as current.
	Current func(st *ledger.State) error
}

// QuotaFunc reserves a hop's estimate in the quotas that apply to it, all
// or none, and reports the first quota it would pass (reserved anyway
// when req.Force or the quota is in audit mode). The enforcer backs it
// with quota.Store.
type QuotaFunc func(req QuotaRequest) (*quota.Over, error)

// QuotaUsedFunc returns the highest share, in percent, of any applied
// quota's bound that is settled or reserved.
type QuotaUsedFunc func(applied []limits.Applied) (int64, error)

// QuotaRequest is one reservation: the quotas that apply to a hop, the
// hop ("run/hop"), its estimate, when the reservation lapses if the hop
// never settles, and whether to reserve past the bounds (audit mode).
type QuotaRequest struct {
	Applied  []limits.Applied
	Hop      string
	Estimate quota.Amount
	Until    time.Time
	Force    bool
}

// QuotaHop is how a hop is named in its quota reservations.
func QuotaHop(run, hop string) string { return run + "/" + hop }

// QuotaGrace is how long past a hop's timeout its quota reservation is
// kept when the hop never settles (its enforcer crashed before recording
// it); a hop that closes settles it at once.
const QuotaGrace = 2 * time.Minute

// Spender is who spends on a hop, as quotas see it: the caller, its team
// and environment, the run's workflow and principal.
func Spender(st *ledger.State, caller *broker.Identity, onBehalfOf string) limits.Spender {
	return limits.Spender{Agent: caller.ID, Team: caller.Team, Workflow: st.Workflow, Principal: onBehalfOf, Environment: caller.Environment}
}

// Invoke is an invoke that passed the integrity checks, as the governance
// checks see it.
type Invoke struct {
	// State is the run before the hop (for a run's first hop, the run as
	// it is once started).
	State          *ledger.State
	Caller, Target *broker.Identity
	// Decision is the decision record being built: action, depth,
	// ancestry, principal and cycle are set.
	Decision *schemas.HopDecision
	Estimate *schemas.Usage
	Limits   limits.Run
	Now      time.Time
	// Message is the invoke's A2A message, and Scan how the guardrail check
	// scans it: nil for no guardrails.
	Message json.RawMessage
	Scan    ScanFunc
	// Quota and QuotaUsed check and reserve the fleet-wide quotas; nil for
	// none. QuotaUntil is when the hop's reservation lapses if it never
	// settles.
	Quota      QuotaFunc
	QuotaUsed  QuotaUsedFunc
	QuotaUntil time.Time
	// HopID is the hop's id (it names its quota reservations).
	HopID string
}

// Governance is what the governance checks found.
type Governance struct {
	// Denial is the first check that denied; nil when the hop may pass.
	Denial *Verdict
	// Findings are the denials audit mode recorded instead of enforcing.
	Findings []schemas.Finding
	// PolicyIDs are the policies Cedar decided with (the permits of an
	// allow, the forbids of a deny).
	PolicyIDs []string
	// Redacted is the message with what the guardrails redacted replaced,
	// when they redacted something: what is delivered instead.
	Redacted json.RawMessage
}

// check is one governance check. Checks run in the order of checks.
type check struct {
	// name says what the check bounds, in the order docs/limits.md lists.
	name string
	// reason is the reason code of the check's denials, and limits the
	// limits it may trip.
	reason schemas.Reason
	limits []string
	// readsPolicy is set for the checks whose verdict depends on the
	// policy set: the what-if re-evaluates only those.
	readsPolicy bool
	// binding is set for a check that denies whatever the caller's mode:
	// a bound that protects the target for all its callers (a tool's
	// rate_limit) is not the caller's to audit.
	binding bool
	run     func(g *governing) (*Verdict, error)
}

// checks is the governance order, written once: the enforcer decides
// with it and the what-if replays it.
var checks = []check{
	{name: "rate", reason: schemas.ReasonRate, limits: []string{limits.Rate}, run: (*governing).rate},
	{name: "guardrail", reason: schemas.ReasonGuardrail, run: (*governing).guardrail},
	{name: "start", reason: schemas.ReasonPolicy, readsPolicy: true, run: (*governing).start},
	{name: "runs", reason: schemas.ReasonRate, limits: []string{limits.RunRate}, run: (*governing).runs},
	{name: "policy", reason: schemas.ReasonPolicy, readsPolicy: true, run: (*governing).policy},
	{name: "depth", reason: schemas.ReasonDepth, limits: []string{limits.Depth}, run: (*governing).depth},
	{name: "cycle", reason: schemas.ReasonLoop, limits: []string{limits.Cycle}, readsPolicy: true, run: (*governing).cycle},
	{name: "edges", reason: schemas.ReasonLoop, limits: []string{limits.EdgeRepeats}, run: (*governing).edges},
	{name: "budget", reason: schemas.ReasonBudget, limits: []string{limits.Hops, limits.WallClock, limits.Tokens, limits.Cost}, run: (*governing).budget},
	// target_rate takes a token of the target's own rate (a tool's
	// rate_limit): only a hop the checks before let through takes one. It
	// binds callers in audit mode too: it protects the upstream for all.
	{name: "target_rate", reason: schemas.ReasonRate, binding: true, run: (*governing).targetRate},
	// quota reserves (an I/O with a lasting effect): it stays last, so a
	// hop another check denies reserves nothing.
	{name: "quota", reason: schemas.ReasonQuota, run: (*governing).quota},
}

// governing is one evaluation of the checks.
type governing struct {
	inv       *Invoke
	engine    *policy.Engine
	take      RateFunc
	agent     limits.Agent
	principal limits.Principal
	req       policy.Request
	cedar     policy.Decision
	// redacted is the message as the guardrail check redacted it.
	redacted json.RawMessage
	// applied are the quotas that count the hop; findings what quotas in
	// audit mode recorded.
	applied  []limits.Applied
	findings []schemas.Finding
}

// Govern applies the governance checks to an invoke in order: the caller's
// rate limit, Cedar (with engine), depth, cycles, edge repeats, the run
// budget, the target's rate limit and the quotas. The first failing check
// denies; for a caller in audit mode every failing check is recorded as a
// finding instead and the hop goes through, except a binding one (the
// target's rate limit), which denies it whatever the caller's mode.
// Audit policies (Rules.Audit) only ever add findings. rate may be nil (no
// rate limit is taken). Only rate returns an error.
func (r *Rules) Govern(inv *Invoke, engine *policy.Engine, rate RateFunc) (Governance, error) {
	g := newGoverning(inv, engine, rate, r.Limits.ForAgent(inv.Caller.ID))
	g.principal = r.Limits.PerPrincipal
	if inv.Quota != nil {
		g.applied = r.Limits.Applies(Spender(inv.State, inv.Caller, inv.Decision.OnBehalfOf))
		if len(g.applied) > 0 && inv.QuotaUsed != nil {
			applied, used := g.applied, inv.QuotaUsed
			g.req.Context.QuotaUsed = func() int64 {
				n, err := used(applied)
				if err != nil {
					return 0 // the reservation reads the store and fails the decision
				}
				return n
			}
		}
	}
	audit := g.agent.Mode == limits.ModeAudit
	var out Governance
	for _, c := range checks {
		v, err := c.run(g)
		if err != nil {
			return Governance{}, err
		}
		out.PolicyIDs, out.Redacted = g.cedar.PolicyIDs, g.redacted
		out.Findings = append(out.Findings, g.findings...)
		g.findings = nil
		if v == nil {
			continue
		}
		if !audit || c.binding {
			out.Denial = v
			return out, nil
		}
		out.Findings = append(out.Findings, v.finding())
	}
	if r.Audit != nil {
		if a := r.Audit.Decide(g.req); !a.Allow {
			v := PolicyVerdict(a, g.req)
			out.Findings = append(out.Findings, schemas.Finding{Reason: v.Reason, Message: "audit policies: " + v.Message, PolicyIDs: v.PolicyIDs})
		}
	}
	return out, nil
}

// Regovern replays the governance checks of a recorded invoke against
// another policy engine, in the enforcer's order and in enforce mode. The
// checks that read the policy set (Cedar, cycles) are evaluated; the
// others give the verdict the run recorded for them, recorded being the
// recorded denial (nil for an allowed hop): their inputs are the recorded
// run's, so evaluating them again could only repeat it. Evaluated reports
// whether the denial (if any) comes from a check that was evaluated.
func Regovern(inv *Invoke, engine *policy.Engine, recorded *Verdict) (g Governance, evaluated bool) {
	gv := newGoverning(inv, engine, nil, limits.Agent{})
	for _, c := range checks {
		var v *Verdict
		if c.readsPolicy {
			v, _ = c.run(gv)
		} else if c.recorded(recorded) {
			v = recorded.clone()
		}
		g.PolicyIDs = gv.cedar.PolicyIDs
		if v != nil {
			g.Denial = v
			return g, c.readsPolicy
		}
	}
	return g, false
}

// recorded reports whether a recorded denial is this check's.
func (c check) recorded(v *Verdict) bool {
	if v == nil || v.Reason != c.reason {
		return false
	}
	return v.Limit() == "" || slices.Contains(c.limits, v.Limit())
}

func (v *Verdict) clone() *Verdict {
	c := *v
	c.PolicyIDs = slices.Clone(v.PolicyIDs)
	return &c
}

func newGoverning(inv *Invoke, engine *policy.Engine, rate RateFunc, agent limits.Agent) *governing {
	return &governing{
		inv: inv, engine: engine, take: rate, agent: agent,
		req: PolicyRequest(inv.State, inv.Caller, inv.Target, inv.Decision),
	}
}

// PolicyRequest is the Cedar request of an invoke: caller, action, target,
// and the context derived from the run's state before the hop and from the
// hop's decision record (depth, ancestry, principal, cycle).
func PolicyRequest(st *ledger.State, caller, target *broker.Identity, d *schemas.HopDecision) policy.Request {
	return policy.Request{
		Principal: caller, Action: d.Action, Resource: target,
		Context: policy.Context{
			RunID: st.RunID, Workflow: st.Workflow, Depth: d.Depth, Ancestry: d.Ancestry, OnBehalfOf: d.OnBehalfOf,
			IsCycle: d.Cycle, HopsSoFar: st.Allowed, TokensSoFar: st.Spent.Tokens, CostSoFar: st.Spent.CostUSD,
			EdgeCalls: st.Edges[ledger.Edge{From: caller.ID, To: target.ID}],
			Tainted:   d.Tainted, TaintSources: d.TaintSources,
		},
	}
}

// rate takes a token from the caller's bucket, shared by every enforcer
// instance. Every invoke attempt counts, allowed or not.
func (g *governing) rate() (*Verdict, error) {
	rate := g.agent.InvokeRateLimit
	if rate.Unlimited() || g.take == nil {
		return nil, nil
	}
	d, err := g.take(g.inv.Caller.ID, rate)
	if err != nil {
		return nil, err
	}
	if d.Allowed {
		return nil, nil
	}
	return Breached(schemas.ReasonRate, limits.Rate, float64(rate.Count+1), float64(rate.Count),
		"%s is over its invoke rate limit of %s (next token in %s)", g.inv.Caller.ID, rate, d.RetryAfter.Round(time.Millisecond)), nil
}

// targetRate takes a token from the target's bucket (Identity.RateLimit,
// a tool's rate_limit), shared by all its callers and every enforcer
// instance. Over it, the hop is denied (reason rate) and never forwarded.
// It is not a breach of the run's limits: the bound is the target's, not
// the run's, so it halts nothing.
func (g *governing) targetRate() (*Verdict, error) {
	target := g.inv.Target
	rate := target.RateLimit
	if rate.Unlimited() || g.take == nil {
		return nil, nil
	}
	d, err := g.take(limits.TargetKey(target.ID), rate)
	if err != nil || d.Allowed {
		return nil, err
	}
	return Deny(schemas.ReasonRate, "%s is over its rate limit of %s, across its callers (next call in %s)",
		target.ID, rate, d.RetryAfter.Round(time.Millisecond)), nil
}

// start denies an agent that starts a run unless a policy permits it
// (action start_run): by default only users start runs.
func (g *governing) start() (*Verdict, error) {
	d := g.inv.Decision
	if d.ParentHopID != "" || g.inv.Caller.Type == schemas.TypeUser {
		return nil, nil
	}
	req := g.req
	req.Action = schemas.ActionStartRun
	dec := g.engine.Decide(req)
	if v := PolicyVerdict(dec, req); v != nil {
		v.Message = "agents start runs only where a policy permits start_run: " + v.Message
		return v, nil
	}
	return nil, nil
}

// runs takes a token from the bucket of runs started on behalf of the
// run's principal, for a run's first hop.
func (g *governing) runs() (*Verdict, error) {
	rate, d := g.principal.RunRate, g.inv.Decision
	if d.ParentHopID != "" || rate.Unlimited() || g.take == nil {
		return nil, nil
	}
	dec, err := g.take(limits.RunsKey(d.OnBehalfOf), rate)
	if err != nil || dec.Allowed {
		return nil, err
	}
	return Breached(schemas.ReasonRate, limits.RunRate, float64(rate.Count+1), float64(rate.Count),
		"%s has started its %s of runs (next in %s)", d.OnBehalfOf, rate, dec.RetryAfter.Round(time.Millisecond)), nil
}

// guardrail scans the invoke's message with the target's inbound
// guardrail policy. A block denies; a flag or a redaction taints the hop
// (the policy checks after it see the taint), and a redaction changes what
// is delivered. The scan is recorded in the decision whatever its verdict.
func (g *governing) guardrail() (*Verdict, error) {
	if g.inv.Scan == nil {
		return nil, nil
	}
	d := g.inv.Decision
	res := g.inv.Scan(guardrail.Request{Direction: guardrail.Inbound, From: d.From, To: d.To, Message: g.inv.Message})
	d.Guardrail = guardrailRecord(&res)
	t := taint{tainted: d.Tainted, sources: d.TaintSources}
	t.flagged(&res)
	d.Tainted, d.TaintSources = t.tainted, t.sources
	g.req.Context.Tainted, g.req.Context.TaintSources = t.tainted, t.sources
	if res.Verdict == guardrail.Redacted {
		g.redacted = res.Redacted
	}
	if res.Blocked() {
		return guardrailDenial(&res, "message"), nil
	}
	return nil, nil
}

func (g *governing) policy() (*Verdict, error) {
	g.cedar = g.engine.Decide(g.req)
	return PolicyVerdict(g.cedar, g.req), nil
}

func (g *governing) depth() (*Verdict, error) {
	depth, l := g.inv.Decision.Depth, g.inv.Limits
	if l.MaxDelegationDepth >= 0 && depth > l.MaxDelegationDepth {
		return Breached(schemas.ReasonDepth, limits.Depth, float64(depth), float64(l.MaxDelegationDepth),
			"depth %d exceeds max_delegation_depth %d", depth, l.MaxDelegationDepth), nil
	}
	return nil, nil
}

// cycle denies a hop to an agent already in its ancestry, unless a
// permitting policy is annotated @cycle("allow").
func (g *governing) cycle() (*Verdict, error) {
	d := g.inv.Decision
	if !d.Cycle || g.engine.Set().AllowsCycle(g.cedar) {
		return nil, nil
	}
	return Breached(schemas.ReasonLoop, limits.Cycle, 1, 0,
		"%s is already in this hop's ancestry %v: %s -> %s closes a cycle", d.To, d.Ancestry, d.From, d.To), nil
}

func (g *governing) edges() (*Verdict, error) {
	from, to, l := g.inv.Caller.ID, g.inv.Target.ID, g.inv.Limits
	n := g.inv.State.Edges[ledger.Edge{From: from, To: to}]
	if l.MaxEdgeRepeats >= 0 && n+1 > l.MaxEdgeRepeats {
		return Breached(schemas.ReasonLoop, limits.EdgeRepeats, float64(n+1), float64(l.MaxEdgeRepeats),
			"edge %s -> %s would be used %d times in this run (max_edge_repeats %d)", from, to, n+1, l.MaxEdgeRepeats), nil
	}
	return nil, nil
}

// budget admits a hop only if the run stays within its hops, wall clock,
// tokens and cost, counting what replies reported, what open hops
// reserved, and what this hop estimates. Deciding and recording happen in
// one step per run, so concurrent hops cannot overspend.
func (g *governing) budget() (*Verdict, error) {
	st, l, now, estimate := g.inv.State, g.inv.Limits, g.inv.Now, g.inv.Estimate
	if l.MaxHops >= 0 && st.Allowed+1 > l.MaxHops {
		return Breached(schemas.ReasonBudget, limits.Hops, float64(st.Allowed+1), float64(l.MaxHops),
			"the run would have %d hops (max_hops %d)", st.Allowed+1, l.MaxHops), nil
	}
	if wc := l.WallClock(); wc > 0 && !st.StartedAt.IsZero() && now.Sub(st.StartedAt) > wc {
		el := now.Sub(st.StartedAt)
		return Breached(schemas.ReasonBudget, limits.WallClock, el.Seconds(), wc.Seconds(),
			"the run has been going for %s (max_wall_clock_seconds %d)", el.Round(time.Second), l.MaxWallClockSeconds), nil
	}
	total := st.Total()
	if tokens := total.Tokens + estimate.Tokens(); l.MaxTotalTokens >= 0 && tokens > l.MaxTotalTokens {
		return Breached(schemas.ReasonBudget, limits.Tokens, float64(tokens), float64(l.MaxTotalTokens),
			"tokens spent, reserved and estimated would reach %d (max_total_tokens %d)", tokens, l.MaxTotalTokens), nil
	}
	if cost := total.CostUSD + estimate.Cost(); l.MaxCostUSD >= 0 && cost > l.MaxCostUSD {
		return Breached(schemas.ReasonBudget, limits.Cost, cost, l.MaxCostUSD,
			"cost spent, reserved and estimated would reach $%.4f (max_cost_usd %g)", cost, l.MaxCostUSD), nil
	}
	return nil, nil
}

// quota reserves the hop's estimate in every quota that counts its
// spender (limits.Set.Applies), fleet-wide. A quota it would pass denies
// (reason quota) and, with on_exceed halt_and_alert, trips the breach
// limits.QuotaLimit(name) that halts the run like a run limit. A quota in
// audit mode, or a caller in audit mode, reserves anyway and records the
// excess as a finding.
func (g *governing) quota() (*Verdict, error) {
	if len(g.applied) == 0 || g.inv.Quota == nil {
		return nil, nil
	}
	inv := g.inv
	over, err := inv.Quota(QuotaRequest{
		Applied: g.applied, Hop: QuotaHop(inv.State.RunID, inv.HopID),
		Estimate: quota.Amount{Tokens: inv.Estimate.Tokens(), CostUSD: inv.Estimate.Cost()},
		Until:    inv.QuotaUntil, Force: g.agent.Mode == limits.ModeAudit,
	})
	if err != nil || over == nil {
		return nil, err
	}
	v := quotaVerdict(over, inv.Decision.From)
	if over.Quota.Mode == limits.ModeAudit {
		g.findings = append(g.findings, v.finding())
		return nil, nil
	}
	return v, nil
}

func quotaVerdict(o *quota.Over, from string) *Verdict {
	q := o.Quota
	unit, used, would, bound := "tokens", fmt.Sprintf("%.0f", o.Used), fmt.Sprintf("%.0f", o.Would), fmt.Sprintf("%.0f", o.Bound)
	if o.Dimension == "cost" {
		unit, used, would, bound = "USD", fmt.Sprintf("$%.4f", o.Used), fmt.Sprintf("$%.4f", o.Would), fmt.Sprintf("$%g", o.Bound)
	}
	window := q.Window
	if q.Window == limits.WindowRolling {
		window = "rolling " + q.Rolling.String()
	}
	msg := fmt.Sprintf("quota %s (%s %s, %s window) would reach %s %s with this hop's estimate: %s settled and reserved, bound %s (%s's hop)",
		q.Name, q.Scope, o.Value, window, would, unit, used, bound, from)
	if q.OnExceed == limits.QuotaHalt {
		return Breached(schemas.ReasonQuota, limits.QuotaLimit(q.Name), o.Would, o.Bound, "%s", msg)
	}
	return Deny(schemas.ReasonQuota, "%s", msg)
}

// OverBudget reports a spend limit the run's settled usage went past.
func OverBudget(st *ledger.State, l limits.Run) (limit string, value, bound float64, over bool) {
	if l.MaxTotalTokens >= 0 && st.Spent.Tokens > l.MaxTotalTokens {
		return limits.Tokens, float64(st.Spent.Tokens), float64(l.MaxTotalTokens), true
	}
	if l.MaxCostUSD >= 0 && st.Spent.CostUSD > l.MaxCostUSD {
		return limits.Cost, st.Spent.CostUSD, l.MaxCostUSD, true
	}
	return "", 0, 0, false
}
