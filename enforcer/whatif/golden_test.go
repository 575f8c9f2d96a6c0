package whatif_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/whatif"
	"github.com/tollgate/tollgate/ledger"
)

// TestGoldenReports pins the what-if reports of the fixed loop runs, text
// and JSON, against the shipped policies.
func TestGoldenReports(t *testing.T) {
	for name, recs := range map[string][]ledger.Record{"loop-halted": loopHalted(t), "all-night": allNight(t, 4)} {
		rep, err := whatif.Evaluate(recs[0].Event.RunID, recs, full(t), whatif.Options{Source: "deploy/policies"})
		if err != nil {
			t.Fatal(err)
		}
		var text bytes.Buffer
		if err := rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		js, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		brokertest.Golden(t, name+".txt", text.Bytes())
		brokertest.Golden(t, name+".json", append(js, '\n'))
	}
}
