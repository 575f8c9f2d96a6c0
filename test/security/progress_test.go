package security_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// TestProgressOnlyFromTheHopsTarget: progress (kind "progress") is taken
// only from the target of an open hop, addressed to its caller, and at
// most max_progress_per_hop (100) per hop. Progress for a hop delivered
// to someone else, addressed to someone else, over the bound or for a
// closed hop is denied with a reason and forwarded nowhere; the progress
// within the bound reaches the caller (the orchestrator's agent client,
// which acknowledges and ignores it) on subjects the gateway numbers, and
// the run and a legitimate run afterwards complete.
func TestProgressOnlyFromTheHopsTarget(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		tk := mallory.delegatedTo(t)
		root := tk.Context.ParentHopID // tomas → orchestrator: not mallory's
		progress := func(hop, to, text string) []byte {
			env := mallory.envelope(schemas.KindProgress)
			env.HopID, env.RunID, env.To = hop, tk.Run, to
			out, _ := json.Marshal(map[string]any{"taskId": "t", "contextId": "c",
				"status": map[string]any{"state": "TASK_STATE_WORKING", "message": map[string]any{"messageId": schemas.NewID(), "role": "ROLE_AGENT", "parts": []any{map[string]any{"text": text}}}}})
			env.Result = &schemas.Result{Status: schemas.StateWorking, Output: out}
			return mallory.sign(t, env)
		}
		notForwarded := func(t *testing.T, to, hop string, n int) {
			t.Helper()
			if g.admin != nil && g.lastOn(t, broker.StreamDeliver, g.subj.Deliver(to, hop, schemas.ProgressToken(n))) != nil {
				t.Fatalf("progress %d of hop %s was forwarded to %s", n, hop, to)
			}
		}

		t.Run("HopNotDeliveredToSender", func(t *testing.T) {
			mallory.wantDenied(t, tk.Run, progress(root, "tomas", "not mine"), nil, schemas.ReasonHop, `was delivered to "orchestrator"; only it may send progress`)
			notForwarded(t, "tomas", root, 1)
		})
		t.Run("AddressedToAnother", func(t *testing.T) {
			mallory.wantDenied(t, tk.Run, progress(tk.Hop, "tomas", "astray"), nil, schemas.ReasonHop, `progress is addressed to "tomas"`)
			notForwarded(t, "tomas", tk.Hop, 1)
		})
		t.Run("OverTheBound", func(t *testing.T) {
			for i := range 100 {
				mallory.submit(t, tk.Run, progress(tk.Hop, "orchestrator", fmt.Sprint("step ", i)), nil)
			}
			mallory.wantDenied(t, tk.Run, progress(tk.Hop, "orchestrator", "one too many"), nil, schemas.ReasonHop, "max_progress_per_hop")
			recs := g.ops.read(t, tk.Run)
			var ns []int
			for _, r := range recs {
				if r.Event.Type == schemas.EventHopProgress {
					d, err := r.Event.DecodeData()
					if err != nil {
						t.Fatal(err)
					}
					if p := d.(*schemas.HopProgress); p.By == "mallory" && r.Event.HopID == tk.Hop {
						ns = append(ns, p.N)
					}
				}
			}
			if len(ns) != 100 || ns[0] != 1 || ns[99] != 100 {
				t.Fatalf("hop.progress events %v, want 1..100", ns)
			}
			if g.admin != nil && g.lastOn(t, broker.StreamDeliver, g.subj.Deliver("orchestrator", tk.Hop, schemas.ProgressToken(100))) == nil {
				t.Fatal("the 100th progress was not forwarded to the orchestrator")
			}
			notForwarded(t, "orchestrator", tk.Hop, 101)
		})
		t.Run("ClosedHop", func(t *testing.T) {
			tk.finish(t, nil) // the orchestrator's call ignored the progress and got the reply
			mallory.wantDenied(t, tk.Run, progress(tk.Hop, "orchestrator", "late"), nil, schemas.ReasonHop, "is already closed")
			notForwarded(t, "orchestrator", tk.Hop, 101)
		})
		g.cast.legit(t)
	})
}
