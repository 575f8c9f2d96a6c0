package whatif_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/whatif"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const forbidOrchestrator = "no-agent-invokes-an-orchestrator"

// deployFiles are the shipped example policies, without the files whose
// name contains one of drop.
func deployFiles(t testing.TB, drop []string) []policy.File {
	t.Helper()
	all, err := policy.ReadFS(deploy.Policies(), "deploy/")
	if err != nil || len(all) == 0 {
		t.Fatalf("example policies: %d files, %v", len(all), err)
	}
	var files []policy.File
	for _, f := range all {
		keep := true
		for _, d := range drop {
			keep = keep && !strings.Contains(f.Name, d)
		}
		if keep {
			files = append(files, f)
		}
	}
	return files
}

// policies compiles the shipped example policies, without the files whose
// name contains one of drop, plus extra sources.
func policies(t testing.TB, drop []string, extra ...string) *policy.Set {
	t.Helper()
	files := deployFiles(t, drop)
	for i, src := range extra {
		files = append(files, policy.File{Name: "extra" + string(rune('a'+i)) + ".cedar", Src: []byte(src)})
	}
	set, err := policy.Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func full(t testing.TB) *policy.Set { return policies(t, nil) }
func base(t testing.TB) *policy.Set { return policies(t, []string{"no-reinvoke"}) }

func records(t testing.TB, b *runtreetest.Builder) []ledger.Record {
	t.Helper()
	recs, err := b.Records()
	if err != nil {
		t.Fatal(err)
	}
	// As read from storage: decoded from the raw bytes.
	for i := range recs {
		ev, err := schemas.DecodeEvent(recs[i].Raw)
		if err != nil {
			t.Fatal(err)
		}
		recs[i].Event = *ev
	}
	return recs
}

func evaluate(t testing.TB, recs []ledger.Record, set *policy.Set, o whatif.Options) *whatif.Report {
	t.Helper()
	rep, err := whatif.Evaluate(recs[0].Event.RunID, recs, set, o)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("what-if:\n%s", text.String())
	return rep
}

// loopHalted is the loop scenario as the gateway recorded it without the
// deny policy: the re-invocation closes a cycle, the cycle limit trips and
// the run halts.
func loopHalted(t testing.TB) []ledger.Record {
	b := runtreetest.New("run-loop", t0, runtreetest.DemoCast())
	root := b.Start("tomas", "orchestrator", "brief", "research-brief", nil, "users-start-runs-at-entry-agents")
	res := b.Invoke(root, "research", "find sources", "agents-delegate-to-agents")
	den := b.Deny(res, "orchestrator", "re-plan", runtreetest.Denial{Reason: schemas.ReasonLoop, Message: "closes a cycle",
		PolicyIDs: []string{"agents-delegate-to-agents"}, Breach: &schemas.Breach{Limit: limits.Cycle, Value: 1}})
	b.Breach(schemas.RunLimitBreached{Limit: limits.Cycle, Value: 1, Reason: schemas.ReasonLoop, From: "research", To: "orchestrator",
		Action: "halt", HopID: den})
	b.Halt("gateway", "cycle tripped on research -> orchestrator (1 > 0)", limits.Cycle)
	return records(t, b)
}

// allNight is the incident as it happened without Tollgate's limits: a
// permissive policy let research re-invoke the orchestrator again and
// again; every hop replied and spent.
func allNight(t testing.TB, rounds int) []ledger.Record {
	b := runtreetest.New("run-night", t0, runtreetest.DemoCast())
	root := b.Start("tomas", "orchestrator", "brief", "research-brief", nil, "users-start-runs-at-entry-agents")
	hops := []string{root}
	parent := root
	for i := 0; i < rounds; i++ {
		r := b.Invoke(parent, "research", "find sources", "agents-delegate-to-agents")
		o := b.Invoke(r, "orchestrator", "re-plan", "agents-delegate-to-agents", "loops-allowed")
		hops = append(hops, r, o)
		parent = o
	}
	for i := len(hops) - 1; i >= 0; i-- {
		b.Reply(hops[i], schemas.StateCompleted, "ok", &schemas.Usage{InputTokens: 100, OutputTokens: 50, CostUSD: 0.01})
	}
	b.Complete()
	return records(t, b)
}

// TestLoopStoppedAtFirstReinvocation: with the shipped policies the loop
// scenario is stopped by policy at the first re-invocation, before the
// cycle limit trips, so neither the breach nor the halt happens.
func TestLoopStoppedAtFirstReinvocation(t *testing.T) {
	rep := evaluate(t, loopHalted(t), full(t), whatif.Options{Source: "deploy/policies"})
	if rep.Decisions != 3 || rep.Evaluated != 3 || rep.Changed != 1 || rep.FirstChange != 4 {
		t.Fatalf("decisions %d, evaluated %d, changed %d, first change %d", rep.Decisions, rep.Evaluated, rep.Changed, rep.FirstChange)
	}
	h := rep.Changes()[0]
	if h.From != "research" || h.To != "orchestrator" || h.Change != whatif.Redenied || h.Candidate.Reason != schemas.ReasonPolicy ||
		len(h.Candidate.PolicyIDs) != 1 || h.Candidate.PolicyIDs[0] != forbidOrchestrator || h.Recorded.Limit != limits.Cycle {
		t.Fatalf("first change %+v (candidate %+v)", h, h.Candidate)
	}
	if len(rep.Vanished) != 2 || rep.Vanished[0].Type != schemas.EventRunLimitBreached || rep.Vanished[1].Type != schemas.EventRunHalted {
		t.Fatalf("vanished %+v", rep.Vanished)
	}
}

// TestAllNightLoopStoppedAndPruned: the loop that ran all night is stopped
// by the shipped policies at its first re-invocation, and everything below
// it would not have happened.
func TestAllNightLoopStoppedAndPruned(t *testing.T) {
	const rounds = 10
	rep := evaluate(t, allNight(t, rounds), full(t), whatif.Options{})
	if rep.Changed != 1 || rep.Pruned != 2*rounds-2 || rep.Evaluated != 3 {
		t.Fatalf("changed %d, pruned %d, evaluated %d", rep.Changed, rep.Pruned, rep.Evaluated)
	}
	h := rep.Changes()[0]
	if h.Seq != rep.FirstChange || h.From != "research" || h.To != "orchestrator" || h.Depth != 2 || h.Change != whatif.Stopped ||
		h.Candidate.PolicyIDs[0] != forbidOrchestrator {
		t.Fatalf("first change %+v", h)
	}
	// The stopped hop and the 18 below it spent 0.01 each.
	if rep.Avoided.Hops != 2*rounds-1 || rep.Avoided.Tokens != int64(150*(2*rounds-1)) {
		t.Fatalf("avoided %+v", rep.Avoided)
	}
	for _, p := range rep.Hops[4:] {
		if p.PrunedBy != h.HopID || p.Candidate != nil {
			t.Fatalf("hop %s below the stopped one: pruned by %q, candidate %+v", p.HopID, p.PrunedBy, p.Candidate)
		}
	}
}

// TestPolicyDenialBecomesLoopDenial: the incident recorded with the deny
// policy, tried against the set without it: the cycle limit would then
// deny the hop, and trip.
func TestPolicyDenialBecomesLoopDenial(t *testing.T) {
	b := runtreetest.New("run-incident", t0, runtreetest.DemoCast())
	root := b.Start("tomas", "orchestrator", "brief", "research-brief", nil, "users-start-runs-at-entry-agents")
	res := b.Invoke(root, "research", "find sources", "agents-delegate-to-agents")
	b.Deny(res, "orchestrator", "re-plan", runtreetest.Denial{Reason: schemas.ReasonPolicy, Message: "forbidden",
		PolicyIDs: []string{forbidOrchestrator}})
	b.Reply(res, schemas.StateCompleted, "ok", nil)
	b.Reply(root, schemas.StateCompleted, "ok", nil)
	b.Complete()
	recs := records(t, b)

	rep := evaluate(t, recs, base(t), whatif.Options{})
	h := rep.Changes()
	if len(h) != 1 || h[0].Change != whatif.Redenied || h[0].Candidate.Reason != schemas.ReasonLoop || h[0].Candidate.Limit != limits.Cycle {
		t.Fatalf("changes %+v", h)
	}

	// With a permit that lets cycles through, the hop would pass.
	loose := policies(t, []string{"no-reinvoke"}, `@id("loops-allowed") @cycle("allow")
permit (principal is Agent, action == Action::"invoke", resource is Agent) when { context.is_cycle };`)
	rep = evaluate(t, recs, loose, whatif.Options{})
	h = rep.Changes()
	if len(h) != 1 || h[0].Change != whatif.Admitted || h[0].Candidate.Denied() || !strings.Contains(h[0].Note, "not re-checked") {
		t.Fatalf("changes %+v", h)
	}

	// The same set again: nothing changes.
	if rep := evaluate(t, recs, full(t), whatif.Options{}); rep.Changed != 0 || rep.Evaluated != 3 {
		t.Fatalf("against the recorded set: %d changes", rep.Changed)
	}
}

// TestNonPolicyDenialsKept: denials the policy set does not decide keep
// their recorded verdict and say why.
func TestNonPolicyDenialsKept(t *testing.T) {
	b := runtreetest.New("run-kept", t0, runtreetest.DemoCast())
	root := b.Start("tomas", "orchestrator", "brief", "research-brief", nil, "users-start-runs-at-entry-agents")
	b.Deny(root, "research", "x", runtreetest.Denial{Reason: schemas.ReasonRate, Message: "over its rate",
		Breach: &schemas.Breach{Limit: limits.Rate, Value: 61, Bound: 60}})
	b.Deny(root, "writer", "x", runtreetest.Denial{Reason: schemas.ReasonIdentity, Message: "bad signature"})
	b.Deny(root, "critic", "x", runtreetest.Denial{Reason: schemas.ReasonDepth, Message: "too deep", PolicyIDs: []string{"agents-delegate-to-agents"},
		Breach: &schemas.Breach{Limit: limits.Depth, Value: 6, Bound: 5}})
	recs := records(t, b)
	// A candidate that forbids every agent's call: the depth denial becomes
	// a policy denial (policy is checked first); rate and identity are kept.
	rep := evaluate(t, recs, policies(t, nil, `@id("nobody") forbid (principal is Agent, action, resource);`), whatif.Options{})
	got := map[string]*whatif.Hop{}
	for _, h := range rep.Hops {
		got[h.To] = h
	}
	if h := got["research"]; h.Evaluated() || !strings.Contains(h.Note, "rate limit is checked before policy") {
		t.Fatalf("rate denial %+v", h)
	}
	if h := got["writer"]; h.Evaluated() || !strings.Contains(h.Note, "identity") {
		t.Fatalf("identity denial %+v", h)
	}
	if h := got["critic"]; h.Change != whatif.Redenied || h.Candidate.PolicyIDs[0] != "nobody" {
		t.Fatalf("depth denial %+v", h)
	}
	if h := got["orchestrator"]; h.Change != "" || rep.Pruned != 0 || rep.NotEvaluated != 2 || rep.Changed != 1 {
		t.Fatalf("root %+v, pruned %d, not evaluated %d, changed %d", h, rep.Pruned, rep.NotEvaluated, rep.Changed)
	}

	// Stop the root itself and every attempt below it would not have
	// happened, whatever it was denied for.
	rep = evaluate(t, recs, policies(t, nil, `@id("nobody") forbid (principal, action, resource);`), whatif.Options{})
	if rep.Changed != 1 || rep.Pruned != 3 || rep.Hops[0].Change != whatif.Stopped {
		t.Fatalf("root stopped: changed %d, pruned %d", rep.Changed, rep.Pruned)
	}
}

// TestRecordedAttributesAndContext: the entities are those the decision
// recorded, even when they changed during the run, and the context is the
// run's state before each hop.
func TestRecordedAttributesAndContext(t *testing.T) {
	b := runtreetest.New("run-attrs", t0, runtreetest.DemoCast())
	root := b.Start("tomas", "orchestrator", "brief", "research-brief", nil, "users-start-runs-at-entry-agents")
	b.Invoke(root, "research", "one", "agents-delegate-to-agents")
	b.SetMember(runtreetest.Member{ID: "research", Type: schemas.TypeAgent, Team: "research", Tags: []string{"quarantined"}})
	b.Invoke(root, "research", "two", "agents-delegate-to-agents")
	b.Invoke(root, "writer", "three", "agents-delegate-to-agents")
	b.Invoke(root, "critic", "four", "agents-delegate-to-agents")
	recs := records(t, b)
	set := policies(t, nil,
		`@id("no-quarantined") forbid (principal, action, resource is Agent) when { resource.tags.contains("quarantined") };`,
		`@id("four-hops-at-most") forbid (principal, action, resource) when { context.hops_so_far >= 4 };`)
	rep := evaluate(t, recs, set, whatif.Options{})
	var stopped []string
	for _, h := range rep.Changes() {
		stopped = append(stopped, h.To+":"+strings.Join(h.Candidate.PolicyIDs, ","))
	}
	// Hop 3 is research tagged quarantined; hop 5 (critic) comes after 4
	// allowed hops.
	if strings.Join(stopped, " ") != "research:no-quarantined critic:four-hops-at-most" {
		t.Fatalf("stopped %v", stopped)
	}
}

// TestMissingAttributes: a ledger written before decisions recorded the
// Cedar attributes is kept as recorded, unless identities are given.
func TestMissingAttributes(t *testing.T) {
	b := runtreetest.New("run-old", t0, runtreetest.DemoCast()).WithoutAttributes()
	root := b.Start("tomas", "orchestrator", "brief", "", nil, "users-start-runs-at-entry-agents")
	res := b.Invoke(root, "research", "find", "agents-delegate-to-agents")
	b.Invoke(res, "orchestrator", "again", "agents-delegate-to-agents")
	recs := records(t, b)
	rep := evaluate(t, recs, full(t), whatif.Options{})
	if rep.Evaluated != 0 || rep.NotEvaluated != 3 || !strings.Contains(rep.Hops[0].Note, "does not record the Cedar attributes") {
		t.Fatalf("evaluated %d, kept %d: %q", rep.Evaluated, rep.NotEvaluated, rep.Hops[0].Note)
	}
	var ids []broker.Identity
	for _, m := range runtreetest.DemoCast() {
		ids = append(ids, broker.Identity{ID: m.ID, Type: m.Type, Team: m.Team, Tags: m.Tags})
	}
	rep = evaluate(t, recs, full(t), whatif.Options{Identities: ids})
	if rep.Evaluated != 3 || rep.Changed != 1 || rep.Changes()[0].To != "orchestrator" {
		t.Fatalf("with identities: evaluated %d, changes %+v", rep.Evaluated, rep.Changes())
	}
}

// TestEvaluateRefusesGarbage: records that do not fold are an error, not a
// panic.
func TestEvaluateRefusesGarbage(t *testing.T) {
	recs := loopHalted(t)
	recs[1], recs[2] = recs[2], recs[1]
	if _, err := whatif.Evaluate("run-loop", recs, full(t), whatif.Options{}); err == nil {
		t.Fatal("out-of-order records evaluated")
	}
	if _, err := whatif.Evaluate("run-loop", loopHalted(t), nil, whatif.Options{}); err == nil {
		t.Fatal("no policy set accepted")
	}
	bad := loopHalted(t)
	bad[2].Event.Data = []byte(`{"from":7}`)
	if _, err := whatif.Evaluate("run-loop", bad, full(t), whatif.Options{}); err == nil {
		t.Fatal("undecodable data evaluated")
	}
}
