package policy

import (
	"math/bits"
	"testing"
)

// TestGuardsNarrowTheCandidates checks what the guards are for, on the
// benchmark's fixture (1,000 agents, 2,000 policies): of the ~10 policies
// whose scope can match a hop, those whose conditions are false are left
// out, and those whose conditions are true are evaluated as their scope,
// so that a hop whose forbids do not fire evaluates about one policy and
// builds no context record, and one whose forbids all fire builds none
// either. (That the guards change no decision is the differential tests'
// part.)
func TestGuardsNarrowTheCandidates(t *testing.T) {
	dir := scaleDirectory(t, 1000)
	reqs := scaleRequests(t, dir, 1000, 1024)
	set, err := Compile(scalePolicies(t, 2000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(set, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name              string
		reqs              []Request
		maxKept, maxReads float64
	}{
		{"forbids do not fire", reqs, 1.5, 0.5},
		{"forbids fire", firingRequests(reqs), 6, 0.5},
	} {
		var before, kept, scopes, reads int
		for _, r := range tc.reqs {
			p, a, res := e.subject(r.Principal), e.action(r.Action), e.subject(r.Resource)
			pos := collect(nil, e.typed(p, a, res), &p.as[principalTerm], a.candidates, &res.as[resourceTerm])
			before += len(pos)
			pos = set.index.refine(pos, &facts{ctx: r.Context, p: p, r: res})
			kept += len(pos)
			for _, i := range pos {
				if i&scopeOnlyBit != 0 {
					scopes++
				}
			}
			reads += bits.OnesCount16(uint16(set.index.readsAll(pos)))
		}
		n := float64(len(tc.reqs))
		t.Logf("%s: %.1f candidates by scope, %.1f kept (%.1f as their scope), %.2f context attributes read",
			tc.name, float64(before)/n, float64(kept)/n, float64(scopes)/n, float64(reads)/n)
		if float64(kept)/n > tc.maxKept || float64(reads)/n > tc.maxReads || float64(before)/n < 5 {
			t.Errorf("%s: the guards leave %.1f of %.1f candidates, reading %.2f attributes; want at most %.1f and %.1f",
				tc.name, float64(kept)/n, float64(before)/n, float64(reads)/n, tc.maxKept, tc.maxReads)
		}
	}
}
