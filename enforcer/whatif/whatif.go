// Package whatif re-decides a recorded run with a candidate policy set:
// would this policy have stopped last night's loop, and at which hop?
//
// Evaluate folds the run's ledger event by event. For every invoke the
// gateway decided, it rebuilds the Cedar request the enforcer made from
// the ledger alone: the entities from the attributes the decision recorded
// for caller and target (type, team, tags), the context with
// enforcer.PolicyRequest from the run's state just before the hop. It
// decides that request with the candidate set, applies the one limit check
// that depends on the policy set (a cycle is let through only by a permit
// annotated @cycle("allow")), and compares the verdict with the recorded
// one.
//
// What changes is reported per hop: an allowed hop the candidate denies
// would have been stopped there, and every hop below it would not have
// happened; a hop denied by policy that the candidate permits would have
// passed policy; a hop a limit denied that the candidate denies by policy
// would have been stopped before the limit tripped. Everything the policy
// set does not decide is kept as recorded: integrity denials (identity,
// target, parent, run, replay, malformed) and the rate limit come before
// policy; depth, edge repeats and budget are taken from the recorded run.
// The context is the recorded run's: a hop that comes after a changed hop
// is decided on the history that was recorded, not on the one the change
// would have made.
package whatif

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Options tune an evaluation.
type Options struct {
	// Identities stand in for identities whose Cedar attributes the run
	// does not record (ledgers written before decisions recorded them), and
	// complete the entities for policies that name an identity the run
	// never touched. Attributes the run recorded always win.
	Identities []broker.Identity
	// Source describes the candidate set in reports, e.g. its folder.
	Source string
}

// Change says how a hop's decision would change.
type Change string

// Changes.
const (
	// Stopped: recorded allowed, the candidate denies it. The hops below
	// it would not have happened.
	Stopped Change = "stopped"
	// Admitted: recorded denied, the candidate lets it through.
	Admitted Change = "admitted"
	// Redenied: denied either way, for another reason: by policy instead
	// of a limit (before the limit tripped), or the other way round.
	Redenied Change = "redenied"
)

// Decisions of a Verdict.
const (
	Allowed = ledger.DecisionAllowed
	Denied  = ledger.DecisionDenied
)

// Verdict is a decision with its reasons.
type Verdict struct {
	Decision string         `json:"decision"`
	Reason   schemas.Reason `json:"reason,omitempty"`
	// Limit is the limit a denial tripped (cycle, max_delegation_depth...).
	Limit string `json:"limit,omitempty"`
	// PolicyIDs are the deciding policies: the forbids of a policy denial,
	// the permits of an allow.
	PolicyIDs []string `json:"policy_ids,omitempty"`
	Message   string   `json:"message,omitempty"`
}

// Denied reports whether the verdict is a denial.
func (v *Verdict) Denied() bool { return v.Decision == Denied }

// Hop is one invoke of the run, as recorded and as the candidate decides.
type Hop struct {
	Seq      uint64 `json:"seq"`
	HopID    string `json:"hop_id"`
	ParentID string `json:"parent_hop_id,omitempty"`
	From     string `json:"from"`
	To       string `json:"to"`
	Depth    int    `json:"depth"`
	Cycle    bool   `json:"cycle,omitempty"`
	// Recorded is what the gateway decided.
	Recorded Verdict `json:"recorded"`
	// Candidate is what the candidate set decides; nil when the hop was
	// not evaluated (see Note) or would not have happened (PrunedBy).
	Candidate *Verdict `json:"candidate,omitempty"`
	Change    Change   `json:"change,omitempty"`
	// PrunedBy is the hop whose denial by the candidate means this one
	// would not have happened.
	PrunedBy string `json:"pruned_by,omitempty"`
	// Note explains a hop that was not evaluated, or what a change means.
	Note string `json:"note,omitempty"`
}

// Evaluated reports whether the candidate set decided the hop.
func (h *Hop) Evaluated() bool { return h.Candidate != nil }

// Spend is what hops that would not have happened had spent.
type Spend struct {
	Hops    int     `json:"hops"`
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
}

// Vanished is a recorded event that would not have happened.
type Vanished struct {
	Seq  uint64            `json:"seq"`
	Type schemas.EventType `json:"type"`
	// What describes it (the limit tripped, who halted).
	What string `json:"what"`
	// Because names the hop whose changed decision removes it.
	Because string `json:"because"`
}

// Report is the outcome of a what-if.
type Report struct {
	RunID  string `json:"run_id"`
	Source string `json:"source,omitempty"`
	// Policies are the ids of the candidate set.
	Policies []string `json:"policies"`
	// Decisions counts the invokes the run decided; Evaluated those the
	// candidate set decided, NotEvaluated those kept as recorded, Pruned
	// those that would not have happened.
	Decisions    int `json:"decisions"`
	Evaluated    int `json:"evaluated"`
	NotEvaluated int `json:"not_evaluated"`
	Pruned       int `json:"would_not_happen"`
	// Changed counts the hops whose decision would change.
	Changed int `json:"changed"`
	// FirstChange is the seq of the first hop that would change; 0 when
	// none would.
	FirstChange uint64 `json:"first_change,omitempty"`
	// Hops are every invoke of the run, in ledger order.
	Hops []*Hop `json:"hops"`
	// Avoided is what the hops that would not have happened (and the
	// stopped hops themselves) spent in the recorded run.
	Avoided Spend `json:"avoided"`
	// Vanished are the recorded breaches and halts that would not have
	// happened.
	Vanished []Vanished `json:"vanished,omitempty"`
}

// Changes returns the hops whose decision would change.
func (r *Report) Changes() []*Hop {
	var out []*Hop
	for _, h := range r.Hops {
		if h.Change != "" {
			out = append(out, h)
		}
	}
	return out
}

// Evaluate re-decides every invoke of a run's records (in order, from
// seq 1, as ledger.Ledger.Read returns them; verify them first) with the
// candidate policy set. It returns an error only when the records cannot
// be folded.
func Evaluate(run string, recs []ledger.Record, set *policy.Set, o Options) (*Report, error) {
	if set == nil {
		return nil, errors.New("whatif: no candidate policy set")
	}
	rep := &Report{RunID: run, Source: o.Source, Policies: set.IDs(), Hops: []*Hop{}}
	datas := make([]any, len(recs))
	c := newCast(set, o.Identities)
	for i := range recs {
		data, err := recs[i].Event.DecodeData()
		if err != nil {
			return nil, fmt.Errorf("whatif: run %s event %d: %w", run, recs[i].Event.Seq, err)
		}
		datas[i] = data
		if d, ok := data.(*schemas.HopDecision); ok && isInvoke(recs[i].Event.Type, d) {
			c.seed(d.From, d.FromType, d.FromTeam, d.FromTags)
			c.seed(d.To, d.ToType, d.ToTeam, d.ToTags)
		}
	}
	st := ledger.NewState(run)
	byID := map[string]*Hop{}
	for i, r := range recs {
		if d, ok := datas[i].(*schemas.HopDecision); ok && isInvoke(r.Event.Type, d) {
			h := &Hop{Seq: r.Event.Seq, HopID: r.Event.HopID, ParentID: d.ParentHopID, From: d.From, To: d.To, Depth: d.Depth,
				Cycle: d.Cycle, Recorded: recorded(r.Event.Type, d)}
			rep.Hops = append(rep.Hops, h)
			if _, dup := byID[h.HopID]; !dup && h.HopID != "" {
				byID[h.HopID] = h
			}
			if p := byID[h.ParentID]; p != nil && p != h && (p.Change == Stopped || p.PrunedBy != "") {
				h.PrunedBy = p.HopID
				if p.PrunedBy != "" {
					h.PrunedBy = p.PrunedBy
				}
				h.Note = "would not have happened: its ancestor " + h.PrunedBy + " would have been stopped"
			} else if err := c.decide(st, d, h); err != nil {
				return nil, fmt.Errorf("whatif: run %s hop %s: %w", run, h.HopID, err)
			}
		}
		if err := st.Apply(r); err != nil {
			return nil, fmt.Errorf("whatif: %w", err)
		}
	}
	rep.tally(recs, datas, byID)
	return rep, nil
}

func isInvoke(t schemas.EventType, d *schemas.HopDecision) bool {
	return d.Kind == schemas.KindInvoke || d.Kind == "" && t == schemas.EventHopAllowed
}

func recorded(t schemas.EventType, d *schemas.HopDecision) Verdict {
	if t == schemas.EventHopAllowed || t == schemas.EventHopPending { // a held hop was allowed, then waited
		return Verdict{Decision: Allowed, PolicyIDs: d.PolicyIDs}
	}
	v := Verdict{Decision: Denied, Reason: d.Reason, Message: d.Message}
	if d.Reason == schemas.ReasonPolicy {
		v.PolicyIDs = d.PolicyIDs
	}
	if d.Breach != nil {
		v.Limit = d.Breach.Limit
	} else if d.Reason == schemas.ReasonLoop && d.Cycle {
		v.Limit = limits.Cycle
	}
	return v
}

// decide re-decides one hop against the state before it.
func (c *cast) decide(st *ledger.State, d *schemas.HopDecision, h *Hop) error {
	rec := &h.Recorded
	if rec.Denied() {
		switch rec.Reason {
		case schemas.ReasonPolicy, schemas.ReasonLoop, schemas.ReasonDepth, schemas.ReasonBudget:
		case schemas.ReasonRate:
			h.Note = "kept: the rate limit is checked before policy, so the candidate set would not have been asked"
			return nil
		default:
			h.Note = fmt.Sprintf("kept: denied for %s, which is checked before policy", rec.Reason)
			return nil
		}
	}
	if d.Action == "" {
		h.Note = "kept: the decision records no action (the target was not resolved)"
		return nil
	}
	caller, target, missing := c.identities(d)
	if missing != "" {
		h.Note = "kept: the ledger does not record the Cedar attributes of " + missing + " (give them as identities)"
		return nil
	}
	engine, err := c.engine()
	if err != nil {
		return err
	}
	// Only the checks that read the policy set are evaluated, and they read
	// neither the limits nor the clock.
	inv := &decision.Invoke{State: st, Caller: caller, Target: target, Decision: d, Estimate: d.Estimate}
	var was *decision.Verdict
	if rec.Denied() {
		was = &decision.Verdict{Reason: rec.Reason, Message: rec.Message, PolicyIDs: rec.PolicyIDs}
		if rec.Limit != "" {
			was.Breach = &schemas.Breach{Limit: rec.Limit}
		}
	}
	g, evaluated := decision.Regovern(inv, engine, was)
	cand := &Verdict{Decision: Allowed, PolicyIDs: g.PolicyIDs}
	switch v := g.Denial; {
	case v == nil:
	case evaluated:
		cand = &Verdict{Decision: Denied, Reason: v.Reason, Limit: v.Limit(), PolicyIDs: v.PolicyIDs, Message: v.Message}
		if v.Limit() == limits.Cycle {
			cand.Message += fmt.Sprintf(", and no permit of the candidate set annotated @%s(\"allow\") lets it through", policy.CycleAnnotation)
		}
	default:
		cand = cloneVerdict(rec)
	}
	h.Candidate = cand
	switch {
	case !rec.Denied() && cand.Denied():
		h.Change = Stopped
		h.Note = "would have been stopped here"
		if len(d.Audit) > 0 {
			h.Note += " (the hop was recorded with audit findings: had its caller still been in audit mode, the denial would only have been recorded)"
		}
	case rec.Denied() && !cand.Denied():
		h.Change = Admitted
		h.Note = "would have passed policy; the limits checked after it (depth, edge repeats, budget) were not re-checked"
		if rec.Limit == limits.Cycle {
			h.Note = "a candidate permit annotated @" + policy.CycleAnnotation + "(\"allow\") would have let the cycle through; the limits checked after it (edge repeats, budget) were not re-checked"
		}
		h.Note += ", and what the hop would have done is not in the ledger"
	case rec.Denied() && (rec.Reason != cand.Reason || rec.Limit != cand.Limit):
		h.Change = Redenied
		switch {
		case cand.Reason == schemas.ReasonPolicy && rec.Limit != "":
			h.Note = "would have been denied by policy before the " + rec.Limit + " limit tripped"
		case cand.Limit != "":
			h.Note = "would have been denied by the " + cand.Limit + " limit instead, which trips a breach (the run's on_breach decides whether it halts)"
		}
	}
	return nil
}

func cloneVerdict(v *Verdict) *Verdict {
	c := *v
	c.PolicyIDs = slices.Clone(v.PolicyIDs)
	return &c
}

// tally counts the report and finds the spend and events that would not
// have happened.
func (r *Report) tally(recs []ledger.Record, datas []any, byID map[string]*Hop) {
	r.Decisions = len(r.Hops)
	gone := map[string]string{} // hop id -> the changed hop it depends on
	for _, h := range r.Hops {
		switch {
		case h.PrunedBy != "":
			r.Pruned++
			gone[h.HopID] = h.PrunedBy
		case h.Evaluated():
			r.Evaluated++
		default:
			r.NotEvaluated++
		}
		if h.Change != "" {
			r.Changed++
			if r.FirstChange == 0 {
				r.FirstChange = h.Seq
			}
		}
		if h.Change == Stopped {
			gone[h.HopID] = h.HopID
		}
		if gone[h.HopID] != "" && !h.Recorded.Denied() {
			r.Avoided.Hops++
		}
	}
	// A breach tripped by a hop that is gone, or by a denial that would be
	// a policy denial instead, would not have happened; nor would the halt
	// it caused.
	vanishedLimits := map[string]string{}
	for i, rec := range recs {
		switch d := datas[i].(type) {
		case *schemas.HopCompleted:
			if h := byID[rec.Event.HopID]; h != nil && gone[h.HopID] != "" && !h.Recorded.Denied() {
				r.Avoided.Tokens += d.Usage.Tokens()
				r.Avoided.CostUSD += d.Usage.Cost()
			}
		case *schemas.RunLimitBreached:
			because := gone[d.HopID]
			if h := byID[d.HopID]; h != nil && h.Change == Redenied && h.Candidate.Reason == schemas.ReasonPolicy {
				because = h.HopID
			}
			if because != "" && d.HopID != "" {
				r.Vanished = append(r.Vanished, Vanished{Seq: rec.Event.Seq, Type: rec.Event.Type, Because: because,
					What: fmt.Sprintf("%s tripped on %s -> %s (%s)", d.Limit, d.From, d.To, d.Action)})
				vanishedLimits[d.Limit] = because
			}
		case *schemas.RunHalted:
			if because, ok := vanishedLimits[d.Limit]; ok && d.Limit != "" && d.By == schemas.GatewayActor {
				r.Vanished = append(r.Vanished, Vanished{Seq: rec.Event.Seq, Type: rec.Event.Type, Because: because,
					What: fmt.Sprintf("run halted by the gateway (%s), cancelling %d open hops", d.Limit, len(d.OpenHops))})
			}
		}
	}
}

// cast holds the identities of the run, with the attributes the ledger
// recorded for them, and the Cedar engine over them.
type cast struct {
	set    *policy.Set
	ids    map[string]broker.Identity
	order  []string
	extra  map[string]broker.Identity
	eng    *policy.Engine
	stale  bool
	failed error
}

func newCast(set *policy.Set, extra []broker.Identity) *cast {
	c := &cast{set: set, ids: map[string]broker.Identity{}, extra: map[string]broker.Identity{}, stale: true}
	for _, id := range extra {
		if schemas.ValidPrincipalID(id.ID) && validType(id.Type) {
			c.extra[id.ID] = broker.Identity{ID: id.ID, Type: id.Type, Team: id.Team, Tags: slices.Clone(id.Tags)}
		}
	}
	return c
}

func validType(t schemas.PrincipalType) bool {
	switch t {
	case schemas.TypeUser, schemas.TypeAgent, schemas.TypeTool, schemas.TypeModel:
		return true
	}
	return false
}

// seed records the first attributes the run shows for id.
func (c *cast) seed(id string, typ schemas.PrincipalType, team string, tags []string) {
	if _, ok := c.ids[id]; ok || !schemas.ValidPrincipalID(id) || !validType(typ) {
		return
	}
	c.ids[id] = broker.Identity{ID: id, Type: typ, Team: team, Tags: slices.Clone(tags)}
	c.order = append(c.order, id)
}

// identities returns caller and target with the attributes this decision
// recorded, updating the cast when they changed during the run; missing
// names one whose attributes are unknown.
func (c *cast) identities(d *schemas.HopDecision) (caller, target *broker.Identity, missing string) {
	caller = c.resolve(d.From, d.FromType, d.FromTeam, d.FromTags)
	target = c.resolve(d.To, d.ToType, d.ToTeam, d.ToTags)
	switch {
	case caller == nil:
		return nil, nil, d.From
	case target == nil:
		return nil, nil, d.To
	}
	return caller, target, ""
}

func (c *cast) resolve(id string, typ schemas.PrincipalType, team string, tags []string) *broker.Identity {
	if !schemas.ValidPrincipalID(id) {
		return nil
	}
	if !validType(typ) {
		if x, ok := c.extra[id]; ok {
			return &x
		}
		return nil
	}
	rec := broker.Identity{ID: id, Type: typ, Team: team, Tags: slices.Clone(tags)}
	if cur, ok := c.ids[id]; !ok || cur.Type != typ || cur.Team != team || !slices.Equal(cur.Tags, tags) {
		if !ok {
			c.order = append(c.order, id)
		}
		c.ids[id] = rec
		c.stale = true
	}
	return &rec
}

// engine returns the Cedar engine over the cast as it stands.
func (c *cast) engine() (*policy.Engine, error) {
	if !c.stale {
		return c.eng, c.failed
	}
	var list []broker.Identity
	for _, id := range c.order {
		list = append(list, c.ids[id])
	}
	for id, x := range c.extra {
		if _, ok := c.ids[id]; !ok {
			list = append(list, x)
		}
	}
	slices.SortFunc(list[len(c.order):], func(a, b broker.Identity) int { return strings.Compare(a.ID, b.ID) })
	c.stale = false
	dir, err := broker.NewDirectory(list)
	if err != nil {
		c.eng, c.failed = nil, fmt.Errorf("entities of the run: %w", err)
		return nil, c.failed
	}
	c.eng, c.failed = policy.NewEngine(c.set, dir)
	if c.failed != nil {
		c.failed = fmt.Errorf("entities of the run: %w", c.failed)
	}
	return c.eng, c.failed
}
