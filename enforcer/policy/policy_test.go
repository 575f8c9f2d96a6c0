package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

func directory(t *testing.T) *broker.Directory {
	t.Helper()
	dir, err := broker.NewDirectory([]broker.Identity{
		{ID: "tomas", Type: schemas.TypeUser, Team: "research"},
		{ID: "orchestrator", Type: schemas.TypeAgent, Team: "platform", Tags: []string{"entry", "orchestrator"}},
		{ID: "research", Type: schemas.TypeAgent, Team: "research"},
		{ID: "writer", Type: schemas.TypeAgent, Team: "content"},
		{ID: "search", Type: schemas.TypeTool, Team: "research"},
		{ID: "gpt", Type: schemas.TypeModel, Team: "platform"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func examplePolicies(t *testing.T) []policy.File {
	t.Helper()
	files, err := policy.ReadFS(deploy.Policies(), "")
	if err != nil || len(files) == 0 {
		t.Fatalf("example policies: %d files, %v", len(files), err)
	}
	return files
}

func engine(t *testing.T, files []policy.File) (*policy.Engine, *broker.Directory) {
	t.Helper()
	set, err := policy.Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	dir := directory(t)
	e, err := policy.NewEngine(set, dir)
	if err != nil {
		t.Fatal(err)
	}
	return e, dir
}

func TestExamplePolicies(t *testing.T) {
	e, dir := engine(t, examplePolicies(t))
	get := func(id string) *broker.Identity {
		i, ok := dir.Get(id)
		if !ok {
			t.Fatalf("no identity %s", id)
		}
		return i
	}
	cases := []struct {
		name         string
		from, to     string
		action       schemas.Action
		depth        int
		allow        bool
		wantPolicies []string
	}{
		{"user starts a run at the entry agent", "tomas", "orchestrator", schemas.ActionInvoke, 0, true, []string{"users-start-runs-at-entry-agents"}},
		{"user may not start at a non-entry agent", "tomas", "research", schemas.ActionInvoke, 0, false, nil},
		{"orchestrator delegates", "orchestrator", "research", schemas.ActionInvoke, 1, true, []string{"agents-delegate-to-agents"}},
		{"sub-agent re-invokes the orchestrator", "research", "orchestrator", schemas.ActionInvoke, 2, false, []string{"no-agent-invokes-an-orchestrator"}},
		{"own team's tool", "research", "search", schemas.ActionCallTool, 2, true, []string{"agents-call-own-team-tools"}},
		{"other team's tool", "writer", "search", schemas.ActionCallTool, 2, false, nil},
		{"model", "writer", "gpt", schemas.ActionCallModel, 2, true, []string{"agents-call-models"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(policy.Request{Principal: get(tc.from), Action: tc.action, Resource: get(tc.to),
				Context: policy.Context{RunID: "r", Workflow: "default", Depth: tc.depth, Ancestry: []string{"tomas"}, OnBehalfOf: "tomas"}})
			if d.Allow != tc.allow || !slices.Equal(d.PolicyIDs, tc.wantPolicies) || len(d.Errors) > 0 {
				t.Fatalf("got allow=%v policies=%v errors=%v; want allow=%v policies=%v", d.Allow, d.PolicyIDs, d.Errors, tc.allow, tc.wantPolicies)
			}
		})
	}
}

// TestEvaluationErrorDenies guards the fail-open trap: Cedar skips a policy
// whose evaluation errors, so a broken forbid would let the hop through.
func TestEvaluationErrorDenies(t *testing.T) {
	files := []policy.File{
		{Name: "allow.cedar", Src: []byte(`@id("allow-all") permit (principal, action, resource);`)},
		// Overflows at runtime: an evaluation error, not a type error.
		{Name: "forbid.cedar", Src: []byte(`@id("overflowing-forbid") forbid (principal, action, resource) when { context.depth * 9223372036854775807 > 1 };`)},
	}
	e, dir := engine(t, files)
	a, _ := dir.Get("orchestrator")
	b, _ := dir.Get("research")
	ok := e.Decide(policy.Request{Principal: a, Action: schemas.ActionInvoke, Resource: b, Context: policy.Context{Depth: 0}})
	if !ok.Allow {
		t.Fatalf("depth 0 (no overflow) should be allowed: %+v", ok)
	}
	d := e.Decide(policy.Request{Principal: a, Action: schemas.ActionInvoke, Resource: b, Context: policy.Context{Depth: 2}})
	if d.Allow || len(d.Errors) == 0 || !slices.Contains(d.PolicyIDs, "overflowing-forbid") {
		t.Fatalf("an erroring forbid must deny and be named: %+v", d)
	}
}

func TestCompileRejects(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"syntax", `permit (principal, action, resource`, "broken.cedar"},
		{"unknown entity type", `permit (principal is Robot, action, resource);`, "does not match the schema"},
		{"unknown attribute", `permit (principal is Agent, action == Action::"invoke", resource is Agent) when { principal.salary > 3 };`, "does not match the schema"},
		{"unknown context field", `forbid (principal, action, resource) when { context.weather == "rain" };`, "does not match the schema"},
		{"wrong type", `forbid (principal, action, resource) when { context.depth == "deep" };`, "does not match the schema"},
		{"duplicate id", `@id("x") permit (principal, action, resource); @id("x") forbid (principal, action, resource);`, `"x" is also used`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Compile([]policy.File{{Name: "broken.cedar", Src: []byte(tc.src)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPoliciesWithoutIDAreNamedByFileAndLine(t *testing.T) {
	set, err := policy.Compile([]policy.File{{Name: "dir/team.cedar", Src: []byte("\n\npermit (principal, action, resource);")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.IDs(); !slices.Equal(got, []string{"team.cedar:3"}) {
		t.Fatalf("ids %v", got)
	}
}

func TestReadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.cedar", "b.cedar"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(`permit (principal, action, resource);`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := policy.ReadFiles([]string{filepath.Join(dir, "*.cedar")})
	if err != nil || len(files) != 2 {
		t.Fatalf("got %d files, %v", len(files), err)
	}
	if _, err := policy.ReadFiles([]string{filepath.Join(dir, "missing.cedar")}); err == nil {
		t.Fatal("a path matching nothing must be an error")
	}
}

func TestAllowsCycle(t *testing.T) {
	set, err := policy.Compile([]policy.File{{Name: "c.cedar", Src: []byte(`
@id("plain") permit (principal, action, resource);
@id("reentry") @cycle("allow") permit (principal == Agent::"research", action, resource);
@id("other-note") @cycle("deny") permit (principal == Agent::"writer", action, resource);`)}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		d    policy.Decision
		want bool
	}{
		{policy.Decision{Allow: true, PolicyIDs: []string{"plain", "reentry"}}, true},
		{policy.Decision{Allow: true, PolicyIDs: []string{"plain"}}, false},
		{policy.Decision{Allow: true, PolicyIDs: []string{"other-note"}}, false},
		{policy.Decision{Allow: false, PolicyIDs: []string{"reentry"}}, false}, // a deny never lets a cycle through
	}
	for _, tc := range cases {
		if got := set.AllowsCycle(tc.d); got != tc.want {
			t.Errorf("AllowsCycle(%+v) = %v, want %v", tc.d, got, tc.want)
		}
	}
}

func TestEmptySetDeniesEverything(t *testing.T) {
	e, dir := engine(t, nil)
	a, _ := dir.Get("orchestrator")
	b, _ := dir.Get("research")
	if d := e.Decide(policy.Request{Principal: a, Action: schemas.ActionInvoke, Resource: b}); d.Allow || len(d.PolicyIDs) > 0 || len(d.Errors) > 0 {
		t.Fatalf("no policy: %+v", d)
	}
	if d := e.Decide(policy.Request{Action: schemas.ActionInvoke, Resource: b}); d.Allow || len(d.Errors) == 0 {
		t.Fatalf("no principal: %+v", d)
	}
}

// TestDecideConcurrently: an engine is shared by every shard; decisions
// made at once are the ones made one at a time (run with -race).
func TestDecideConcurrently(t *testing.T) {
	e, dir := engine(t, examplePolicies(t))
	ids := dir.All()
	var reqs []policy.Request
	var want []policy.Decision
	for i, p := range ids {
		for j, r := range ids {
			action := schemas.ActionInvoke
			switch r.Type {
			case schemas.TypeTool:
				action = schemas.ActionCallTool
			case schemas.TypeModel:
				action = schemas.ActionCallModel
			}
			req := policy.Request{Principal: p, Action: action, Resource: r, Context: policy.Context{Depth: i + j, Ancestry: []string{p.ID}}}
			reqs = append(reqs, req)
			want = append(want, e.Decide(req))
		}
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 50 {
				for i, r := range reqs {
					if got := e.Decide(r); got.Allow != want[i].Allow || !slices.Equal(got.PolicyIDs, want[i].PolicyIDs) || !slices.Equal(got.Errors, want[i].Errors) {
						errs <- fmt.Errorf("request %d: got %+v, want %+v", i, got, want[i])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
