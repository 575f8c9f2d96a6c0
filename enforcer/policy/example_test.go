package policy_test

import (
	"fmt"
	"log"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// Policies are compiled once and validated against the Cedar schema; an
// engine over the registered identities then decides hops with default
// deny, naming the policies that decided.
func Example() {
	set, err := policy.Compile([]policy.File{{Name: "team.cedar", Src: []byte(`
@id("agents-delegate") permit (principal is Agent, action == Action::"invoke", resource is Agent);
@id("no-orchestrator") forbid (principal is Agent, action == Action::"invoke", resource is Agent)
when { resource.tags.contains("orchestrator") };`)}})
	if err != nil {
		log.Fatal(err)
	}
	dir, err := broker.NewDirectory([]broker.Identity{
		{ID: "orchestrator", Type: schemas.TypeAgent, Tags: []string{"orchestrator"}},
		{ID: "research", Type: schemas.TypeAgent},
		{ID: "writer", Type: schemas.TypeAgent},
	})
	if err != nil {
		log.Fatal(err)
	}
	engine, err := policy.NewEngine(set, dir)
	if err != nil {
		log.Fatal(err)
	}
	research, _ := dir.Get("research")
	for _, to := range []string{"writer", "orchestrator"} {
		target, _ := dir.Get(to)
		d := engine.Decide(policy.Request{Principal: research, Action: schemas.ActionInvoke, Resource: target,
			Context: policy.Context{RunID: "r1", Depth: 1, Ancestry: []string{"tomas", "orchestrator"}}})
		fmt.Printf("research -> %s: allow=%v by %v\n", to, d.Allow, d.PolicyIDs)
	}
	// Output:
	// research -> writer: allow=true by [agents-delegate]
	// research -> orchestrator: allow=false by [no-orchestrator]
}
