package policy

import (
	"fmt"
	"slices"
	"sync"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// Request asks whether principal may perform action on resource.
type Request struct {
	Principal *broker.Identity
	Action    schemas.Action
	Resource  *broker.Identity
	Context   Context
}

// Decision is Cedar's verdict with its reasons.
type Decision struct {
	Allow bool
	// PolicyIDs are the policies that decided: the forbids for a deny, the
	// permits for an allow. Empty for a default deny.
	PolicyIDs []string
	// Errors lists policies that failed to evaluate, in policy id order;
	// any makes it a deny.
	Errors []string
}

// candidatePool recycles the candidate lists of decisions.
var candidatePool = sync.Pool{New: func() any { return newCandidates() }}

// Set returns the engine's policy set.
func (e *Engine) Set() *Set { return e.set }

// Decide evaluates a request. Default deny: without a permit the answer is
// no; any forbid wins; any evaluation error is a deny naming the policy,
// and so is a request that does not match the schema.
//
// Only the policies whose scope can match the request are evaluated (see
// index.go), less those whose guard proves a condition false, and those
// whose guard proves every condition true as their scope alone (see
// guard.go); the context record holds only the attributes they read: the
// decision, its policies and its errors are those of evaluating every
// policy with the whole record.
func (e *Engine) Decide(r Request) Decision {
	if r.Principal == nil || r.Resource == nil {
		return Decision{Errors: []string{"request does not match the schema: it has no principal or no resource"}}
	}
	p, a, res := e.subject(r.Principal), e.action(r.Action), e.subject(r.Resource)
	var whole *types.Record
	if !e.matchesSchema(p, a, res) {
		rec := r.Context.record()
		whole = &rec
		req := types.Request{Principal: p.uid, Action: a.uid, Resource: res.uid, Context: rec}
		if err := e.set.validator.Request(req); err != nil {
			return Decision{Errors: []string{"request does not match the schema: " + err.Error()}}
		}
	}
	decision, diag := e.authorize(p, a, res, &r.Context, whole)
	var d Decision
	if n := len(diag.Errors) + len(diag.Reasons); n > 1 {
		d.PolicyIDs = make([]string, 0, n) // one allocation, not one per growth
	}
	for _, de := range diag.Errors {
		d.Errors = append(d.Errors, fmt.Sprintf("%s: %s", de.PolicyID, de.Message))
		d.PolicyIDs = append(d.PolicyIDs, string(de.PolicyID))
	}
	if len(d.Errors) > 0 {
		slices.Sort(d.PolicyIDs)
		return d
	}
	for _, r := range diag.Reasons {
		d.PolicyIDs = append(d.PolicyIDs, string(r.PolicyID))
	}
	slices.Sort(d.PolicyIDs)
	d.Allow = decision == cedar.Allow
	return d
}

// authorize evaluates with Cedar the policies whose scope can match the
// request and whose guard does not exclude it, with a context record of
// the attributes they read (whole, when given, instead).
func (e *Engine) authorize(p *subject, a *action, res *subject, ctx *Context, whole *types.Record) (cedar.Decision, cedar.Diagnostic) {
	c := candidatePool.Get().(*candidates)
	defer func() {
		c.ix, c.entities, c.facts = nil, requestEntities{}, facts{}
		candidatePool.Put(c)
	}()
	c.ix = e.set.index
	c.entities = requestEntities{p: p, r: res, all: e.entities}
	c.positions = collect(c.positions[:0], e.typed(p, a, res), &p.as[principalTerm], a.candidates, &res.as[resourceTerm])
	c.facts = facts{ctx: *ctx, p: p, r: res}
	c.positions = c.ix.refine(c.positions, &c.facts)
	if len(c.positions) == 0 {
		// What Cedar answers over no policies, without its allocations.
		return cedar.Deny, cedar.Diagnostic{}
	}
	req := types.Request{Principal: p.uid, Action: a.uid, Resource: res.uid}
	if whole != nil {
		req.Context = *whole
	} else {
		req.Context = ctx.recordOf(c.ix.readsAll(c.positions))
	}
	return cedar.Authorize(c, &c.entities, req)
}

// requestEntities answers Cedar's entity look-ups, those of the request's
// principal and resource without hashing their uids.
type requestEntities struct {
	p, r *subject
	all  types.EntityMap
}

// Get returns the entity of uid, as the engine's entity map does.
func (g *requestEntities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case g.p.uid:
		return g.p.entity, g.p.known
	case g.r.uid:
		return g.r.entity, g.r.known
	}
	e, ok := g.all[uid]
	return e, ok
}
