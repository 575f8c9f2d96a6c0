package whatif_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/whatif"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

var demoIdentities = []broker.Identity{
	{ID: "tomas", Type: schemas.TypeUser, Team: "research", RequireSignature: true},
	{ID: "orchestrator", Type: schemas.TypeAgent, Team: "platform", Tags: []string{"entry", "orchestrator"}, RequireSignature: true},
	{ID: "research", Type: schemas.TypeAgent, Team: "research", RequireSignature: true},
	{ID: "writer", Type: schemas.TypeAgent, Team: "content", RequireSignature: true},
	{ID: "critic", Type: schemas.TypeAgent, Team: "content", RequireSignature: true},
}

// loopsAllowed lets every cycle through: the permissive policy of the
// night of the incident.
const loopsAllowed = `@id("loops-allowed") @cycle("allow")
permit (principal is Agent, action == Action::"invoke", resource is Agent) when { context.is_cycle };`

// runLoop drives the loop scenario through a real gateway with the given
// policies: the orchestrator delegates to research, which re-invokes the
// orchestrator, until the gateway stops the cycle and halts the run. It
// returns the run's records, verified (chain and every signature).
func runLoop(t *testing.T, files []policy.File) []ledger.Record {
	t.Helper()
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: files})
	g.Agent("orchestrator", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		_, err := task.Delegate(ctx, "research", agent.UserText("find sources"))
		return &agent.Result{Output: agent.AgentText("planned"), Usage: &schemas.Usage{InputTokens: 100, CostUSD: 0.01}}, err
	})
	g.Agent("research", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		// The incident's bug: after a transient error, re-plan by
		// re-invoking the orchestrator.
		_, _ = task.Delegate(ctx, "orchestrator", agent.UserText("retry: search failed, re-plan"))
		return &agent.Result{Output: agent.AgentText("found sources"), Usage: &schemas.Usage{InputTokens: 200, CostUSD: 0.02}}, nil
	})
	tomas := g.Agent("tomas", nil)
	run := schemas.NewID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = tomas.Start(ctx, "orchestrator", agent.UserText("Write a brief"), agent.WithRunID(run)) // halted: an error is expected

	brokertest.WaitFor(t, 20*time.Second, func() (bool, error) {
		st, err := g.Ledger.Load(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Halted {
			return false, fmt.Errorf("run %s did not halt: %d allowed, %d denied", run, st.Allowed, st.Denied)
		}
		return true, nil
	})
	recs, err := g.Ledger.Read(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	keys := ledger.Keys{}
	for id, kp := range g.Keys {
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		k, err := broker.ParsePublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = []ed25519.PublicKey{k}
	}
	if v := ledger.Verify(run, recs, keys); !v.OK() || v.Signatures != ledger.SigVerified {
		t.Fatalf("the recorded loop does not verify: %s", v.Summary())
	}
	return recs
}

// TestLoopScenarioWhatIf: the loop scenario as the gateway records it
// without the deny-orchestrator policy (the cycle limit stops it and halts
// the run); tried against the shipped policies, the first hop that changes
// is the first re-invocation, research -> orchestrator, now denied by
// no-agent-invokes-an-orchestrator.
func TestLoopScenarioWhatIf(t *testing.T) {
	recs := runLoop(t, deployFiles(t, []string{"no-reinvoke"}))
	rep := evaluate(t, recs, full(t), whatif.Options{Source: "deploy/policies"})
	changes := rep.Changes()
	if len(changes) == 0 {
		t.Fatal("no hop would change")
	}
	first := changes[0]
	if first.Seq != rep.FirstChange || first.From != "research" || first.To != "orchestrator" || first.Depth != 2 ||
		!first.Candidate.Denied() || first.Candidate.Reason != schemas.ReasonPolicy || first.Candidate.PolicyIDs[0] != forbidOrchestrator {
		t.Fatalf("first change %+v, candidate %+v", first, first.Candidate)
	}
	if first.Recorded.Reason != schemas.ReasonLoop || first.Recorded.Limit != limits.Cycle || len(rep.Vanished) != 2 {
		t.Fatalf("recorded %+v, vanished %+v", first.Recorded, rep.Vanished)
	}
}

// TestRealLoopWhatIf: with a policy that lets cycles through, the loop
// really loops until the depth limit halts it; the shipped policies would
// have stopped it at the first re-invocation, and nothing below it would
// have happened.
func TestRealLoopWhatIf(t *testing.T) {
	files := append(deployFiles(t, []string{"no-reinvoke"}), policy.File{Name: "loops.cedar", Src: []byte(loopsAllowed)})
	recs := runLoop(t, files)
	rep := evaluate(t, recs, full(t), whatif.Options{})
	if rep.Decisions < 6 {
		t.Fatalf("the loop made only %d invokes", rep.Decisions)
	}
	first := rep.Changes()[0]
	if first.From != "research" || first.To != "orchestrator" || first.Depth != 2 || first.Change != whatif.Stopped ||
		first.Candidate.PolicyIDs[0] != forbidOrchestrator {
		t.Fatalf("first change %+v", first)
	}
	if rep.Changed != 1 || rep.Pruned != rep.Decisions-3 || rep.Avoided.Hops == 0 {
		t.Fatalf("changed %d, pruned %d of %d, avoided %+v", rep.Changed, rep.Pruned, rep.Decisions, rep.Avoided)
	}
}
