package policy

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/tollgate/tollgate/schemas"
)

// guardSeeds are conditions at the edges of what the guards compute:
// entity attributes of every type (the fuzz entities give each attribute
// a value of any type), overflow at the boundaries, equality across
// types, like with escapes, contains with arguments of other types, and
// what short-circuits past an error.
var guardSeeds = []string{
	`principal.n * -1 > 0`,
	`-principal.n < 0`,
	`principal.n + 1 > principal.n`,
	`principal.n - 1 < resource.n`,
	`principal.n * resource.n >= 0`,
	`principal.n * principal.n > 0`,
	`principal.n * 3 > 0`,
	`principal.n + principal.n > 0`,
	`principal.n - resource.n > 0`,
	`principal.u like "e*"`,
	`principal.tags.contains(principal.u)`,
	`context.ancestry.contains(principal.n)`,
	`context.taint_sources.contains(principal.b)`,
	`context.ancestry.contains(principal.x)`,
	`-(-9223372036854775807 - 1) > 0`,
	`context.tokens_so_far * context.tokens_so_far > 0`,
	`context.tokens_so_far - 9223372036854775807 < 0`,
	`context.depth - 9223372036854775807 - 2 < 0`,
	`principal.d == decimal("1.0")`,
	`principal.d.lessThan(resource.d)`,
	`principal.d.greaterThanOrEqual(decimal("-922337203685477.5808"))`,
	`principal.n == principal.d`,
	`principal.n == 1`,
	`principal.u == resource.u`,
	`principal.u == "e1"`,
	`principal.u == User::"e1"`,
	`principal.r == resource.r`,
	`principal.r has team`,
	`principal.s like "a\*b"`,
	`principal.s like "*"`,
	`principal.s like "a*"`,
	`principal.s == resource.s`,
	`principal.tags.contains(principal.n)`,
	`principal.x.contains(resource.x)`,
	`context.ancestry.contains(principal.u)`,
	`context.taint_sources.contains(principal.s)`,
	`context.ancestry.contains(principal.team)`,
	`principal.x.contains(1)`,
	`principal.ip == resource.ip`,
	`principal.dt < resource.dt`,
	`principal.dur == resource.dur`,
	`principal.b`,
	`!principal.b`,
	`principal.b || principal.nosuch`,
	`principal.b && resource.b`,
	`if principal.b then principal.n else 0 > 1`,
	`if principal.b then context.ancestry.contains("e1") else resource.b`,
	`principal has n`,
	`!(resource has d)`,
	`principal.d == resource.d`,
	`context.cost_so_far == decimal("0.0")`,
	`principal has n && principal.n > 0`,
	`resource has n || resource.n == 0`,
	`principal has d && principal.d.lessThan(decimal("1.5"))`,
	`context.cost_so_far == principal.d`,
	`context.cost_so_far.lessThan(principal.d)`,
	`context.depth == principal.n`,
	`context.workflow == principal.s`,
	`context.run_id like "r\\*"`,
	`context.is_cycle == principal.b`,
	`principal.team == resource.team && principal.b`,
	`principal.team != "t1" || resource.n < 0`,
	`principal.nosuch == 1 || true`,
	`true || principal.nosuch`,
	`false && principal.nosuch`,
	`context.depth > 1 && principal.n * 2 > 0`,
}

// fuzzValues are the values an attribute of a fuzz entity can take: of
// every type, at the edges of their ranges.
func fuzzValues() []types.Value {
	d1, _ := types.ParseDecimal("1.0")
	dmin, _ := types.ParseDecimal("-922337203685477.5808")
	dmax, _ := types.ParseDecimal("922337203685477.5807")
	ip, _ := types.ParseIPAddr("10.0.0.1")
	ip6, _ := types.ParseIPAddr("::1")
	return []types.Value{
		types.Long(0), types.Long(1), types.Long(-1), types.Long(2),
		types.Long(math.MinInt64), types.Long(math.MaxInt64), types.Long(math.MinInt64 / 2), types.Long(3), types.Long(math.MaxInt64 / 2),
		d1, dmin, dmax,
		types.String("a*b"), types.String("ab"), types.String("e1"), types.String("t1"), types.String(""), types.String(`a\b`),
		types.Boolean(true), types.Boolean(false),
		types.NewEntityUID("User", "e1"), types.NewEntityUID("Agent", "e2"),
		types.NewRecord(types.RecordMap{"team": types.String("t1")}), types.NewRecord(types.RecordMap{}),
		types.NewSet(types.String("x"), types.Long(1)), types.NewSet(), types.NewSet(types.String("e1"), types.NewEntityUID("User", "e1")),
		ip, ip6,
		types.NewDatetimeFromMillis(0), types.NewDatetimeFromMillis(1_700_000_000_000),
		types.NewDuration(time.Hour), types.NewDurationFromMillis(-1),
	}
}

// fuzzEntities draws entities as gen.entities does, with attributes of
// any type besides team and tags.
func (g *gen) fuzzEntities(values []types.Value) types.EntityMap {
	m := g.entities()
	for u, e := range m {
		if u.Type == "Action" || g.rng.IntN(5) == 0 {
			continue
		}
		rec := types.RecordMap{}
		for k, v := range e.Attributes.All() {
			rec[k] = v
		}
		for _, name := range []types.String{"n", "d", "s", "b", "u", "r", "x", "ip", "dt", "dur", "team"} {
			if g.rng.IntN(3) == 0 {
				continue
			}
			v := values[g.rng.IntN(len(values))]
			// Mostly of the type its name says, so that the guards
			// compute, now and then of another.
			for range 8 {
				if g.rng.IntN(4) == 0 || fuzzType(name, v) {
					break
				}
				v = values[g.rng.IntN(len(values))]
			}
			rec[name] = v
		}
		e.Attributes = types.NewRecord(rec)
		m[u] = e
	}
	return m
}

// fuzzType reports whether v is of the type the fuzz entities' attribute
// name mostly holds.
func fuzzType(name types.String, v types.Value) bool {
	switch v.(type) {
	case types.Long:
		return name == "n"
	case types.Decimal:
		return name == "d"
	case types.String:
		return name == "s" || name == "team"
	case types.Boolean:
		return name == "b"
	case types.EntityUID:
		return name == "u"
	case types.Record:
		return name == "r"
	case types.Set:
		return name == "x"
	case types.IPAddr:
		return name == "ip"
	case types.Datetime:
		return name == "dt"
	case types.Duration:
		return name == "dur"
	}
	return false
}

// fuzzContext is gen.context with the longs at their edges now and then.
func (g *gen) fuzzContext() Context {
	c := g.context()
	edges := []int64{math.MinInt64, math.MaxInt64, -1, 0}
	switch g.rng.IntN(8) {
	case 0:
		c.TokensSoFar = edges[g.rng.IntN(len(edges))]
	case 1:
		c.Depth = int(edges[g.rng.IntN(len(edges))])
	case 2:
		c.EdgeCalls = int(edges[g.rng.IntN(len(edges))])
	case 3:
		c.CostSoFar = -c.CostSoFar
	}
	return c
}

// FuzzGuardsMatchCedar holds the guards to Cedar: a small random policy
// set (generated, with up to two conditions from the fuzz input, which
// may be any Cedar text), random entities whose attributes take values of
// every type, and random requests; the candidates' decision, deciding
// policies and errors must be those of Cedar over every policy with the
// whole context record, and each guard's verdict must hold for its policy
// alone (checkGuards).
func FuzzGuardsMatchCedar(f *testing.F) {
	for i, c := range guardSeeds {
		f.Add(uint64(i), c, "")
		f.Add(uint64(i+100), "context.depth > 1", c)
	}
	f.Add(uint64(7), `context.tainted`, `principal.n > 0`)
	v, err := newValidator()
	if err != nil {
		f.Fatal(err)
	}
	values := fuzzValues()
	f.Fuzz(func(t *testing.T, seed uint64, c1, c2 string) {
		if len(c1) > 300 || len(c2) > 300 {
			return
		}
		g := newGen(seed, true)
		ps := cedar.NewPolicySet()
		var src strings.Builder
		fuzzed := []string{c1, c2}
		for i := range 2 + g.rng.IntN(6) {
			text := g.policy()
			if i < len(fuzzed) && fuzzed[i] != "" {
				var b strings.Builder
				if g.rng.IntN(2) == 0 { // a scope that matches every request: the guard decides alone
					fmt.Fprintf(&b, "%s (principal, action, resource)", g.pick("permit", "forbid"))
				} else {
					fmt.Fprintf(&b, "%s (%s, %s, %s)", g.pick("permit", "forbid"), g.scope("principal"), g.actionScope(), g.scope("resource"))
				}
				if g.rng.IntN(3) == 0 {
					fmt.Fprintf(&b, " %s { %s }", g.pick("when", "unless"), g.condition())
				}
				fmt.Fprintf(&b, " %s { %s }", g.pick("when", "unless"), fuzzed[i])
				if g.rng.IntN(3) == 0 {
					fmt.Fprintf(&b, " %s { %s }", g.pick("when", "unless"), g.condition())
				}
				b.WriteString(";")
				text = b.String()
			}
			list, err := cedar.NewPolicyListFromBytes("fuzz.cedar", []byte(text))
			if err != nil || len(list) != 1 {
				continue
			}
			id := cedar.PolicyID(fmt.Sprintf("p%02d", i))
			fmt.Fprintf(&src, "%s: %s\n", id, text)
			ps.Add(id, list[0])
		}
		set := &Set{policies: ps, index: newIndex(ps), validator: v}
		entities := g.fuzzEntities(values)
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
			if len(uids) == 0 || g.rng.IntN(6) == 0 {
				return types.NewEntityUID(types.EntityType(g.typ()), types.String(g.pick(append(g.ids, "zz")...)))
			}
			return uids[g.rng.IntN(len(uids))]
		}
		cov := coverage{}
		for range 8 {
			p, res := e.subjectOf(someone()), e.subjectOf(someone())
			a := e.action(schemas.Action(g.pick("invoke", "call_tool", "call_model", "delegate", "all")))
			ctx := g.fuzzContext()
			checkGuards(t, int(seed), e, p, a, res, ctx, cov)
			got, gotDiag := e.authorize(p, a, res, &ctx, nil)
			want, wantDiag := cedar.Authorize(ps, entities, types.Request{Principal: p.uid, Action: a.uid, Resource: res.uid, Context: ctx.scanRecord()})
			if got != want || !slices.Equal(reasonIDs(gotDiag), reasonIDs(wantDiag)) || !slices.Equal(errorTexts(gotDiag), errorTexts(wantDiag)) {
				t.Fatalf("%s %s %s %+v\n got %v %v %v\nwant %v %v %v\npolicies:\n%sentities: %v", p.uid, a.uid, res.uid, ctx,
					got, reasonIDs(gotDiag), errorTexts(gotDiag), want, reasonIDs(wantDiag), errorTexts(wantDiag), src.String(), entities)
			}
		}
	})
}
