package projections_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/projections"
)

func TestWriteGraphDOT(t *testing.T) {
	var b strings.Builder
	err := projections.WriteGraphDOT(&b, []projections.Edge{
		{Caller: "tomas", Target: "orchestrator", Calls: 1, Allowed: 1, CostUSD: 0.015},
		{Caller: `re"search`, Target: "orchestrator", Calls: 2, Denials: 2, Cycles: 2, Reasons: []string{"loop", "policy"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `digraph calls {
  rankdir=LR;
  node [shape=box, style=rounded];
  "tomas" -> "orchestrator" [label="1 call, $0.0150"];
  "re\"search" -> "orchestrator" [label="2 calls, 2 denied (loop,policy)", color=red, fontcolor=red, style=dashed];
}
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
