package enforcer_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/schemas"
)

// reviewHalt halts run as operator "ops" with a signed request.
func reviewHalt(t *testing.T, g *enforcertest.Gateway, kp nkeys.KeyPair, run string) schemas.HaltReply {
	t.Helper()
	req := schemas.HaltRequest{Version: 1, RunID: run, By: "ops", Reason: "runaway stream", SentAt: time.Now().UTC()}
	body, err := schemas.Encode(&req)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, kp.Sign)
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.Conn.Request(g.Subjects.CtlHalt(run), signed, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r schemas.HaltReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReviewHaltSettleChargesQuota (review finding): docs/limits.md and
// docs/models-and-tools.md say a settle (the late reply of a hop a halt
// closed) is counted by "the quotas". The halt's effects release the
// hop's hold (settleQuota with nil usage deletes it), and the settle's
// quota.Store.Settle then finds no hold and charges nothing: the spend
// of a hop cut by a halt never reaches the spend quotas.
func TestReviewHaltSettleChargesQuota(t *testing.T) {
	opPub, opKP := mustOtherKey(t)
	g := startLoose(t, enforcer.Config{
		Operators: map[string]string{"ops": opPub},
		Quotas:    []limits.Quota{{Name: "orch-day", Scope: limits.ScopeAgent, Match: "orchestrator", Window: limits.WindowDay, MaxTokens: 1_000_000, MaxCostUSD: 100}},
		Limits:    limits.Run{OnBreach: limits.DenyOnly},
	})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	env := orch.estimated(run, root, "research", 100, 0.5)
	orch.send(run, env)
	waitDeliveries(t, g, "research", 1)

	if r := reviewHalt(t, g, opKP, run); !r.OK {
		t.Fatalf("halt: %+v", r)
	}
	waitFor(t, func() bool { return runState(t, g, run).Halted })
	// The target's late reply with what it used before the cancel: a settle.
	research.send(run, research.reply(env.HopID, "orchestrator", &schemas.Usage{InputTokens: 200, OutputTokens: 50, CostUSD: 1}))
	waitFor(t, func() bool { h := runState(t, g, run).Hops[env.HopID]; return h != nil && h.Settled })
	if sp := runState(t, g, run).Spent; sp.Tokens < 250 {
		t.Fatalf("run spend %+v: the settle was not charged to the run", sp)
	}
	usage := func() quota.Usage {
		us, err := g.Enforcer.QuotaUsage(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if u.Value == "orchestrator" {
				return u
			}
		}
		return quota.Usage{}
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && usage().Settled.Tokens == 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if u := usage(); u.Settled.Tokens != 250 || u.Settled.CostUSD != 1 {
		t.Fatalf("quota after the settle: %+v; want 250 tokens and $1 settled (docs: the quotas count a settle)", u)
	}
}
