package enforcer_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/schemas"
)

// TestReviewToolRateLimitHoldsForAuditCallers (review finding): a tool's
// rate_limit moved from the MCP bridge (which checked it for every call)
// into the decision core's target_rate check, and Govern turns every
// failing check of a caller in mode: audit into a finding. So a caller in
// audit mode is never held to a tool's rate limit, which docs/
// models-and-tools.md calls "the tool's bound, not the run's", across all
// its callers: the upstream MCP server gets every call. Here a tool of
// 1/min is called 3 times by an audit-mode agent: all 3 are forwarded.
func TestReviewToolRateLimitHoldsForAuditCallers(t *testing.T) {
	ids := append([]broker.Identity{}, demoIdentities...)
	ids = append(ids, broker.Identity{ID: "search", Type: schemas.TypeTool, Resource: "web/search",
		RateLimit: ratelimit.Rate{Count: 1, Period: time.Minute}})
	g := enforcertest.Start(t, enforcertest.Options{Identities: ids, Policies: basePolicies(t),
		Config: enforcer.Config{Agents: map[string]limits.Agent{"orchestrator": {Mode: limits.ModeAudit}}}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	for range 3 {
		orch.send(run, orch.invoke(run, root, "search"))
	}
	waitFor(t, func() bool { st := runState(t, g, run); return len(st.Hops) >= 4 })
	time.Sleep(500 * time.Millisecond)
	if n := len(g.Deliveries("search")); n != 1 {
		st := runState(t, g, run)
		allowed := 0
		for _, h := range st.Hops {
			if h.To == "search" && h.Status != "denied" {
				allowed++
			}
		}
		t.Fatalf("a tool with rate_limit 1/min was delivered %d calls (%d admitted) from a caller in audit mode", n, allowed)
	}
}
