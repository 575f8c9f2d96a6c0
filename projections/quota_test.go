package projections_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/schemas"
)

// TestQuotaSpendView: quota_spend_hourly charges a hop's reported spend to
// its caller, the caller's team, the run's workflow and principal, and
// counts the denials quotas made.
func TestQuotaSpendView(t *testing.T) {
	e := newEnv(t)
	run, at := schemas.NewID(), time.Now().UTC()
	root, child, denied := run+"-h0", run+"-h1", run+"-h2"
	quotaDenial := decision("orchestrator", "platform", "writer", "content", 1, []string{"tomas", "orchestrator"}, denied)
	quotaDenial.ParentHopID, quotaDenial.Reason, quotaDenial.Message = root, schemas.ReasonQuota, "quota orch-day would pass"
	var head ledger.Head
	for i, step := range []struct {
		typ  schemas.EventType
		hop  string
		data any
	}{
		{schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: root, Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas", Workflow: "briefs"}},
		{schemas.EventHopAllowed, root, decision("tomas", "research", "orchestrator", "platform", 0, []string{"tomas"}, root)},
		{schemas.EventHopAllowed, child, decision("orchestrator", "platform", "research", "research", 1, []string{"tomas", "orchestrator"}, child)},
		{schemas.EventHopCompleted, child, &schemas.HopCompleted{Status: schemas.StateCompleted, By: "research",
			Usage: &schemas.Usage{InputTokens: 300, OutputTokens: 100, CostUSD: 0.25}}},
		{schemas.EventHopDenied, denied, quotaDenial},
	} {
		ev, err := schemas.NewEvent(run, step.typ, step.hop, at.Add(time.Duration(i)*time.Millisecond), step.data)
		if err != nil {
			t.Fatal(err)
		}
		if head, _, err = e.l.Append(ctxT(t), head, ev); err != nil {
			t.Fatal(err)
		}
	}
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, broker.ProjectorConsumer)

	var hops, allowed, quotaDenials uint64
	var tokens int64
	var cost float64
	var team, workflow, principal string
	e.db.Scan(`SELECT caller_team, workflow, principal, hops, allowed, quota_denials, tokens, toFloat64(cost_usd)
	           FROM quota_spend_hourly WHERE caller = 'orchestrator'`, &team, &workflow, &principal, &hops, &allowed, &quotaDenials, &tokens, &cost)
	if team != "platform" || workflow != "briefs" || principal != "tomas" || hops != 2 || allowed != 1 || quotaDenials != 1 || tokens != 400 || cost != 0.25 {
		t.Fatalf("orchestrator's hour: team %q workflow %q principal %q hops %d allowed %d quota denials %d tokens %d cost %g",
			team, workflow, principal, hops, allowed, quotaDenials, tokens, cost)
	}
}
