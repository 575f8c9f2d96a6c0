package policy

import (
	"math"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

func TestReadsOf(t *testing.T) {
	attrs := func(names ...string) contextReads {
		var r contextReads
		for _, n := range names {
			r |= contextAttr(types.String(n))
		}
		return r
	}
	cases := []struct {
		name, when string
		want       contextReads
	}{
		{"no context", `principal.team == "a"`, 0},
		{"one attribute", `context.depth > 2`, attrs("depth")},
		{"has", `context has tainted`, attrs("tainted")},
		{"several, nested", `if context.is_cycle then context.edge_calls < 1 else context.ancestry.contains(principal.team)`, attrs("is_cycle", "edge_calls", "ancestry")},
		{"unless", `unless { context.cost_so_far.greaterThan(decimal("1.0")) }`, attrs("cost_so_far")},
		{"attribute the record does not have", `context.weather == 1`, 0},
		{"whole context", `context == {"depth": 1}`, wholeContext},
		{"whole context in a set", `[context].contains(context)`, wholeContext},
		{"a named attribute of something else", `principal.depth == context.depth`, attrs("depth")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := `permit (principal, action, resource) when { ` + tc.when + ` };`
			if strings.HasPrefix(tc.when, "unless") {
				src = `permit (principal, action, resource) ` + tc.when + `;`
			}
			list, err := cedar.NewPolicyListFromBytes("t.cedar", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if got := readsOf((*cedarast.Policy)(list[0].AST())); got != tc.want {
				t.Fatalf("reads %b, want %b", got, tc.want)
			}
		})
	}
}

// TestContextRecord: the record built an attribute at a time is the one
// the schema validates, equal to the record as it was built before.
func TestContextRecord(t *testing.T) {
	v, err := newValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Context{
		{},
		{RunID: "r", Workflow: "w", Depth: 3, Ancestry: []string{"a", "b", "a"}, OnBehalfOf: "u", IsCycle: true,
			HopsSoFar: 9, TokensSoFar: 1 << 40, CostSoFar: 2.5, EdgeCalls: 1, Tainted: true,
			TaintSources: []string{"ingress", "untrusted:search"}, QuotaUsed: func() int64 { return 87 }},
		{CostSoFar: math.Inf(1), HopsSoFar: math.MaxInt64},
		{CostSoFar: math.NaN()},
	} {
		if got, want := c.record(), c.scanRecord(); !got.Equal(want) {
			t.Errorf("record %v, want %v", got, want)
		}
		req := types.Request{Principal: types.NewEntityUID("Agent", "a"), Action: types.NewEntityUID("Action", "invoke"),
			Resource: types.NewEntityUID("Agent", "b"), Context: c.record()}
		if err := v.Request(req); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
		if r := c.recordOf(0); r.Len() != 0 {
			t.Errorf("no attribute read, record %v", r)
		}
		depth, _ := c.recordOf(contextAttr("depth")).Get("depth")
		if r := c.recordOf(contextAttr("depth")); r.Len() != 1 || !depth.Equal(types.Long(c.Depth)) {
			t.Errorf("depth only: record %v", r)
		}
	}
}
