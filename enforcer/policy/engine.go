package policy

import (
	"fmt"
	"slices"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// Engine decides hops with a policy set over the entities of a directory.
// It is immutable and safe for concurrent use; reload by building a new one.
//
// Everything a decision needs that does not depend on the hop is prepared
// once, when the engine is built: each identity's Cedar entity and uid, the
// policies that can apply to it as principal and as resource, and which
// combinations of principal type, action and resource type the schema
// accepts.
type Engine struct {
	set      *Set
	entities types.EntityMap
	// subjects are the prepared entities by id: in a directory an id names
	// one identity. (Where one id has several types, one of them is kept
	// and the others are prepared per decision, like strangers.)
	subjects map[types.String]*subject
	actions  map[schemas.Action]*action
	// kinds numbers the entity types requests are known to use, for the
	// schema table of each action.
	kinds map[types.EntityType]int
	// dense caches index.typeMask per term and entity type.
	dense [terms]map[types.EntityType]bitset
}

// subject is a principal or resource as the engine knows it.
type subject struct {
	uid    types.EntityUID
	entity types.Entity
	known  bool // entity is in the engine's entities
	kind   int  // in Engine.kinds, -1 when unknown
	// as holds its candidates as principal and as resource.
	as [terms]scope
	// attrs are its entity's attributes the guards read (index.attrs).
	attrs []val
}

// action is an action as the engine knows it.
type action struct {
	uid types.EntityUID
	// candidates is a dense set: actions are few.
	candidates bitset
	// typed[principal kind*len(kinds)+resource kind] is
	// and(principal.dense, candidates, resource.dense) for those kinds.
	typed []sparse
	// valid[principal kind*len(kinds)+resource kind] is true when a request
	// of those types with a context record built by Context.record matches
	// the schema. Whether it does depends only on these types: the record
	// has the same attributes of the same types for every hop.
	valid []bool
}

// NewEngine builds the Cedar entities of every identity in dir, validates
// them against the schema and returns an engine over set. The error names
// the first entity that does not match the schema.
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
	return newEngine(set, entities), nil
}

// newEngine prepares an engine over entities, which it does not validate.
func newEngine(set *Set, entities types.EntityMap) *Engine {
	e := &Engine{
		set:      set,
		entities: entities,
		subjects: make(map[types.String]*subject, len(entities)),
		actions:  map[schemas.Action]*action{},
		kinds:    map[types.EntityType]int{},
	}
	for t := range terms {
		e.dense[t] = map[types.EntityType]bitset{}
	}
	kinds := []types.EntityType{types.EntityType(schemas.TypeUser), types.EntityType(schemas.TypeAgent),
		types.EntityType(schemas.TypeTool), types.EntityType(schemas.TypeModel)}
	for u := range entities {
		if !slices.Contains(kinds, u.Type) {
			kinds = append(kinds, u.Type)
		}
	}
	for i, k := range kinds {
		e.kinds[k] = i
		e.denseMask(principalTerm, k)
		e.denseMask(resourceTerm, k)
	}
	for u := range entities {
		if prev, dup := e.subjects[u.ID]; !dup || u.Type < prev.uid.Type {
			e.subjects[u.ID] = e.newSubject(u)
		}
	}
	names := []schemas.Action{schemas.ActionInvoke, schemas.ActionCallTool, schemas.ActionCallModel}
	for u := range set.index.terms[actionTerm].byEntity {
		if u.Type == "Action" && !slices.Contains(names, schemas.Action(u.ID)) {
			names = append(names, schemas.Action(u.ID))
		}
	}
	probe := (&Context{}).record()
	for _, name := range names {
		a := e.newAction(name)
		a.valid = make([]bool, len(kinds)*len(kinds))
		a.typed = make([]sparse, len(kinds)*len(kinds))
		for pi, pk := range kinds {
			for ri, rk := range kinds {
				req := types.Request{Principal: types.EntityUID{Type: pk}, Action: a.uid, Resource: types.EntityUID{Type: rk}, Context: probe}
				a.valid[pi*len(kinds)+ri] = set.validator.Request(req) == nil
				a.typed[pi*len(kinds)+ri] = and(e.dense[principalTerm][pk], a.candidates, e.dense[resourceTerm][rk])
			}
		}
		e.actions[name] = a
	}
	return e
}

// denseMask is index.typeMask, cached.
func (e *Engine) denseMask(t term, typ types.EntityType) bitset {
	if m, ok := e.dense[t][typ]; ok {
		return m
	}
	m := e.set.index.typeMask(t, typ)
	e.dense[t][typ] = m
	return m
}

func (e *Engine) newSubject(u types.EntityUID) *subject {
	s := &subject{uid: u, kind: -1}
	s.entity, s.known = e.entities[u]
	s.attrs = entityAttrs(s.entity, s.known, e.set.index.attrs)
	if k, ok := e.kinds[u.Type]; ok {
		s.kind = k
	}
	up := ancestors(e.entities, u)
	for _, t := range []term{principalTerm, resourceTerm} {
		dense, ok := e.dense[t][u.Type]
		if !ok {
			dense = e.set.index.typeMask(t, u.Type)
		}
		s.as[t] = scope{dense: dense, named: e.set.index.namedMask(t, u, up)}
	}
	return s
}

func (e *Engine) newAction(name schemas.Action) *action {
	u := types.NewEntityUID("Action", types.String(name))
	dense, ok := e.dense[actionTerm][u.Type]
	if !ok {
		dense = e.set.index.typeMask(actionTerm, u.Type)
	}
	candidates := slices.Clone(dense)
	for _, w := range e.set.index.namedMask(actionTerm, u, ancestors(e.entities, u)) {
		candidates[w.at] |= w.bits
	}
	return &action{uid: u, candidates: candidates}
}

// subject returns the prepared subject of an identity; one the engine was
// not built with (a stranger to its directory) is prepared on the spot.
func (e *Engine) subject(id *broker.Identity) *subject { return e.subjectOf(uid(id)) }

func (e *Engine) subjectOf(u types.EntityUID) *subject {
	if s, ok := e.subjects[u.ID]; ok && s.uid.Type == u.Type {
		return s
	}
	return e.newSubject(u)
}

func (e *Engine) action(name schemas.Action) *action {
	if a, ok := e.actions[name]; ok {
		return a
	}
	return e.newAction(name)
}

// typed is and(p.as[principalTerm].dense, a.candidates, r.as[resourceTerm].dense).
func (e *Engine) typed(p *subject, a *action, r *subject) sparse {
	if a.typed != nil && p.kind >= 0 && r.kind >= 0 {
		return a.typed[p.kind*len(e.kinds)+r.kind]
	}
	return and(p.as[principalTerm].dense, a.candidates, r.as[resourceTerm].dense)
}

// matchesSchema reports whether the request of these subjects and action
// is known to match the schema without validating it again.
func (e *Engine) matchesSchema(p *subject, a *action, r *subject) bool {
	return a.valid != nil && p.kind >= 0 && r.kind >= 0 && a.valid[p.kind*len(e.kinds)+r.kind]
}

// uid is an identity's Cedar entity uid: its type and its id, or for a
// tool of an MCP server its "<server>/<tool>" (Identity.ResourceID).
func uid(id *broker.Identity) types.EntityUID {
	return types.EntityUID{Type: types.EntityType(id.Type), ID: types.String(id.ResourceID())}
}
