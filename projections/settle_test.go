package projections_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/schemas"
)

// TestSettledHopInClickHouse: a model hop the run's halt closed mid-stream
// is settled by the bridge's late reply; in ClickHouse the hop stays
// canceled and its tokens and cost count in the hop's row, the cost per
// agent and the run's row.
func TestSettledHopInClickHouse(t *testing.T) {
	e := newEnv(t)
	run := schemas.NewID()
	at := time.Now().UTC().Truncate(time.Second)
	var head ledger.Head
	add := func(typ schemas.EventType, hop string, data any) {
		t.Helper()
		at = at.Add(time.Millisecond)
		ev, err := schemas.NewEvent(run, typ, hop, at, data)
		if err != nil {
			t.Fatal(err)
		}
		if head, _, err = e.l.Append(ctxT(t), head, ev); err != nil {
			t.Fatalf("append %s: %v", typ, err)
		}
	}
	add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "h0", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas", Workflow: "w"})
	add(schemas.EventHopAllowed, "h0", decision("tomas", "research", "research", "research", 0, []string{"tomas"}, "h0"))
	model := decision("research", "research", "gpt", "models", 1, []string{"tomas", "research"}, "h1")
	model.ParentHopID, model.Action, model.Estimate = "h0", schemas.ActionCallModel, &schemas.Usage{InputTokens: 10, OutputTokens: 1000}
	add(schemas.EventHopAllowed, "h1", model)
	add(schemas.EventRunHalted, "", &schemas.RunHalted{Reason: "runaway stream", By: "oncall", OpenHops: []string{"h0", "h1"}})
	add(schemas.EventHopCompleted, "h1", &schemas.HopCompleted{Status: schemas.StateCanceled, By: "gpt", Settles: true, LatencyMS: 40,
		Usage: &schemas.Usage{InputTokens: 12, OutputTokens: 45, CostUSD: 0.00048}})
	e.start(t, projections.Config{})
	e.waitCaughtUp(t, e.db.Config.Consumer)

	var status string
	var tokens int64
	var costNano int64
	e.db.Scan(`SELECT status, tokens, toInt64(cost_usd * 1000000000) FROM hops FINAL WHERE run_id = '`+run+`' AND target = 'gpt'`, &status, &tokens, &costNano)
	if status != "canceled" || tokens != 57 || costNano != 480000 {
		t.Fatalf("the model hop's row: %s, %d tokens, %d nano-USD; want canceled, 57, 480000", status, tokens, costNano)
	}
	e.db.Scan(`SELECT toInt64(sum(tokens)), toInt64(sum(cost_usd) * 1000000000) FROM cost_by_agent_daily WHERE agent = 'gpt'`, &tokens, &costNano)
	if tokens != 57 || costNano != 480000 {
		t.Fatalf("cost_by_agent_daily for gpt: %d tokens, %d nano-USD", tokens, costNano)
	}
	e.db.Scan(`SELECT tokens, toInt64(cost_usd * 1000000000) FROM runs FINAL WHERE run_id = '`+run+`'`, &tokens, &costNano)
	if tokens != 57 || costNano != 480000 {
		t.Fatalf("the run's row: %d tokens, %d nano-USD", tokens, costNano)
	}
}
