package policy

import (
	"iter"
	"math"
	"math/bits"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// The policy index: which policies can apply to a request, from their
// scopes alone.
//
// Cedar evaluates a policy as principal-scope && action-scope &&
// resource-scope && conditions, left to right and short-circuiting, and a
// scope test never fails to evaluate (it compares entity uids and types
// and walks the entity hierarchy). So a policy whose scope does not match
// the request is false without an error, and leaving it out changes
// neither the decision, nor the deciding policies, nor the errors. The
// index files each policy under each scope term, and a request takes, per
// term, the union of what can match it:
//
//	unconstrained           every request
//	== E, in E, is T in E   requests whose entity is E or has E as an ancestor
//	in [E1, E2, …] (action) requests whose action is, or descends from, an Ei
//	is T                    requests whose entity has type T
//	anything else           every request (never dropped)
//
// The candidates are the intersection over principal, action and resource:
// a superset of the policies whose scope matches, each evaluated whole by
// Cedar (scope and conditions). `when` and `unless` clauses are never
// looked at by the index.

// term is one of the three scope terms of a policy.
type term int

const (
	principalTerm term = iota
	actionTerm
	resourceTerm
	terms
)

// bitset is a dense set of policy positions, index.words long.
type bitset []uint64

func (b bitset) add(i int) { b[i/64] |= 1 << (i % 64) }

func (b bitset) or(o bitset) {
	for w := range b {
		b[w] |= o[w]
	}
}

// sparse is a set of policy positions stored as its non-zero words, in
// ascending word order: most entities are named by few policies.
type sparse []sparseWord

type sparseWord struct {
	at   int
	bits uint64
}

func sparseOf(positions []int) sparse {
	slices.Sort(positions)
	var s sparse
	for _, p := range positions {
		at, bit := p/64, uint64(1)<<(p%64)
		if n := len(s); n > 0 && s[n-1].at == at {
			s[n-1].bits |= bit
			continue
		}
		s = append(s, sparseWord{at: at, bits: bit})
	}
	return s
}

// union merges sparse sets.
func union(sets ...sparse) sparse {
	var out sparse
	for _, s := range sets {
		out = mergeSparse(out, s)
	}
	return out
}

func mergeSparse(a, b sparse) sparse {
	out := make(sparse, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].at < b[0].at:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0].at < a[0].at:
			out, b = append(out, b[0]), b[1:]
		default:
			out = append(out, sparseWord{at: a[0].at, bits: a[0].bits | b[0].bits})
			a, b = a[1:], b[1:]
		}
	}
	return out
}

// termIndex files the policies of one scope term.
type termIndex struct {
	any      bitset                      // unconstrained, or a form the index does not know
	byType   map[types.EntityType]bitset // is T
	byEntity map[types.EntityUID]sparse  // == E, in E, is T in E, in [… E …]
}

// index is a policy set in policy id order, filed by scope.
type index struct {
	ids      []cedar.PolicyID
	policies []*cedar.Policy
	reads    []contextReads  // the context attributes each policy reads
	guards   []guard         // each policy's conditions, as far as a guard decides them (guard.go)
	scopes   []*cedar.Policy // each policy without its conditions, where its guard can prove them all
	attrs    []types.String  // the entity attributes the guards read, by slot
	words    int
	terms    [terms]termIndex
}

// newIndex files the policies of a set. It never fails: a scope form it
// does not recognise is filed as unconstrained.
func newIndex(set *cedar.PolicySet) *index {
	ix := &index{}
	for id := range set.All() {
		ix.ids = append(ix.ids, id)
	}
	slices.Sort(ix.ids)
	n := len(ix.ids)
	ix.words = (n + 63) / 64
	ix.policies = make([]*cedar.Policy, n)
	ix.reads = make([]contextReads, n)
	ix.guards = make([]guard, n)
	ix.scopes = make([]*cedar.Policy, n)
	gc := &guardCompiler{}
	named := [terms]map[types.EntityUID][]int{}
	for t := range terms {
		ix.terms[t] = termIndex{any: make(bitset, ix.words), byType: map[types.EntityType]bitset{}}
		named[t] = map[types.EntityUID][]int{}
	}
	for i, id := range ix.ids {
		p := set.Get(id)
		ix.policies[i] = p
		a := (*cedarast.Policy)(p.AST())
		ix.reads[i] = readsOf(a)
		ix.guards[i] = gc.guard(a)
		if g := &ix.guards[i]; g.ok() && g.whole {
			scope := *p.AST()
			scope.Conditions = nil
			ix.scopes[i] = cedar.NewPolicyFromAST(&scope)
		}
		for t, scope := range [terms]cedarast.IsScopeNode{a.Principal, a.Action, a.Resource} {
			ti := &ix.terms[t]
			switch s := scope.(type) {
			case cedarast.ScopeTypeEq:
				named[t][s.Entity] = append(named[t][s.Entity], i)
			case cedarast.ScopeTypeIn:
				named[t][s.Entity] = append(named[t][s.Entity], i)
			case cedarast.ScopeTypeIsIn:
				named[t][s.Entity] = append(named[t][s.Entity], i)
			case cedarast.ScopeTypeInSet:
				for _, e := range s.Entities {
					if !slices.Contains(named[t][e], i) {
						named[t][e] = append(named[t][e], i)
					}
				}
			case cedarast.ScopeTypeIs:
				b := ti.byType[s.Type]
				if b == nil {
					b = make(bitset, ix.words)
					ti.byType[s.Type] = b
				}
				b.add(i)
			default: // ScopeTypeAll, or a form this index does not know
				ti.any.add(i)
			}
		}
	}
	ix.attrs = gc.attrs
	for t := range terms {
		ix.terms[t].byEntity = make(map[types.EntityUID]sparse, len(named[t]))
		for e, positions := range named[t] {
			ix.terms[t].byEntity[e] = sparseOf(positions)
		}
	}
	return ix
}

// typeMask is the dense part of a term's candidates for an entity of type
// typ: the unconstrained policies and those with `is typ`.
func (ix *index) typeMask(t term, typ types.EntityType) bitset {
	ti := &ix.terms[t]
	b, ok := ti.byType[typ]
	if !ok {
		return ti.any
	}
	m := slices.Clone(ti.any)
	m.or(b)
	return m
}

// namedMask is the sparse part of a term's candidates for an entity: the
// policies naming it or one of its ancestors.
func (ix *index) namedMask(t term, uid types.EntityUID, ancestors []types.EntityUID) sparse {
	byEntity := ix.terms[t].byEntity
	sets := []sparse{byEntity[uid]}
	for _, a := range ancestors {
		sets = append(sets, byEntity[a])
	}
	return union(sets...)
}

// ancestors lists every entity uid is in through the hierarchy of
// entities, as Cedar's `in` walks it: the parents of uid, their parents
// (for those that are entities too), and so on.
func ancestors(entities types.EntityGetter, uid types.EntityUID) []types.EntityUID {
	var out []types.EntityUID
	seen := map[types.EntityUID]bool{uid: true}
	todo := []types.EntityUID{uid}
	for len(todo) > 0 {
		e, ok := entities.Get(todo[len(todo)-1])
		todo = todo[:len(todo)-1]
		if !ok {
			continue
		}
		for p := range e.Parents.All() {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
				todo = append(todo, p)
			}
		}
	}
	return out
}

// scope is the candidates of a principal or resource: dense by type,
// sparse by name.
type scope struct {
	dense bitset
	named sparse
}

// and is the set of positions in every one of the dense sets, sparse.
func and(sets ...bitset) sparse {
	var out sparse
	for w := range sets[0] {
		m := sets[0][w]
		for _, s := range sets[1:] {
			m &= s[w]
		}
		if m != 0 {
			out = append(out, sparseWord{at: w, bits: m})
		}
	}
	return out
}

// collect appends to dst, in order, the positions of the policies that can
// match a request whose principal and resource have candidates p and r and
// whose action has the dense candidates a. typed must be and(p.dense, a,
// r.dense): the words where neither p nor r has named candidates come from
// it alone.
func collect(dst []int32, typed sparse, p *scope, a bitset, r *scope) []int32 {
	pn, rn := p.named, r.named
	for len(typed) > 0 || len(pn) > 0 || len(rn) > 0 {
		w := math.MaxInt
		for _, s := range [...]sparse{typed, pn, rn} {
			if len(s) > 0 && s[0].at < w {
				w = s[0].at
			}
		}
		var m uint64
		if len(typed) > 0 && typed[0].at == w {
			m = typed[0].bits
			typed = typed[1:]
		}
		named := false
		pw, rw := p.dense[w], r.dense[w]
		if len(pn) > 0 && pn[0].at == w {
			pw |= pn[0].bits
			pn, named = pn[1:], true
		}
		if len(rn) > 0 && rn[0].at == w {
			rw |= rn[0].bits
			rn, named = rn[1:], true
		}
		if named {
			m = pw & a[w] & rw
		}
		for ; m != 0; m &= m - 1 {
			dst = append(dst, int32(w*64+bits.TrailingZeros64(m)))
		}
	}
	return dst
}

// scopeOnlyBit marks a position whose policy Cedar evaluates without its
// conditions (index.scopes). Positions stay below it: a set of a billion
// policies is not compiled.
const scopeOnlyBit = 1 << 30

// refine applies the guards to positions, in place: it removes the
// policies their guard excludes for the request of f, and marks with
// scopeOnlyBit those whose conditions it proves.
func (ix *index) refine(positions []int32, f *facts) []int32 {
	kept := positions[:0]
	for _, i := range positions {
		if g := &ix.guards[i]; g.ok() {
			switch g.verdict(f) {
			case exclude:
				continue
			case scopeOnly:
				i |= scopeOnlyBit
			}
		}
		kept = append(kept, i)
	}
	return kept
}

// readsAll is the union of the context attributes read by the policies
// at positions (none for a scope alone).
func (ix *index) readsAll(positions []int32) contextReads {
	var r contextReads
	for _, i := range positions {
		if i&scopeOnlyBit == 0 {
			r |= ix.reads[i]
		}
	}
	return r
}

// candidates is a cedar.PolicyIterator over the policies at positions.
// Recycled between decisions (see candidatePool), it builds its iterator
// once.
type candidates struct {
	ix        *index
	positions []int32
	seq       iter.Seq2[cedar.PolicyID, *cedar.Policy]
	// entities is the decision's entity getter, and facts what its guards
	// read, kept here to be recycled too.
	entities requestEntities
	facts    facts
}

func newCandidates() *candidates {
	c := &candidates{}
	c.seq = c.each
	return c
}

// All yields the candidate policies in policy id order, a policy whose
// guard proves its conditions as its scope alone.
func (c *candidates) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] { return c.seq }

func (c *candidates) each(yield func(cedar.PolicyID, *cedar.Policy) bool) {
	for _, i := range c.positions {
		p := c.ix.policies[i&^scopeOnlyBit]
		if i&scopeOnlyBit != 0 {
			p = c.ix.scopes[i&^scopeOnlyBit]
		}
		if !yield(c.ix.ids[i&^scopeOnlyBit], p) {
			return
		}
	}
}
