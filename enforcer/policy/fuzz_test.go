package policy_test

import (
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// FuzzCompile feeds the policy loader arbitrary Cedar text: it never
// panics, a policy set it accepts builds an engine, and the engine decides
// a request (a deny when any policy fails to evaluate). Seeds are the
// shipped policies and the cases under testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	files, err := policy.ReadFS(deploy.Policies(), "")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		f.Add(file.Src)
	}
	f.Add([]byte(`permit (principal, action, resource);`))
	f.Add([]byte(`forbid (principal, action == Action::"invoke", resource) when { context.depth > 3 };`))
	f.Add([]byte(`@id("x") permit (principal is Agent, action, resource) when { context.nope };`))
	dir, err := broker.NewDirectory([]broker.Identity{
		{ID: "tomas", Type: schemas.TypeUser},
		{ID: "orchestrator", Type: schemas.TypeAgent, Tags: []string{"entry"}},
		{ID: "research", Type: schemas.TypeAgent},
	})
	if err != nil {
		f.Fatal(err)
	}
	a, _ := dir.Get("orchestrator")
	b, _ := dir.Get("research")
	f.Fuzz(func(t *testing.T, src []byte) {
		set, err := policy.Compile([]policy.File{{Name: "fuzz.cedar", Src: src}})
		if err != nil {
			return
		}
		e, err := policy.NewEngine(set, dir)
		if err != nil {
			return
		}
		d := e.Decide(policy.Request{Principal: a, Action: schemas.ActionInvoke, Resource: b, Context: policy.Context{Depth: 1}})
		if d.Allow && len(d.Errors) > 0 {
			t.Fatalf("allowed although policies failed to evaluate: %v", d.Errors)
		}
	})
}
