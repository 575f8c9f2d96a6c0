package enforcer

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// quotaInputs back the decision core's quota inputs with the fleet-wide
// store: reservations at admission, and the share used for
// context.quota_used from what this instance last saw.
func (e *Enforcer) quotaInputs(ctx context.Context, rules *decision.Rules, now time.Time, in *decision.Inputs, extra *[]outgoing) {
	in.Bound = func(target string) (bool, error) { return e.bound(ctx, target) }
	in.Circuit = e.circuitFunc(ctx, rules, now, extra)
	if e.quotas == nil || len(rules.Limits.Quotas) == 0 {
		return
	}
	zone := rules.Limits.Zone()
	in.Quota = func(req decision.QuotaRequest) (*quota.Over, error) {
		over, err := e.quotas.Reserve(ctx, zone, req.Applied, req.Hop, req.Estimate, req.Until, now, req.Force)
		if err != nil {
			return nil, fmt.Errorf("quota: %w", err)
		}
		e.quotaGauges(zone, req.Applied, now)
		if over != nil {
			e.cfg.Metrics.quotaExceeded(over.Quota.Name)
		}
		return over, nil
	}
	in.QuotaUsed = func(applied []limits.Applied) (int64, error) {
		return e.quotas.Percent(ctx, zone, applied, now)
	}
}

// settleQuota closes a hop's quota reservations: what its reply reported
// (used; nil for a hop closed without a report) is counted, the estimate
// released. It is idempotent (quota.Store.Settle), so the effects of a
// record found again after a crash settle nothing twice. It also settles
// what a hop the halt closed reports late (a hop.completed that settles):
// closeQuota kept its holds for that.
func (e *Enforcer) settleQuota(ctx context.Context, st *ledger.State, hop *ledger.Hop, used *schemas.Usage) error {
	amount := usageAmount(used)
	return e.quotaOp(ctx, st, hop, func(zone *time.Location, applied []limits.Applied, id string, now time.Time) error {
		return e.quotas.Settle(ctx, zone, applied, id, amount, now)
	})
}

// chargeQuota settles a hop that goes on (step: the ledger seq of its
// hop.retried or hop.rerouted): what the failed attempt reported (used)
// is counted, and the reservation stays, to lapse at until
// (quota.Store.Charge, idempotent per step). One path settles replies,
// failed attempts and closes.
func (e *Enforcer) chargeQuota(ctx context.Context, st *ledger.State, hop *ledger.Hop, used *schemas.Usage, step uint64, until time.Time) error {
	amount := usageAmount(used)
	return e.quotaOp(ctx, st, hop, func(zone *time.Location, applied []limits.Applied, id string, now time.Time) error {
		return e.quotas.Charge(ctx, zone, applied, id, amount, step, until, now)
	})
}

// haltQuota closes the quota reservations of a hop the run's halt closed.
// A hop cut while it was delivered (ledger.Hop.CutByHalt) may still
// settle what its target used: its reservations are released but its
// holds kept (quota.Store.Close), so that the settle is charged to the
// quotas and scope values it reserved in. A hop held for approval was
// never delivered: its reservations are settled with nothing.
func (e *Enforcer) haltQuota(ctx context.Context, st *ledger.State, hop *ledger.Hop) error {
	if hop == nil || !hop.CutByHalt {
		return e.settleQuota(ctx, st, hop, nil)
	}
	return e.quotaOp(ctx, st, hop, func(zone *time.Location, applied []limits.Applied, id string, now time.Time) error {
		return e.quotas.Close(ctx, zone, applied, id, now)
	})
}

func usageAmount(used *schemas.Usage) *quota.Amount {
	if used == nil {
		return nil
	}
	return &quota.Amount{Tokens: used.Tokens(), CostUSD: used.Cost()}
}

// quotaOp runs op on the quotas that apply to hop's spend (its caller's,
// under the rules in force), with the hop's reservation name: nothing
// when no quota applies or the hop reserved nothing (denied).
func (e *Enforcer) quotaOp(ctx context.Context, st *ledger.State, hop *ledger.Hop, op func(zone *time.Location, applied []limits.Applied, id string, now time.Time) error) error {
	rules := e.rules.Load()
	if e.quotas == nil || len(rules.Limits.Quotas) == 0 || hop == nil || hop.Status == ledger.HopDenied {
		return nil
	}
	caller, ok := rules.Dir.Get(hop.From)
	if !ok {
		return nil // an identity removed since: its reservations lapse
	}
	applied := rules.Limits.Applies(decision.Spender(st, caller, st.OnBehalfOf))
	if len(applied) == 0 {
		return nil
	}
	zone, now := rules.Limits.Zone(), e.cfg.Clock()
	if err := op(zone, applied, decision.QuotaHop(st.RunID, hop.ID), now); err != nil {
		return fmt.Errorf("settle quota of hop %s: %w", hop.ID, err)
	}
	e.quotaGauges(zone, applied, now)
	return nil
}

// quotaGauges publishes the usage this instance last saw of each applied
// quota.
func (e *Enforcer) quotaGauges(zone *time.Location, applied []limits.Applied, now time.Time) {
	if e.cfg.Metrics == nil {
		return
	}
	for _, ap := range applied {
		if u, ok := e.quotas.Cached(zone, ap, now); ok {
			e.cfg.Metrics.quotaUsed(u)
		}
	}
}

// QuotaUsage reads the state of every configured quota from the store,
// for every scope value it has counted (and the matched value of a quota
// set for one), at now.
func (e *Enforcer) QuotaUsage(ctx context.Context) ([]quota.Usage, error) {
	if e.quotas == nil {
		return nil, fmt.Errorf("quota usage: the enforcer is not started")
	}
	return QuotaStatus(ctx, e.quotas, e.rules.Load().Limits, e.cfg.Clock())
}

// QuotaStatus reads every configured quota's usage from store at now: one
// entry per scope value counted so far, and one for the value a quota is
// set for even before it counted anything.
func QuotaStatus(ctx context.Context, store *quota.Store, set limits.Set, now time.Time) ([]quota.Usage, error) {
	keys, err := store.Keys(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string][]string{}
	for _, k := range keys {
		if name, value, ok := quota.ParseKey(k); ok {
			byName[name] = append(byName[name], value)
		}
	}
	var out []quota.Usage
	for i := range set.Quotas {
		q := &set.Quotas[i]
		values := byName[q.Name]
		if q.Match != limits.QuotaAll && !containsString(values, q.Match) {
			values = append(values, q.Match)
		}
		for _, v := range values {
			if q.Match != limits.QuotaAll && v != q.Match {
				continue
			}
			u, err := store.Usage(ctx, set.Zone(), limits.Applied{Quota: q, Value: v}, now)
			if err != nil {
				return nil, err
			}
			out = append(out, u)
		}
	}
	return out, nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// circuitFunc reports open circuits to the decision core; the alerts of
// the state changes it causes (an open circuit letting its trial hop
// through) are added to extra. Only targets with a breaker are asked.
func (e *Enforcer) circuitFunc(ctx context.Context, rules *decision.Rules, now time.Time, extra *[]outgoing) decision.CircuitFunc {
	return func(target string) bool {
		b := rules.Limits.Targets[target].Breaker
		if !b.Enabled() {
			return false
		}
		open, out := e.circuitOpen(ctx, target, b, now)
		*extra = append(*extra, out...)
		return open
	}
}
