package policy

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// TestGuardsNarrowTheCandidates checks what the guards are for, on the
// benchmark's fixture (1,000 agents, 2,000 policies): of the ~10 policies
// whose scope can match a hop, those whose conditions are false are left
// out, and those whose conditions are true are evaluated as their scope,
// so that a hop whose forbids do not fire evaluates about one policy and
// builds no context record, and one whose forbids all fire builds none
// either. (That the guards change no decision is the differential tests'
// part.)
func TestGuardsNarrowTheCandidates(t *testing.T) {
	dir := scaleDirectory(t, 1000)
	reqs := scaleRequests(t, dir, 1000, 1024)
	set, err := Compile(scalePolicies(t, 2000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(set, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name              string
		reqs              []Request
		maxKept, maxReads float64
	}{
		{"forbids do not fire", reqs, 1.5, 0.5},
		{"forbids fire", firingRequests(reqs), 6, 0.5},
	} {
		var before, kept, scopes, reads int
		for _, r := range tc.reqs {
			p, a, res := e.subject(r.Principal), e.action(r.Action), e.subject(r.Resource)
			pos := collect(nil, e.typed(p, a, res), &p.as[principalTerm], a.candidates, &res.as[resourceTerm])
			before += len(pos)
			pos = set.index.refine(pos, &facts{ctx: r.Context, p: p, r: res})
			kept += len(pos)
			for _, i := range pos {
				if i&scopeOnlyBit != 0 {
					scopes++
				}
			}
			reads += bits.OnesCount16(uint16(set.index.readsAll(pos)))
		}
		n := float64(len(tc.reqs))
		t.Logf("%s: %.1f candidates by scope, %.1f kept (%.1f as their scope), %.2f context attributes read",
			tc.name, float64(before)/n, float64(kept)/n, float64(scopes)/n, float64(reads)/n)
		if float64(kept)/n > tc.maxKept || float64(reads)/n > tc.maxReads || float64(before)/n < 5 {
			t.Errorf("%s: the guards leave %.1f of %.1f candidates, reading %.2f attributes; want at most %.1f and %.1f",
				tc.name, float64(kept)/n, float64(before)/n, float64(reads)/n, tc.maxKept, tc.maxReads)
		}
	}
}

// TestGuardVerdict shows what a guard concludes for one policy and one
// hop (an agent research of team t1 tagged x, invoking an agent writer):
// exclude (false without an error), scopeOnly (every condition true
// without an error), or keep (Cedar decides: a clause the guard does not
// compute, or one Cedar fails on).
func TestGuardVerdict(t *testing.T) {
	entities := types.EntityMap{}
	for _, id := range []types.String{"research", "writer"} {
		u := types.NewEntityUID("Agent", id)
		entities[u] = types.Entity{UID: u, Attributes: types.NewRecord(types.RecordMap{
			"team": types.String("t1"), "tags": types.NewSet(types.String("x")),
		})}
	}
	v, err := newValidator()
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context{Depth: 2, HopsSoFar: 10, Workflow: "default", Ancestry: []string{"tomas", "research"}, CostSoFar: 1.25,
		QuotaUsed: func() int64 { return 50 }}
	tests := []struct {
		name, conditions string
		want             verdict
	}{
		{"no condition", "", keep},
		{"comparison false", "when { context.depth > 12 }", exclude},
		{"comparison true", "when { context.depth > 1 }", scopeOnly},
		{"unless true", "unless { context.depth > 1 }", exclude},
		{"&& false on its left", `when { context.tainted && principal.nosuch == 1 }`, exclude},
		{"&& true on its left, error on its right", `when { context.depth > 1 && principal.nosuch == 1 }`, keep},
		{"|| true on its left", `when { context.depth > 1 || context.weather }`, scopeOnly},
		{"missing context attribute", "when { context.weather == 1 }", keep},
		{"missing entity attribute", "when { principal.nosuch == 1 }", keep},
		{"has", "when { context has depth && !(principal has nosuch) }", scopeOnly},
		{"type error", `when { context.workflow < 3 }`, keep},
		{"different types are unequal", `when { context.depth == "2" }`, exclude},
		{"overflow", "when { context.hops_so_far + 9223372036854775800 > 0 }", keep},
		{"quota_used is left to Cedar", "when { context.quota_used > 80 }", keep},
		{"entity set", `when { principal.tags.contains("x") && resource.team == principal.team }`, scopeOnly},
		{"context set", `when { context.ancestry.contains("tomas") }`, scopeOnly},
		{"decimal", `when { context.cost_so_far.greaterThan(decimal("1.5")) }`, exclude},
		{"like", `when { context.workflow like "def*" }`, scopeOnly},
		{"if", `when { if context.depth > 1 then context.tainted else true }`, exclude},
		{"first clause false, second not computed", `when { context.depth > 12 } when { principal == Agent::"writer" }`, exclude},
		{"first clause true, second not computed", `when { context.depth > 1 } when { principal == Agent::"writer" }`, keep},
		{"first clause not computed", `when { principal == Agent::"writer" } when { context.depth > 12 }`, keep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := `forbid (principal, action, resource) ` + tc.conditions + ";"
			list, err := cedar.NewPolicyListFromBytes("t.cedar", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			ps := cedar.NewPolicySet()
			ps.Add("p", list[0])
			e := newEngine(&Set{policies: ps, index: newIndex(ps), validator: v}, entities)
			p, r := e.subjectOf(types.NewEntityUID("Agent", "research")), e.subjectOf(types.NewEntityUID("Agent", "writer"))
			got := keep
			if g := &e.set.index.guards[0]; g.ok() {
				got = g.verdict(&facts{ctx: ctx, p: p, r: r})
			}
			if got != tc.want {
				t.Errorf("%s: verdict %d, want %d", src, got, tc.want)
			}
			// And the positions Cedar is given: none, the policy, or its scope.
			positions := e.set.index.refine([]int32{0}, &facts{ctx: ctx, p: p, r: r})
			switch {
			case tc.want == exclude && len(positions) != 0,
				tc.want == keep && !slices.Equal(positions, []int32{0}),
				tc.want == scopeOnly && !slices.Equal(positions, []int32{scopeOnlyBit}):
				t.Errorf("%s: refine gives %v", src, positions)
			}
		})
	}
}

// TestGuardContextMatchesRecord holds the guards' reading of the context
// (contextAttribute) to the record Cedar is given (Context.attribute):
// the same value of the same type for every attribute but quota_used,
// which the guards leave to Cedar, at the edges of each field's range.
func TestGuardContextMatchesRecord(t *testing.T) {
	contexts := []Context{
		{},
		{RunID: "r1", Workflow: "w", Depth: 3, Ancestry: []string{"a", "b", "a"}, OnBehalfOf: "u", IsCycle: true, HopsSoFar: 7,
			TokensSoFar: 1000, CostSoFar: 1.25, EdgeCalls: 2, Tainted: true, TaintSources: []string{"ingress"}},
		{Depth: math.MinInt, HopsSoFar: math.MaxInt, TokensSoFar: math.MinInt64, EdgeCalls: -1, CostSoFar: math.NaN(), TaintSources: []string{"x"}},
		{Depth: math.MaxInt, HopsSoFar: math.MinInt, TokensSoFar: math.MaxInt64, EdgeCalls: math.MaxInt, CostSoFar: math.Inf(1), Ancestry: []string{"x"}},
		{CostSoFar: -1e300},
		{CostSoFar: 0.00005},
		{CostSoFar: 922337203685477.5807},
	}
	for i, name := range hopContext {
		get := contextAttribute(name)
		if name == "quota_used" {
			if get != nil {
				t.Errorf("the guards read quota_used, which costs a call")
			}
			continue
		}
		if get == nil {
			t.Errorf("the guards do not read context.%s", name)
			continue
		}
		for _, c := range contexts {
			want := c.attribute(i)
			got := get(&facts{ctx: c})
			var v types.Value
			switch got.kind {
			case vStrings:
				ss := c.Ancestry
				if got.n == 1 {
					ss = c.TaintSources
				}
				v = stringSet(ss)
			default:
				var ok bool
				if v, ok = got.boxed(); !ok {
					t.Fatalf("context.%s: the guard computes nothing for %+v", name, c)
				}
			}
			if !v.Equal(want) || fmt.Sprintf("%T", v) != fmt.Sprintf("%T", want) {
				t.Errorf("context.%s for %+v: the guard reads %T %v, the record holds %T %v", name, c, v, v, want, want)
			}
		}
	}
	if contextAttribute("weather") != nil {
		t.Errorf("the guards read an attribute the record does not have")
	}
}
