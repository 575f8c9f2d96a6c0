package enforcer_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// TestToolRateLimitHoldsForAuditCallers: a tool's rate_limit (the decision
// core's target_rate check) protects the upstream for all its callers, so
// it binds a caller in mode: audit too, whose other failing checks are
// only findings. A tool of 1/min called 3 times by an audit-mode agent is
// delivered once; the other two calls are denied with reason rate.
func TestToolRateLimitHoldsForAuditCallers(t *testing.T) {
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
	denied := 0
	for _, h := range runState(t, g, run).Hops {
		if h.To == "search" && h.Status == ledger.HopDenied {
			if h.Reason != schemas.ReasonRate {
				t.Fatalf("call %s denied with reason %s, want rate", h.ID, h.Reason)
			}
			denied++
		}
	}
	if denied != 2 {
		t.Fatalf("%d calls denied, want 2 (reason rate)", denied)
	}
}
