package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/schemas"
)

// scaleDirectory registers agents agents in 50 teams, with 20 tools, 10
// models and 10 users beside them. Every tenth agent is tagged "entry",
// every hundredth "orchestrator".
func scaleDirectory(tb testing.TB, agents int) *broker.Directory {
	tb.Helper()
	var ids []broker.Identity
	team := func(i int) string { return fmt.Sprintf("team-%d", i%50) }
	for i := range agents {
		var tags []string
		if i%10 == 0 {
			tags = append(tags, "entry")
		}
		if i%100 == 0 {
			tags = append(tags, "orchestrator")
		}
		ids = append(ids, broker.Identity{ID: fmt.Sprintf("a%d", i), Type: schemas.TypeAgent, Team: team(i), Tags: tags})
	}
	for i := range 20 {
		ids = append(ids, broker.Identity{ID: fmt.Sprintf("t%d", i), Type: schemas.TypeTool, Team: team(i)})
	}
	for i := range 10 {
		ids = append(ids, broker.Identity{ID: fmt.Sprintf("m%d", i), Type: schemas.TypeModel, Team: team(i), Tags: []string{"expensive"}[:i%2]})
		ids = append(ids, broker.Identity{ID: fmt.Sprintf("u%d", i), Type: schemas.TypeUser, Team: team(i)})
	}
	dir, err := broker.NewDirectory(ids)
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// scalePolicies is the shipped policy set grown to n (0: not grown) with
// generated ones shaped like a large deployment's: 10 type-level rules
// with conditions on the context and on attributes, which apply to every
// hop of their action, and the rest scoped to one agent, tool or model as
// principal or resource (allow-lists of edges, per-agent limits, per-team
// tool grants).
func scalePolicies(tb testing.TB, n, agents int) []File {
	tb.Helper()
	files, err := ReadFS(deploy.Policies(), "")
	if err != nil {
		tb.Fatal(err)
	}
	shipped, err := Compile(files)
	if err != nil {
		tb.Fatal(err)
	}
	if n == 0 {
		return files
	}
	if n < shipped.Len() {
		tb.Fatalf("scalePolicies: %d policies asked, the shipped set alone has %d", n, shipped.Len())
	}
	rng := rand.New(rand.NewPCG(16, uint64(n)))
	agent := func() string { return fmt.Sprintf(`Agent::"a%d"`, rng.IntN(agents)) }
	global := []string{
		`forbid (principal is Agent, action == Action::"invoke", resource is Agent) when { context.depth > 12 };`,
		`forbid (principal, action, resource) when { context.tainted && resource.tags.contains("orchestrator") };`,
		`forbid (principal is Agent, action == Action::"call_model", resource is Model) when { resource.tags.contains("expensive") && context.cost_so_far.greaterThan(decimal("20.0")) };`,
		`forbid (principal is Agent, action, resource) when { principal.team == "contractors" && context.depth > 2 };`,
		`forbid (principal, action == Action::"invoke", resource) when { context.hops_so_far > 10000 };`,
		`forbid (principal is Agent, action == Action::"call_tool", resource is Tool) when { context.tokens_so_far > 50000000 };`,
		`permit (principal is User, action == Action::"invoke", resource is Agent) when { resource.team == principal.team };`,
		`forbid (principal is Agent, action == Action::"invoke", resource is Agent) when { context.is_cycle && context.edge_calls > 3 };`,
		`forbid (principal, action, resource is Agent) when { context.ancestry.contains("quarantined") };`,
		`permit (principal is Agent, action in [Action::"call_tool", Action::"call_model"], resource) when { principal.tags.contains("trusted") };`,
	}
	var b strings.Builder
	for i := 0; shipped.Len()+i < n; i++ {
		fmt.Fprintf(&b, "@id(\"gen-%d\")\n", i)
		switch {
		case i < len(global):
			b.WriteString(global[i])
		case i%10 < 4:
			fmt.Fprintf(&b, `permit (principal == %s, action == Action::"invoke", resource == %s);`, agent(), agent())
		case i%10 < 6:
			fmt.Fprintf(&b, `forbid (principal == %s, action, resource is Agent) when { context.depth > %d };`, agent(), rng.IntN(8))
		case i%10 < 8:
			fmt.Fprintf(&b, `permit (principal is Agent, action == Action::"call_tool", resource == Tool::"t%d") when { principal.team == "team-%d" };`, rng.IntN(20), rng.IntN(50))
		case i%10 < 9:
			fmt.Fprintf(&b, `forbid (principal, action == Action::"invoke", resource in %s) when { context.workflow != "default" };`, agent())
		default:
			fmt.Fprintf(&b, `permit (principal in %s, action in [Action::"call_tool", Action::"call_model"], resource is Model) unless { context.cost_so_far.greaterThan(decimal("%d.5")) };`, agent(), rng.IntN(10))
		}
		b.WriteString("\n")
	}
	return append(files, File{Name: "generated.cedar", Src: []byte(b.String())})
}

// scaleRequests draws n requests over dir: mostly agent-to-agent
// delegations, some tool and model calls and some users starting runs.
func scaleRequests(tb testing.TB, dir *broker.Directory, agents, n int) []Request {
	tb.Helper()
	rng := rand.New(rand.NewPCG(7, 16))
	get := func(format string, i int) *broker.Identity {
		id, ok := dir.Get(fmt.Sprintf(format, i))
		if !ok {
			tb.Fatalf("no identity "+format, i)
		}
		return id
	}
	out := make([]Request, n)
	for i := range out {
		ctx := Context{RunID: fmt.Sprintf("run-%d", i), Workflow: "default", Depth: rng.IntN(6),
			Ancestry: []string{"u1", "a0", fmt.Sprintf("a%d", rng.IntN(agents))}, OnBehalfOf: "u1",
			HopsSoFar: rng.IntN(40), TokensSoFar: rng.Int64N(100000), CostSoFar: rng.Float64() * 3, EdgeCalls: rng.IntN(3)}
		r := Request{Principal: get("a%d", rng.IntN(agents)), Action: schemas.ActionInvoke, Resource: get("a%d", rng.IntN(agents)), Context: ctx}
		switch k := rng.IntN(10); {
		case k == 0:
			r.Action, r.Resource = schemas.ActionCallTool, get("t%d", rng.IntN(20))
		case k == 1:
			r.Action, r.Resource = schemas.ActionCallModel, get("m%d", rng.IntN(10))
		case k == 2:
			r.Principal = get("u%d", rng.IntN(10))
		}
		out[i] = r
	}
	return out
}

// firingRequests are reqs with a context that makes the conditions of
// scalePolicies' type-level forbids on the context true: tainted from the
// ingress, deep, long, cyclic, with a quarantined ancestor.
func firingRequests(reqs []Request) []Request {
	out := make([]Request, len(reqs))
	for i, r := range reqs {
		c := &r.Context
		c.Tainted, c.TaintSources = true, []string{"ingress"}
		c.Depth, c.HopsSoFar, c.TokensSoFar = 13, 10001, 60000000
		c.IsCycle, c.EdgeCalls = true, 4
		c.Ancestry = append(slices.Clone(c.Ancestry), "quarantined")
		out[i] = r
	}
	return out
}
