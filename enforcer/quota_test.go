package enforcer_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// estimated is an invoke carrying a token (and cost) estimate.
func (s *sender) estimated(run, parent, to string, tokens int64, cost float64) *schemas.Envelope {
	env := s.invoke(run, parent, to)
	env.Estimate = &schemas.Usage{InputTokens: tokens, CostUSD: cost}
	return env
}

// quotaOutcomes counts the orchestrator -> research decisions of runs.
func quotaOutcomes(t *testing.T, g interface {
	Load(context.Context, string) (*ledger.State, error)
}, runs []string) (allowed, denied int, reasons map[schemas.Reason]int) {
	t.Helper()
	reasons = map[schemas.Reason]int{}
	for _, run := range runs {
		st, err := g.Load(ctxT(t), run)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range st.Hops {
			if h.From != "orchestrator" {
				continue
			}
			if h.Status == ledger.HopDenied {
				denied++
				reasons[h.Reason]++
			} else {
				allowed++
			}
		}
	}
	return allowed, denied, reasons
}

// TestQuotaExactAcrossTwoEnforcers: two enforcer instances share the
// SUBMIT work queue and the quota bucket; 30 concurrent hops of 100
// estimated tokens each against a quota of 2,000 tokens: exactly 20 are
// admitted, 10 denied with reason quota, and the store holds exactly
// 2,000 reserved tokens.
func TestQuotaExactAcrossTwoEnforcers(t *testing.T) {
	cfg := enforcer.Config{
		Quotas: []limits.Quota{{Name: "orch-day", Scope: limits.ScopeAgent, Match: "orchestrator", Window: limits.WindowDay, MaxTokens: 2000}},
		Limits: limits.Run{OnBreach: limits.DenyOnly}, Shards: 4,
	}
	g := startLoose(t, cfg)
	_, js2 := g.NewConn()
	second, err := enforcer.New(js2, g.Subjects, enforcer.Registry{Dir: g.Dir, Engine: g.Engine}, withAckWait(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer second.Stop(context.Background())

	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	const hops = 30
	type opened struct{ run, root string }
	var runs []opened
	for range hops {
		run, root := openRun(t, tomas)
		runs = append(runs, opened{run, root})
	}
	// The 30 invokes go out at once, from 30 goroutines.
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			orch.send(r.run, orch.estimated(r.run, r.root, "research", 100, 0))
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return pendingSubmissions(t, g) == 0 })
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.run)
	}
	var allowed, denied int
	var reasons map[schemas.Reason]int
	waitFor(t, func() bool {
		allowed, denied, reasons = quotaOutcomes(t, g.Ledger, ids)
		return allowed+denied == hops
	})
	a, b := g.Enforcer.Stats(), second.Stats()
	if allowed != 20 || denied != 10 || reasons[schemas.ReasonQuota] != 10 {
		t.Fatalf("admitted %d, denied %d (%v); want exactly 20 admitted and 10 denied for quota (stats %+v / %+v)", allowed, denied, reasons, a, b)
	}
	if a.Allowed+a.Denied == 0 || b.Allowed+b.Denied == 0 {
		t.Fatalf("one instance did no work (%+v / %+v): the test did not exercise two", a, b)
	}
	us, err := second.QuotaUsage(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Reserved.Tokens != 2000 || us[0].Held != 20 || us[0].Percent != 100 || us[0].Settled.Tokens != 0 {
		t.Fatalf("quota usage %+v; want 2000 tokens reserved by 20 hops", us)
	}
}

// TestQuotaSettlesAndRollsOver: a reply settles what it reports in place
// of the estimate; the next hop that would pass the quota is denied with
// a message naming the quota; an hour later (the enforcer's clock) the
// window has rolled over and the hop passes. A second reply for the same
// hop (redelivered) settles nothing twice.
func TestQuotaSettlesAndRollsOver(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	g := startLoose(t, enforcer.Config{
		Clock:  clock,
		Quotas: []limits.Quota{{Name: "orch-hour", Scope: limits.ScopeAgent, Window: limits.WindowHour, MaxTokens: 300, MaxCostUSD: 10}},
		// The run outlives the hour the clock jumps: no wall-clock limit.
		Limits: limits.Run{OnBreach: limits.DenyOnly, MaxWallClockSeconds: -1},
	})
	// Start just after the top of the hour, so the hour does not end
	// under the test.
	now := time.Now()
	top := now.Truncate(time.Hour).Add(time.Hour + time.Minute)
	offset.Store(int64(top.Sub(now)))

	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	env := orch.estimated(run, root, "research", 100, 0.5)
	orch.send(run, env)
	waitDeliveries(t, g, "research", 1)
	usage := func() quota.Usage {
		t.Helper()
		us, err := g.Enforcer.QuotaUsage(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if u.Value == "orchestrator" {
				return u
			}
		}
		t.Fatalf("no usage for the orchestrator in %+v", us)
		return quota.Usage{}
	}
	if u := usage(); u.Reserved.Tokens != 100 || u.Reserved.CostUSD != 0.5 || u.Held != 1 {
		t.Fatalf("after admission: %+v; want 100 tokens and $0.5 reserved", u)
	}
	reply := research.reply(env.HopID, "orchestrator", &schemas.Usage{InputTokens: 200, OutputTokens: 50, CostUSD: 1})
	research.send(run, reply)
	waitDeliveries(t, g, "orchestrator", 2)
	waitFor(t, func() bool { return usage().Held == 0 })
	if u := usage(); u.Settled.Tokens != 250 || u.Settled.CostUSD != 1 || u.Reserved.Tokens != 0 {
		t.Fatalf("after the reply: %+v; want 250 tokens and $1 settled, nothing reserved", u)
	}
	// The same reply again is a closed hop: denied, and not settled twice.
	research.send(run, research.reply(env.HopID, "orchestrator", &schemas.Usage{InputTokens: 200, OutputTokens: 50, CostUSD: 1}))
	waitDeliveries(t, g, "research", 2)
	if u := usage(); u.Settled.Tokens != 250 {
		t.Fatalf("a second reply settled again: %+v", u)
	}

	orch.send(run, orch.estimated(run, root, "writer", 100, 0))
	d := nth(t, g, "orchestrator", 3)
	if d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonQuota || !strings.Contains(d.Denial.Message, "orch-hour") ||
		!strings.Contains(d.Denial.Message, "350") {
		t.Fatalf("hop past the quota: %s %+v", d.Kind, d.Denial)
	}
	// An hour later the window is a new one.
	offset.Add(int64(time.Hour))
	orch.send(run, orch.estimated(run, root, "writer", 100, 0))
	waitDeliveries(t, g, "writer", 1)
	if u := usage(); u.Settled.Tokens != 0 || u.Reserved.Tokens != 100 || !u.Start.Equal(top.Add(time.Hour).Truncate(time.Hour)) {
		t.Fatalf("after the rollover: %+v; want a fresh window holding the new hop's 100 tokens", u)
	}
}

// TestQuotaHaltsAndAlerts: a quota with on_exceed halt_and_alert trips a
// breach named after it, which halts the run and publishes an alert with
// reason quota.
func TestQuotaHaltsAndAlerts(t *testing.T) {
	g := startLoose(t, enforcer.Config{
		Quotas: []limits.Quota{{Name: "research-team", Scope: limits.ScopeTeam, Match: "platform", Window: limits.WindowRolling,
			Rolling: time.Hour, MaxCostUSD: 1, OnExceed: limits.QuotaHalt}},
	})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	before := len(g.Deliveries("research"))
	orch.send(run, orch.estimated(run, root, "research", 0, 0.6))
	waitDeliveries(t, g, "research", before+1)
	orch.send(run, orch.estimated(run, root, "writer", 0, 0.6))
	waitFor(t, func() bool { return runState(t, g, run).Halted })
	st := runState(t, g, run)
	if got := breaches(st); len(got) != 1 || got[0] != "quota.research-team/halt" {
		t.Fatalf("breaches %v", got)
	}
	var alerts []schemas.Alert
	waitFor(t, func() bool { alerts = alertsOf(t, g, run); return len(alerts) == 1 }) // published after the halt is recorded
	if len(alerts) != 1 || alerts[0].Reason != schemas.ReasonQuota || alerts[0].Limit != "quota.research-team" || alerts[0].Bound != 1 {
		t.Fatalf("alerts %+v", alerts)
	}
	// The halt cancelled the open hop: its reservation is released.
	var us []quota.Usage
	waitFor(t, func() bool {
		var err error
		us, err = g.Enforcer.QuotaUsage(ctxT(t))
		return err == nil && len(us) == 1 && us[0].Held == 0
	})
	if us[0].Reserved.CostUSD != 0 {
		t.Fatalf("after the halt: %+v; want no reservation left", us)
	}
}

// TestQuotaAuditAndPolicy: a quota in audit mode admits the hop past it
// and records a finding; a policy reading context.quota_used forbids hops
// once a quota is 50% used.
func TestQuotaAuditAndPolicy(t *testing.T) {
	forbid := policy.File{Name: "quota.cedar", Src: []byte(`@id("quota-half")
forbid (principal == Agent::"orchestrator", action, resource == Agent::"critic") when { context.quota_used >= 50 };`)}
	g := startLoose(t, enforcer.Config{
		Quotas: []limits.Quota{{Name: "audit-only", Scope: limits.ScopePrincipal, Window: limits.WindowMonth, MaxTokens: 100, Mode: limits.ModeAudit}},
		Limits: limits.Run{OnBreach: limits.DenyOnly},
	}, forbid)
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	orch.send(run, orch.estimated(run, root, "research", 150, 0))
	waitDeliveries(t, g, "research", 1)
	var found bool
	for _, r := range waitRun(t, g, run, 3) {
		if r.Event.Type == schemas.EventHopAllowed && decision(t, r).To == "research" {
			for _, f := range decision(t, r).Audit {
				found = found || f.Reason == schemas.ReasonQuota && strings.Contains(f.Message, "audit-only")
			}
		}
	}
	if !found {
		t.Fatal("the hop past an audit-mode quota carries no quota finding")
	}
	orch.send(run, orch.invoke(run, root, "critic"))
	d := nth(t, g, "orchestrator", 2)
	if d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonPolicy || len(d.Denial.PolicyIDs) != 1 || d.Denial.PolicyIDs[0] != "quota-half" {
		t.Fatalf("hop with the quota past 50%%: %s %+v; want forbidden by quota-half", d.Kind, d.Denial)
	}
}

// TestQuotaChargesFailedAttempts: the usage a failed attempt reports is
// charged to the caller's quota when the gateway retries the hop, as it
// is to the run budget, while the hop keeps its reservation; the final
// reply settles the rest, so the quota and the run budget agree.
func TestQuotaChargesFailedAttempts(t *testing.T) {
	g := enforcertest.Start(t, enforcertest.Options{Identities: timeoutIdentities(), Policies: basePolicies(t), Config: enforcer.Config{
		Targets: map[string]limits.Target{"research": {Retry: limits.Retry{
			MaxAttempts: 3, On: []string{"rate_limited"}, Backoff: 20 * time.Millisecond, Jitter: noJitter()}}},
		Quotas: []limits.Quota{{Name: "orch-day", Scope: limits.ScopeAgent, Match: "orchestrator", Window: limits.WindowDay, MaxTokens: 10000}},
	}})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	env := orch.estimated(run, root, "research", 100, 0)
	orch.send(run, env)
	waitDeliveries(t, g, "research", 1)
	usage := func() quota.Usage {
		t.Helper()
		us, err := g.Enforcer.QuotaUsage(ctxT(t))
		if err != nil || len(us) != 1 {
			t.Fatalf("usage %+v: %v", us, err)
		}
		return us[0]
	}
	research.send(run, research.failed(env.HopID, "orchestrator", "rate_limited", &schemas.Usage{InputTokens: 30, CostUSD: 0.3}))
	waitDeliveries(t, g, "research", 2)
	waitFor(t, func() bool { return usage().Settled.Tokens == 30 })
	if u := usage(); u.Reserved.Tokens != 100 || u.Held != 1 || u.Settled.CostUSD != 0.3 {
		t.Fatalf("after the failed attempt: %+v; want its 30 tokens ($0.3) settled and the 100 still reserved", u)
	}
	research.send(run, research.failed(env.HopID, "orchestrator", "rate_limited", &schemas.Usage{InputTokens: 20}))
	waitDeliveries(t, g, "research", 3)
	research.send(run, research.reply(env.HopID, "orchestrator", &schemas.Usage{InputTokens: 50}))
	waitDeliveries(t, g, "orchestrator", 2)
	waitFor(t, func() bool { return usage().Held == 0 })
	u := usage()
	st := runState(t, g, run)
	if u.Settled.Tokens != 100 || u.Reserved.Tokens != 0 || st.Spent.Tokens != 100 {
		t.Fatalf("after the reply: quota %+v, run budget %d tokens; want 100 settled in both", u, st.Spent.Tokens)
	}
}
