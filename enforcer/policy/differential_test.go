package policy

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// The differential tests: the indexed engine against Cedar evaluating every
// policy with the whole context record, on random policy sets, entities and
// requests. Seeded: a failure names its case, and reruns the same.

const diffSeed = 16

// gen draws policies, entities and requests from small pools, so that
// scopes, conditions and requests often meet.
type gen struct {
	rng   *rand.Rand
	types []string
	ids   []string
	// loose adds what the schema would refuse: a Group type with a
	// hierarchy, attributes that do not exist, the context used whole.
	loose bool
}

func newGen(seed uint64, loose bool) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(diffSeed, seed)), loose: loose,
		types: []string{"User", "Agent", "Tool", "Model"}, ids: []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"}}
	if loose {
		g.types = append(g.types, "Group")
	}
	return g
}

func (g *gen) pick(from ...string) string { return from[g.rng.IntN(len(from))] }

func (g *gen) typ() string { return g.pick(g.types...) }

// entity is an entity uid: a tool, half the time, as a tool of an MCP
// server is named (Tool::"<server>/<tool>", Identity.ResourceID).
func (g *gen) entity() string {
	typ, id := g.typ(), g.pick(g.ids...)
	if typ == "Tool" && g.rng.IntN(2) == 0 {
		id = toolResource(id)
	}
	return fmt.Sprintf("%s::%q", typ, id)
}

// toolResource is the resource name the tests give a tool of id served
// by an MCP server.
func toolResource(id string) string { return id + "/fetch" }

func (g *gen) action() string {
	names := []string{"invoke", "call_tool", "call_model"}
	if g.loose {
		names = append(names, "delegate", "all")
	}
	return fmt.Sprintf("Action::%q", g.pick(names...))
}

func (g *gen) scope(v string) string {
	switch g.rng.IntN(6) {
	case 0, 1:
		return v
	case 2:
		return v + " == " + g.entity()
	case 3:
		return v + " is " + g.typ()
	case 4:
		return v + " in " + g.entity()
	default:
		return v + " is " + g.typ() + " in " + g.entity()
	}
}

func (g *gen) actionScope() string {
	switch g.rng.IntN(5) {
	case 0, 1:
		return "action"
	case 2:
		return "action == " + g.action()
	case 3:
		return "action in " + g.action()
	default:
		return "action in [" + g.action() + ", " + g.action() + "]"
	}
}

// condition is a random condition body: on the context, on entity
// attributes, scope tests written as conditions (which an index of scopes
// must not read as scopes), and ones that fail to evaluate for some
// requests (overflow, an entity that does not exist).
func (g *gen) condition() string {
	conds := []string{
		fmt.Sprintf("context.depth > %d", g.rng.IntN(4)),
		"context.tainted",
		`context.taint_sources.contains("ingress")`,
		fmt.Sprintf("context.is_cycle && context.edge_calls < %d", g.rng.IntN(3)),
		`context.workflow == "w1"`,
		fmt.Sprintf("context.ancestry.contains(%q)", g.pick(g.ids...)),
		`context.cost_so_far.greaterThan(decimal("1.5"))`,
		"context.hops_so_far + 9223372036854775800 > 0", // overflows from 8 hops
		"context.depth * 4611686018427387904 > 0",       // overflows from depth 2
		"context has depth",
		`context.run_id like "r1*"`,
		"context.tokens_so_far >= 1000",
		fmt.Sprintf("context.on_behalf_of == %q", g.pick(g.ids...)),
		`principal.team == "t1"`,
		`resource.tags.contains("x")`,
		"principal.team == resource.team",
		"principal == " + g.entity(),
		"resource in " + g.entity(),
		"action == " + g.action(),
		"principal is " + g.typ(),
		"!context.tainted",
		`if context.is_cycle then principal.team == "t1" else context.depth < 3`,
		"true",
		"false",
		// Shapes the guards compute (guard.go): arithmetic, ||, decimals,
		// has and like on entities, sets of entity attributes.
		fmt.Sprintf("context.depth - %d < 0", g.rng.IntN(3)),
		"-context.depth > -2",
		fmt.Sprintf("context.hops_so_far <= %d", g.rng.IntN(10)),
		fmt.Sprintf("context.edge_calls * %d >= 3", g.rng.IntN(4)),
		"context.tokens_so_far + context.hops_so_far > 1500",
		"context.edge_calls * 4611686018427387904 > 0",
		fmt.Sprintf("context.tainted || context.depth > %d", g.rng.IntN(4)),
		`context.taint_sources.contains("ingress") || context.ancestry.contains("e1")`,
		`context.cost_so_far.lessThanOrEqual(decimal("0.5"))`,
		`context.cost_so_far.greaterThanOrEqual(decimal("2.0")) && !context.tainted`,
		`context.cost_so_far == decimal("1.0")`,
		`context.workflow != "default"`,
		`context.run_id like "r*a"`,
		`principal.team like "t*"`,
		"principal has team",
		"resource has tags",
		"principal.tags.contains(context.on_behalf_of)",
		"resource.tags == principal.tags",
		`if context.depth > 1 then context.tainted else principal.team == "t2"`,
		fmt.Sprintf("context.quota_used > %d", 10*g.rng.IntN(10)),
	}
	if g.loose {
		conds = append(conds,
			"context.weather == 1",
			"context == {}",
			"context has weather",
			"principal.nosuch == 1",
			"resource in principal",
			`principal in Group::"e1"`,
			"action in "+g.action(),
			// Type errors, and what short-circuits past them.
			`context.depth == "x"`,
			"context.workflow < 3",
			"context.ancestry == principal.tags",
			"context.tainted && 3",
			"!context.depth",
			"context.depth.contains(1)",
			"context.taint_sources.contains(3)",
			"resource has nosuch",
			"if context.tainted then 1 else false",
			"context.cost_so_far.greaterThan(1)",
			`decimal("bad").lessThan(context.cost_so_far)`,
			"context.depth > 1 || context.weather",
			"context.depth < 1 && context.weather == 1",
			"principal.team < 3",
			`principal.tags.contains("x") || principal.nosuch`,
		)
	}
	return g.pick(conds...)
}

func (g *gen) policy() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, %s, %s)", g.pick("permit", "forbid"), g.scope("principal"), g.actionScope(), g.scope("resource"))
	for range g.rng.IntN(3) {
		fmt.Fprintf(&b, " %s { %s }", g.pick("when", "when", "unless"), g.condition())
	}
	b.WriteString(";")
	return b.String()
}

func (g *gen) context() Context {
	c := Context{
		RunID: g.pick("r1a", "r2"), Workflow: g.pick("default", "w1"), Depth: g.rng.IntN(4),
		OnBehalfOf: g.pick(g.ids...), IsCycle: g.rng.IntN(3) == 0, HopsSoFar: g.rng.IntN(10),
		TokensSoFar: g.rng.Int64N(2000), CostSoFar: g.rng.Float64() * 3, EdgeCalls: g.rng.IntN(3), Tainted: g.rng.IntN(4) == 0,
	}
	for range g.rng.IntN(4) {
		c.Ancestry = append(c.Ancestry, g.pick(g.ids...))
	}
	if c.Tainted {
		c.TaintSources = append(c.TaintSources, g.pick("ingress", "untrusted:e1", "guardrail:exfiltration/secret"))
	}
	if g.rng.IntN(2) == 0 {
		used := g.rng.Int64N(100)
		c.QuotaUsed = func() int64 { return used }
	}
	switch g.rng.IntN(20) {
	case 0:
		c.CostSoFar = math.NaN()
	case 1:
		c.CostSoFar = math.Inf(1)
	case 2:
		c.HopsSoFar = math.MaxInt64
	}
	return c
}

func (g *gen) team() string { return g.pick("t1", "t2", "t3") }

func (g *gen) tags() []string {
	var tags []string
	for _, t := range []string{"x", "y"} {
		if g.rng.IntN(2) == 0 {
			tags = append(tags, t)
		}
	}
	return tags
}

// schemaPolicies draws n policies and keeps those the schema accepts.
func (g *gen) schemaPolicies(t *testing.T, n int) string {
	t.Helper()
	v, err := newValidator()
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for i := range n {
		src := fmt.Sprintf("@id(\"p%02d\") %s", i, g.policy())
		list, err := cedar.NewPolicyListFromBytes("gen.cedar", []byte(src))
		if err != nil {
			t.Fatalf("generated policy does not parse: %v\n%s", err, src)
		}
		if v.Policy("p", (*cedarast.Policy)(list[0].AST())) == nil {
			kept = append(kept, src)
		}
	}
	return strings.Join(kept, "\n")
}

// coverage counts what the random cases exercised, so that a generator
// that stopped producing some outcome fails the test instead of passing it
// vacuously.
type coverage map[string]int

func (c coverage) require(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if c[k] == 0 {
			t.Errorf("no case exercised %q: %v", k, c)
		}
	}
	t.Logf("coverage: %v", c)
}

// TestDecideMatchesFullScan compares Decide with the full scan it replaced
// (decideScan: every policy, the whole context record, the request
// validated each time) on random directories, schema-valid policy sets
// and requests, strangers to the directory and requests the schema refuses
// included.
func TestDecideMatchesFullScan(t *testing.T) {
	cases, requests := 1500, 30
	if testing.Short() {
		cases = 300
	}
	cov := coverage{}
	for c := range cases {
		g := newGen(uint64(c), false)
		src := g.schemaPolicies(t, 1+g.rng.IntN(30))
		set, err := Compile([]File{{Name: "gen.cedar", Src: []byte(src)}})
		if err != nil {
			t.Fatalf("case %d: %v\n%s", c, err, src)
		}
		var ids []broker.Identity
		first := []string{"User", "Agent", "Tool", "Model"} // one of each type, then any
		g.rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
		for i, id := range g.ids[:4+g.rng.IntN(len(g.ids)-3)] {
			typ := schemas.PrincipalType(g.pick("User", "Agent", "Agent", "Tool", "Model"))
			if i < len(first) {
				typ = schemas.PrincipalType(first[i])
			}
			ident := broker.Identity{ID: id, Type: typ, Team: g.team(), Tags: g.tags()}
			if typ == schemas.TypeTool && g.rng.IntN(2) == 0 {
				ident.Resource = toolResource(id) // Tool::"<server>/<tool>" in Cedar
			}
			ids = append(ids, ident)
		}
		dir, err := broker.NewDirectory(ids)
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(set, dir)
		if err != nil {
			t.Fatal(err)
		}
		// Most requests are well typed (the schema accepts them); some are
		// not, and some name strangers to the directory.
		appliesTo := map[schemas.Action][2][]schemas.PrincipalType{
			schemas.ActionInvoke:    {{schemas.TypeUser, schemas.TypeAgent}, {schemas.TypeAgent}},
			schemas.ActionCallTool:  {{schemas.TypeAgent}, {schemas.TypeTool}},
			schemas.ActionCallModel: {{schemas.TypeAgent}, {schemas.TypeModel}},
		}
		identity := func(typs []schemas.PrincipalType) *broker.Identity {
			if g.rng.IntN(10) == 0 { // a stranger: not in the directory
				typ := schemas.PrincipalType(g.typ())
				if len(typs) > 0 && g.rng.IntN(3) > 0 {
					typ = typs[g.rng.IntN(len(typs))]
				}
				return &broker.Identity{ID: "zz", Type: typ, Team: g.team()}
			}
			var fit []*broker.Identity
			for _, id := range dir.All() {
				if g.rng.IntN(20) == 0 || slices.Contains(typs, id.Type) {
					fit = append(fit, id)
				}
			}
			if len(fit) == 0 {
				fit = dir.All()
			}
			return fit[g.rng.IntN(len(fit))]
		}
		for range requests {
			action := schemas.Action(g.pick("invoke", "invoke", "invoke", "call_tool", "call_tool", "call_model", "call_model", "bogus"))
			r := Request{Principal: identity(appliesTo[action][0]), Action: action, Resource: identity(appliesTo[action][1]), Context: g.context()}
			got, want := e.Decide(r), e.decideScan(r)
			checkGuards(t, c, e, e.subject(r.Principal), e.action(r.Action), e.subject(r.Resource), r.Context, cov)
			slices.Sort(want.Errors)
			if got.Allow != want.Allow || !slices.Equal(got.PolicyIDs, want.PolicyIDs) || !slices.Equal(sorted(got.Errors), want.Errors) {
				t.Fatalf("case %d: %s %s %s %+v\n got %+v\nwant %+v\npolicies:\n%s", c, uid(r.Principal), r.Action, uid(r.Resource), r.Context, got, want, src)
			}
			cov.count(got)
			if r.Resource.Resource != "" && len(got.PolicyIDs) > 0 && len(got.Errors) == 0 {
				cov["a policy decides on a tool of a server"]++
			}
		}
	}
	cov.require(t, "allow", "forbid", "default deny", "evaluation error", "schema refusal", "a policy decides on a tool of a server",
		"guard excludes", "guard keeps", "guard excludes a forbid",
		"guard proves the conditions", "guard proves the conditions of a policy that applies")
}

// checkGuards holds every guard to Cedar, with the whole context record: a
// policy a guard excludes for a request must evaluate, alone, to false
// without an error; one whose conditions it proves must evaluate, alone,
// without an error and as its scope alone does.
func checkGuards(t *testing.T, c int, e *Engine, p *subject, a *action, r *subject, ctx Context, cov coverage) {
	t.Helper()
	ix := e.set.index
	f := &facts{ctx: ctx, p: p, r: r}
	req := types.Request{Principal: p.uid, Action: a.uid, Resource: r.uid, Context: ctx.scanRecord()}
	alone := func(pol *cedar.Policy, i int) (cedar.Decision, cedar.Diagnostic) {
		one := cedar.NewPolicySet()
		one.Add(ix.ids[i], pol)
		return cedar.Authorize(one, e.entities, req)
	}
	for i := range ix.guards {
		g := &ix.guards[i]
		if !g.ok() {
			continue
		}
		switch g.verdict(f) {
		case keep:
			cov["guard keeps"]++
		case exclude:
			cov["guard excludes"]++
			if _, diag := alone(ix.policies[i], i); len(diag.Reasons) > 0 || len(diag.Errors) > 0 {
				t.Fatalf("case %d: the guard excludes %s for %s %s %s %+v, but Cedar gives %v %v\n%s",
					c, ix.ids[i], p.uid, a.uid, r.uid, ctx, reasonIDs(diag), errorTexts(diag), ix.policies[i].MarshalCedar())
			}
			if ix.policies[i].Effect() == cedar.Forbid {
				cov["guard excludes a forbid"]++
			}
		case scopeOnly:
			got, gotDiag := alone(ix.scopes[i], i)
			want, wantDiag := alone(ix.policies[i], i)
			if got != want || !slices.Equal(reasonIDs(gotDiag), reasonIDs(wantDiag)) || len(wantDiag.Errors) > 0 {
				t.Fatalf("case %d: the guard proves the conditions of %s for %s %s %s %+v, but Cedar gives %v %v %v, its scope %v %v\n%s",
					c, ix.ids[i], p.uid, a.uid, r.uid, ctx, want, reasonIDs(wantDiag), errorTexts(wantDiag), got, reasonIDs(gotDiag), ix.policies[i].MarshalCedar())
			}
			if sc, pol := ix.scopes[i], ix.policies[i]; sc.Effect() != pol.Effect() || sc.Position() != pol.Position() ||
				!maps.Equal(sc.Annotations(), pol.Annotations()) || len(sc.AST().Conditions) != 0 {
				t.Fatalf("case %d: the scope of %s is not the policy without its conditions:\n%s\n%s", c, ix.ids[i], sc.MarshalCedar(), pol.MarshalCedar())
			}
			cov["guard proves the conditions"]++
			if len(wantDiag.Reasons) > 0 {
				cov["guard proves the conditions of a policy that applies"]++
			}
		}
	}
}

func (c coverage) count(d Decision) {
	switch {
	case d.Allow:
		c["allow"]++
	case len(d.Errors) > 0 && strings.HasPrefix(d.Errors[0], "request does not match the schema"):
		c["schema refusal"]++
	case len(d.Errors) > 0:
		c["evaluation error"]++
	case len(d.PolicyIDs) > 0:
		c["forbid"]++
	default:
		c["default deny"]++
	}
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// TestIndexMatchesFullSet compares the candidates with the full policy set
// at Cedar's level, with what the schema would refuse: entity hierarchies
// (groups, actions in action groups, cycles, parents that are not
// entities), `in` scopes that only match through them, entities without
// attributes, missing context attributes and the context used whole. The
// decision, the deciding policies and the errors must be Cedar's own over
// every policy with the whole context record.
func TestIndexMatchesFullSet(t *testing.T) {
	cases, requests := 1500, 30
	if testing.Short() {
		cases = 300
	}
	v, err := newValidator()
	if err != nil {
		t.Fatal(err)
	}
	cov := coverage{}
	for c := range cases {
		g := newGen(uint64(c), true)
		ps := cedar.NewPolicySet()
		var src strings.Builder
		for i := range 1 + g.rng.IntN(30) {
			text := g.policy()
			fmt.Fprintf(&src, "p%02d: %s\n", i, text)
			list, err := cedar.NewPolicyListFromBytes("gen.cedar", []byte(text))
			if err != nil {
				t.Fatalf("generated policy does not parse: %v\n%s", err, text)
			}
			ps.Add(cedar.PolicyID(fmt.Sprintf("p%02d", i)), list[0])
		}
		set := &Set{policies: ps, index: newIndex(ps), validator: v}
		entities := g.entities()
		e := newEngine(set, entities)
		uids := slices.Collect(func(yield func(types.EntityUID) bool) {
			for u := range entities {
				if u.Type != "Action" && !yield(u) {
					return
				}
			}
		})
		slices.SortFunc(uids, func(a, b types.EntityUID) int { return strings.Compare(a.String(), b.String()) })
		someone := func() types.EntityUID {
			if len(uids) == 0 || g.rng.IntN(6) == 0 { // not an entity, maybe named by a policy
				return types.NewEntityUID(types.EntityType(g.typ()), types.String(g.pick(append(g.ids, "zz")...)))
			}
			return uids[g.rng.IntN(len(uids))]
		}
		for range requests {
			p, res := e.subjectOf(someone()), e.subjectOf(someone())
			a := e.action(schemas.Action(g.pick("invoke", "call_tool", "call_model", "delegate", "all", "admin")))
			ctx := g.context()
			got, gotDiag := e.authorize(p, a, res, &ctx, nil)
			checkGuards(t, c, e, p, a, res, ctx, cov)
			want, wantDiag := cedar.Authorize(ps, entities, types.Request{Principal: p.uid, Action: a.uid, Resource: res.uid, Context: ctx.scanRecord()})
			if got != want || !slices.Equal(reasonIDs(gotDiag), reasonIDs(wantDiag)) || !slices.Equal(errorTexts(gotDiag), errorTexts(wantDiag)) {
				t.Fatalf("case %d: %s %s %s %+v\n got %v %v %v\nwant %v %v %v\npolicies:\n%sentities: %v", c, p.uid, a.uid, res.uid, ctx,
					got, reasonIDs(gotDiag), errorTexts(gotDiag), want, reasonIDs(wantDiag), errorTexts(wantDiag), src.String(), entities)
			}
			switch {
			case len(wantDiag.Errors) > 0:
				cov["evaluation error"]++
			case want == cedar.Allow:
				cov["allow"]++
			case len(wantDiag.Reasons) > 0:
				cov["forbid"]++
			default:
				cov["default deny"]++
			}
			for _, r := range wantDiag.Reasons {
				if sc := (*cedarast.Policy)(ps.Get(r.PolicyID).AST()).Principal; isIn(sc) && entityOfScope(sc) != p.uid {
					cov["principal in a group, through the hierarchy"]++
				}
			}
		}
	}
	cov.require(t, "allow", "forbid", "default deny", "evaluation error", "principal in a group, through the hierarchy",
		"guard excludes", "guard keeps", "guard excludes a forbid",
		"guard proves the conditions", "guard proves the conditions of a policy that applies")
}

// entities draws an entity map: identities (tools of a server among
// them) and groups, some without
// attributes, with random parents (cycles and parents that are not
// entities included), and an action hierarchy.
func (g *gen) entities() types.EntityMap {
	m := types.EntityMap{}
	var all []types.EntityUID
	for _, id := range g.ids {
		if g.rng.IntN(3) == 0 {
			continue
		}
		typ := g.typ()
		if typ == "Tool" && g.rng.IntN(2) == 0 {
			id = toolResource(id)
		}
		all = append(all, types.NewEntityUID(types.EntityType(typ), types.String(id)))
	}
	for _, u := range all {
		e := types.Entity{UID: u}
		if g.rng.IntN(5) > 0 {
			e.Attributes = types.NewRecord(types.RecordMap{"team": types.String(g.team()), "tags": stringSet(g.tags())})
		}
		var parents []types.EntityUID
		for range g.rng.IntN(3) {
			if g.rng.IntN(4) == 0 {
				parents = append(parents, types.NewEntityUID("Group", "ghost"))
			} else {
				parents = append(parents, all[g.rng.IntN(len(all))])
			}
		}
		e.Parents = types.NewEntityUIDSet(parents...)
		m[u] = e
	}
	action := func(name string, parents ...string) {
		var ps []types.EntityUID
		for _, p := range parents {
			ps = append(ps, types.NewEntityUID("Action", types.String(p)))
		}
		u := types.NewEntityUID("Action", types.String(name))
		m[u] = types.Entity{UID: u, Parents: types.NewEntityUIDSet(ps...)}
	}
	if g.rng.IntN(2) == 0 {
		action("invoke", "delegate")
		action("delegate", "all")
		action("call_tool", "all")
	}
	return m
}

func isIn(s cedarast.IsPrincipalScopeNode) bool {
	switch s.(type) {
	case cedarast.ScopeTypeIn, cedarast.ScopeTypeIsIn:
		return true
	}
	return false
}

func entityOfScope(s cedarast.IsPrincipalScopeNode) types.EntityUID {
	switch s := s.(type) {
	case cedarast.ScopeTypeIn:
		return s.Entity
	case cedarast.ScopeTypeIsIn:
		return s.Entity
	}
	return types.EntityUID{}
}

func reasonIDs(d cedar.Diagnostic) []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, string(r.PolicyID))
	}
	slices.Sort(out)
	return out
}

func errorTexts(d cedar.Diagnostic) []string {
	var out []string
	for _, e := range d.Errors {
		out = append(out, fmt.Sprintf("%s@%v: %s", e.PolicyID, e.Position, e.Message))
	}
	slices.Sort(out)
	return out
}
