package enforcer

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// CycleAnnotation is policy.CycleAnnotation, kept here for callers of the
// enforcer's limits.
const CycleAnnotation = policy.CycleAnnotation

// govern applies the governance checks to an invoke that passed the
// integrity checks: the caller's rate limit, Cedar, depth, cycles, edge
// repeats and the run budget, in that order. The first failing check
// denies; for a caller in audit mode every failing check is recorded in
// d.Audit instead and the hop goes through. Audit policies only ever add
// findings.
func (e *Enforcer) govern(ctx context.Context, reg *registry, st *ledger.State, sub *submission, caller, target *broker.Identity,
	hc hopContext, limits Limits, now time.Time, d *schemas.HopDecision) (*verdict, error) {
	audit := e.agentLimits(caller.ID).Mode == ModeAudit
	req := PolicyRequest(st, caller, target, d)
	var cedar policy.Decision
	checks := []func() (*verdict, error){
		func() (*verdict, error) { return e.checkRate(ctx, caller.ID, now) },
		func() (*verdict, error) {
			cedar = reg.engine.Decide(req)
			d.PolicyIDs = cedar.PolicyIDs
			return policyVerdict(cedar, req), nil
		},
		func() (*verdict, error) { return checkDepth(hc.depth, limits), nil },
		func() (*verdict, error) { return checkCycle(reg, d, cedar), nil },
		func() (*verdict, error) { return checkEdges(st, caller.ID, target.ID, limits), nil },
		func() (*verdict, error) { return checkBudget(st, sub.env.Estimate, limits, now), nil },
	}
	for _, check := range checks {
		v, err := check()
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		if !audit {
			return v, nil
		}
		d.Audit = append(d.Audit, schemas.Finding{Reason: v.reason, Message: v.message, PolicyIDs: v.policyIDs})
	}
	if reg.audit != nil {
		if a := reg.audit.Decide(req); !a.Allow {
			v := policyVerdict(a, req)
			d.Audit = append(d.Audit, schemas.Finding{Reason: v.reason, Message: "audit policies: " + v.message, PolicyIDs: v.policyIDs})
		}
	}
	return nil, nil
}

// PolicyRequest is the Cedar request of an invoke: caller, action, target,
// and the context derived from the run's state before the hop and from the
// hop's decision record (depth, ancestry, principal, cycle). The enforcer
// decides with it, and a policy what-if rebuilds it from the ledger.
func PolicyRequest(st *ledger.State, caller, target *broker.Identity, d *schemas.HopDecision) policy.Request {
	return policy.Request{
		Principal: caller, Action: d.Action, Resource: target,
		Context: policy.Context{
			RunID: st.RunID, Workflow: st.Workflow, Depth: d.Depth, Ancestry: d.Ancestry, OnBehalfOf: d.OnBehalfOf,
			IsCycle: d.Cycle, HopsSoFar: st.Allowed, TokensSoFar: st.Spent.Tokens, CostSoFar: st.Spent.CostUSD,
			EdgeCalls: st.Edges[ledger.Edge{From: caller.ID, To: target.ID}],
		},
	}
}

// PolicyVerdict explains a Cedar decision the way the enforcer records it:
// nil for an allow, else the reason (always policy), message and deciding
// policy ids.
func PolicyVerdict(d policy.Decision, r policy.Request) (reason schemas.Reason, message string, policyIDs []string, denied bool) {
	v := policyVerdict(d, r)
	if v == nil {
		return "", "", nil, false
	}
	return v.reason, v.message, v.policyIDs, true
}

func policyVerdict(d policy.Decision, r policy.Request) *verdict {
	switch {
	case len(d.Errors) > 0:
		return &verdict{reason: schemas.ReasonPolicy, message: "policy evaluation failed, which denies: " + d.Errors[0], policyIDs: d.PolicyIDs}
	case !d.Allow && len(d.PolicyIDs) > 0:
		return &verdict{reason: schemas.ReasonPolicy, message: fmt.Sprintf("forbidden by policy %v", d.PolicyIDs), policyIDs: d.PolicyIDs}
	case !d.Allow:
		return deny(schemas.ReasonPolicy, "no policy permits %s %s %s (default deny)", r.Principal.ID, r.Action, r.Resource.ID)
	}
	return nil
}

// checkRate takes a token from the caller's bucket, shared by every
// enforcer instance. Every invoke attempt counts, allowed or not.
func (e *Enforcer) checkRate(ctx context.Context, caller string, now time.Time) (*verdict, error) {
	rate := e.agentLimits(caller).InvokeRateLimit
	if rate.Unlimited() || e.limiter == nil {
		return nil, nil
	}
	d, err := e.limiter.Take(ctx, caller, rate, now)
	if err != nil {
		return nil, err
	}
	if d.Allowed {
		return nil, nil
	}
	return breached(schemas.ReasonRate, LimitRate, float64(rate.Count+1), float64(rate.Count),
		"%s is over its invoke rate limit of %s (next token in %s)", caller, rate, d.RetryAfter.Round(time.Millisecond)), nil
}

func checkDepth(depth int, l Limits) *verdict {
	if l.MaxDelegationDepth >= 0 && depth > l.MaxDelegationDepth {
		return breached(schemas.ReasonDepth, LimitDepth, float64(depth), float64(l.MaxDelegationDepth),
			"depth %d exceeds max_delegation_depth %d", depth, l.MaxDelegationDepth)
	}
	return nil
}

// checkCycle denies a hop to an agent already in its ancestry, unless a
// permitting policy is annotated @cycle("allow").
func checkCycle(reg *registry, d *schemas.HopDecision, cedar policy.Decision) *verdict {
	if !d.Cycle || reg.engine.Set().AllowsCycle(cedar) {
		return nil
	}
	return breached(schemas.ReasonLoop, LimitCycle, 1, 0,
		"%s is already in this hop's ancestry %v: %s -> %s closes a cycle", d.To, d.Ancestry, d.From, d.To)
}

func checkEdges(st *ledger.State, from, to string, l Limits) *verdict {
	n := st.Edges[ledger.Edge{From: from, To: to}]
	if l.MaxEdgeRepeats >= 0 && n+1 > l.MaxEdgeRepeats {
		return breached(schemas.ReasonLoop, LimitEdgeRepeats, float64(n+1), float64(l.MaxEdgeRepeats),
			"edge %s -> %s would be used %d times in this run (max_edge_repeats %d)", from, to, n+1, l.MaxEdgeRepeats)
	}
	return nil
}

// checkBudget admits a hop only if the run stays within its hops, wall
// clock, tokens and cost, counting what replies reported, what open hops
// reserved, and what this hop estimates. Deciding and recording happen in
// one step per run, so concurrent hops cannot overspend.
func checkBudget(st *ledger.State, estimate *schemas.Usage, l Limits, now time.Time) *verdict {
	if l.MaxHops >= 0 && st.Allowed+1 > l.MaxHops {
		return breached(schemas.ReasonBudget, LimitHops, float64(st.Allowed+1), float64(l.MaxHops),
			"the run would have %d hops (max_hops %d)", st.Allowed+1, l.MaxHops)
	}
	if wc := l.wallClock(); wc > 0 && !st.StartedAt.IsZero() && now.Sub(st.StartedAt) > wc {
		el := now.Sub(st.StartedAt)
		return breached(schemas.ReasonBudget, LimitWallClock, el.Seconds(), wc.Seconds(),
			"the run has been going for %s (max_wall_clock_seconds %d)", el.Round(time.Second), l.MaxWallClockSeconds)
	}
	total := st.Total()
	if tokens := total.Tokens + estimate.Tokens(); l.MaxTotalTokens >= 0 && tokens > l.MaxTotalTokens {
		return breached(schemas.ReasonBudget, LimitTokens, float64(tokens), float64(l.MaxTotalTokens),
			"tokens spent, reserved and estimated would reach %d (max_total_tokens %d)", tokens, l.MaxTotalTokens)
	}
	if cost := total.CostUSD + estimate.Cost(); l.MaxCostUSD >= 0 && cost > l.MaxCostUSD {
		return breached(schemas.ReasonBudget, LimitCost, cost, l.MaxCostUSD,
			"cost spent, reserved and estimated would reach $%.4f (max_cost_usd %g)", cost, l.MaxCostUSD)
	}
	return nil
}

// overBudget reports a spend limit the run's settled usage went past.
func overBudget(st *ledger.State, l Limits) (limit string, value, bound float64, over bool) {
	if l.MaxTotalTokens >= 0 && st.Spent.Tokens > l.MaxTotalTokens {
		return LimitTokens, float64(st.Spent.Tokens), float64(l.MaxTotalTokens), true
	}
	if l.MaxCostUSD >= 0 && st.Spent.CostUSD > l.MaxCostUSD {
		return LimitCost, st.Spent.CostUSD, l.MaxCostUSD, true
	}
	return "", 0, 0, false
}
