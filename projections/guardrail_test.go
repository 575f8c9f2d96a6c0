package projections_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/schemas"
)

// TestTaintAndGuardrailsProjected: the hops table carries a hop's taint as
// it grows (a tainted reply taints the caller's hop it answers) and what
// the guardrails found in its message and in its reply.
func TestTaintAndGuardrailsProjected(t *testing.T) {
	e := newEnv(t)
	run, at := schemas.NewID(), time.Now().UTC()
	root, child := run+"-h0", run+"-h1"
	flagged := decision("orchestrator", "platform", "research", "research", 1, []string{"tomas", "orchestrator"}, child)
	flagged.ParentHopID, flagged.Tainted, flagged.TaintSources = root, true, []string{"guardrail:instruction-override/task-hijack"}
	flagged.Guardrail = &schemas.Guardrail{Verdict: "flag", Rules: []string{"instruction-override/task-hijack"}}
	reply := &schemas.HopCompleted{Status: schemas.StateCompleted, By: "research", Tainted: true,
		TaintSources: []string{"guardrail:instruction-override/task-hijack", "untrusted:research"},
		Guardrail:    &schemas.Guardrail{Verdict: "redact", Rules: []string{"exfiltration/api-key"}}}
	var head ledger.Head
	for i, step := range []struct {
		typ  schemas.EventType
		hop  string
		data any
	}{
		{schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: root, Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"}},
		{schemas.EventHopAllowed, root, decision("tomas", "research", "orchestrator", "platform", 0, []string{"tomas"}, root)},
		{schemas.EventHopAllowed, child, flagged},
		{schemas.EventHopCompleted, child, reply},
		{schemas.EventHopCompleted, root, &schemas.HopCompleted{Status: schemas.StateCompleted, By: "orchestrator"}},
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

	var tainted uint8
	var sources, rules, replyRules []string
	var verdict, replyVerdict string
	e.db.Scan(`SELECT tainted, taint_sources, guardrail_verdict, guardrail_rules, reply_guardrail_verdict, reply_guardrail_rules
	           FROM hops FINAL WHERE hop_id = '`+child+`'`, &tainted, &sources, &verdict, &rules, &replyVerdict, &replyRules)
	if tainted != 1 || len(sources) != 1 || verdict != "flag" || len(rules) != 1 || replyVerdict != "redact" || len(replyRules) != 1 || replyRules[0] != "exfiltration/api-key" {
		t.Errorf("flagged hop: tainted %d %v guardrail %s %v reply %s %v", tainted, sources, verdict, rules, replyVerdict, replyRules)
	}
	// The root hop was not tainted when it was decided; the tainted reply
	// to its delegation tainted it, and its closed row says so.
	e.db.Scan(`SELECT tainted, taint_sources, guardrail_verdict FROM hops FINAL WHERE hop_id = '`+root+`'`, &tainted, &sources, &verdict)
	if tainted != 1 || len(sources) != 2 || sources[1] != "untrusted:research" || verdict != "" {
		t.Errorf("root hop: tainted %d %v guardrail %q", tainted, sources, verdict)
	}
	if n := e.db.Count("SELECT count() FROM hops FINAL WHERE tainted = 1"); n != 2 {
		t.Errorf("%d tainted hops, want 2", n)
	}
}
