package enforcer_test

import (
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/schemas"
)

// operatorHalt halts run as operator "ops" with a signed request.
func operatorHalt(t *testing.T, g *enforcertest.Gateway, kp nkeys.KeyPair, run string) schemas.HaltReply {
	t.Helper()
	return signedControl[schemas.HaltReply](t, g, kp.Sign, g.Subjects.CtlHalt(run),
		&schemas.HaltRequest{Version: 1, Cmd: schemas.CmdHalt, RunID: run, By: "ops", Reason: "runaway stream", SentAt: time.Now().UTC()})
}

// TestHaltSettleChargesQuota: a settle (the late reply of a hop a halt
// closed while it was delivered, a model stream the halt cut) is counted
// by the spend quotas, as docs/limits.md and docs/models-and-tools.md say:
// the halt releases the hop's reservation at once (quota.Store.Close keeps
// a hold that reserves nothing), and the settle charges what the target
// reported to the quota the hop reserved in, once.
func TestHaltSettleChargesQuota(t *testing.T) {
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

	if r := operatorHalt(t, g, opKP, run); !r.OK {
		t.Fatalf("halt: %+v", r)
	}
	waitFor(t, func() bool { return runState(t, g, run).Halted })
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
	// The halt released the reservation: nothing is held until the settle.
	waitFor(t, func() bool { return usage().Held == 0 })
	if u := usage(); u.Reserved.Tokens != 0 || u.Reserved.CostUSD != 0 || u.Settled.Tokens != 0 {
		t.Fatalf("quota after the halt: %+v; want nothing reserved or settled", u)
	}
	// The target's late reply with what it used before the cancel: a settle.
	research.send(run, research.reply(env.HopID, "orchestrator", &schemas.Usage{InputTokens: 200, OutputTokens: 50, CostUSD: 1}))
	waitFor(t, func() bool { h := runState(t, g, run).Hops[env.HopID]; return h != nil && h.Settled })
	if sp := runState(t, g, run).Spent; sp.Tokens < 250 {
		t.Fatalf("run spend %+v: the settle was not charged to the run", sp)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && usage().Settled.Tokens == 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if u := usage(); u.Settled.Tokens != 250 || u.Settled.CostUSD != 1 || u.Reserved.Tokens != 0 || u.Held != 0 {
		t.Fatalf("quota after the settle: %+v; want 250 tokens and $1 settled, nothing reserved", u)
	}
}
