package policy

import (
	"fmt"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// Context is what the gateway knows about a hop; it becomes the Cedar
// context record (see HopContext in the Cedar schema).
type Context struct {
	RunID       string
	Workflow    string
	Depth       int
	Ancestry    []string
	OnBehalfOf  string
	IsCycle     bool
	HopsSoFar   int
	TokensSoFar int64
	CostSoFar   float64
	EdgeCalls   int
	Tainted     bool
}

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
	// Errors lists policies that failed to evaluate; any makes it a deny.
	Errors []string
}

// Engine decides hops with a policy set over the entities of a directory.
// It is immutable and safe for concurrent use; reload by building a new one.
type Engine struct {
	set      *Set
	entities types.EntityMap
}

// NewEngine builds the Cedar entities of every identity in dir, validates
// them against the schema and returns an engine over set.
func NewEngine(set *Set, dir *broker.Directory) (*Engine, error) {
	entities := types.EntityMap{}
	for _, id := range dir.All() {
		e := types.Entity{
			UID: uid(id),
			Attributes: types.NewRecord(types.RecordMap{
				"team": types.String(id.Team),
				"tags": stringSet(id.Tags),
			}),
		}
		if err := set.validator.Entity(e); err != nil {
			return nil, fmt.Errorf("entity %s: %w", e.UID, err)
		}
		entities[e.UID] = e
	}
	return &Engine{set: set, entities: entities}, nil
}

// Set returns the engine's policy set.
func (e *Engine) Set() *Set { return e.set }

// Decide evaluates a request. Default deny: without a permit the answer is
// no; any forbid wins; any evaluation error is a deny naming the policy.
func (e *Engine) Decide(r Request) Decision {
	req := types.Request{
		Principal: uid(r.Principal),
		Action:    types.NewEntityUID("Action", types.String(r.Action)),
		Resource:  uid(r.Resource),
		Context:   r.Context.record(),
	}
	if err := e.set.validator.Request(req); err != nil {
		return Decision{Errors: []string{"request does not match the schema: " + err.Error()}}
	}
	decision, diag := cedar.Authorize(e.set.policies, e.entities, req)
	var d Decision
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

func uid(id *broker.Identity) types.EntityUID {
	return types.NewEntityUID(types.EntityType(id.Type), types.String(id.ID))
}

func stringSet(ss []string) types.Set {
	vals := make([]types.Value, len(ss))
	for i, s := range ss {
		vals[i] = types.String(s)
	}
	return types.NewSet(vals...)
}

func (c Context) record() types.Record {
	cost, err := types.NewDecimalFromFloat(c.CostSoFar)
	if err != nil { // beyond decimal's range: saturate, it only grows
		cost, _ = types.NewDecimal(922337203685477, 0)
	}
	return types.NewRecord(types.RecordMap{
		"run_id":        types.String(c.RunID),
		"workflow":      types.String(c.Workflow),
		"depth":         types.Long(c.Depth),
		"ancestry":      stringSet(c.Ancestry),
		"on_behalf_of":  types.String(c.OnBehalfOf),
		"is_cycle":      types.Boolean(c.IsCycle),
		"hops_so_far":   types.Long(c.HopsSoFar),
		"tokens_so_far": types.Long(c.TokensSoFar),
		"cost_so_far":   cost,
		"edge_calls":    types.Long(c.EdgeCalls),
		"tainted":       types.Boolean(c.Tainted),
	})
}
