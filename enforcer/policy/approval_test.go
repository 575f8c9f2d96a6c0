package policy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/enforcer/policy"
)

func TestApprovalFor(t *testing.T) {
	set, err := policy.Compile([]policy.File{{Name: "a.cedar", Src: []byte(`
@id("plain") permit (principal, action, resource);
@id("payments") @approval("required") @approvers("finance, security") permit (principal, action, resource == Agent::"payments");
@id("deploy") @approval("required") @approvers("sre") permit (principal, action, resource == Agent::"deploy");
@id("anyone") @approval("required") permit (principal, action, resource == Agent::"mail");`)}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		d         policy.Decision
		required  bool
		approvers []string
	}{
		{policy.Decision{Allow: true, PolicyIDs: []string{"plain"}}, false, nil},
		{policy.Decision{Allow: true, PolicyIDs: []string{"plain", "payments"}}, true, []string{"finance", "security"}},
		{policy.Decision{Allow: true, PolicyIDs: []string{"payments", "deploy"}}, true, []string{"finance", "security", "sre"}},
		// One requiring permit names no group: any operator may answer.
		{policy.Decision{Allow: true, PolicyIDs: []string{"payments", "anyone"}}, true, nil},
		// A deny holds nothing.
		{policy.Decision{Allow: false, PolicyIDs: []string{"payments"}}, false, nil},
	}
	for _, tc := range cases {
		a := set.ApprovalFor(tc.d)
		if a.Required != tc.required || !slices.Equal(a.Approvers, tc.approvers) {
			t.Errorf("ApprovalFor(%v) = %+v, want required=%v approvers %v", tc.d.PolicyIDs, a, tc.required, tc.approvers)
		}
	}
}

func TestApprovalAnnotationsAreChecked(t *testing.T) {
	cases := map[string]string{
		`@approval("yes") permit (principal, action, resource);`:                             `the only value is "required"`,
		`@approval("required") forbid (principal, action, resource);`:                        "only a permit",
		`@approvers("finance") permit (principal, action, resource);`:                        "without @approval",
		`@approval("required") @approvers("fin ance") permit (principal, action, resource);`: "group",
	}
	for src, want := range cases {
		_, err := policy.Compile([]policy.File{{Name: "bad.cedar", Src: []byte(src)}})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "bad.cedar:1") {
			t.Errorf("%s: %v, want an error saying %q with the place", src, err, want)
		}
	}
}
