package a2ahttp

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

// TestReviewTaskListKeysBounded (review finding): the task list keys
// tasks by (caller, target) and bounds each key to PerCaller, but not the
// number of keys, and never forgets a task by age (Window applies only to
// the rebuild). A denied invoke is listed under the target its envelope
// named, which the caller chooses freely (a target that does not exist is
// denied and recorded: the caller is a member of the run). One agent
// sending invokes to N made-up targets makes every A2A ingress hold N
// listed tasks (and hops) for the life of the process, none of which any
// ListTasks call can reach (there is no agent endpoint of that name).
// Here 300 made-up targets, PerCaller 10 and StateBytes 1.
func TestReviewTaskListKeysBounded(t *testing.T) {
	b := newListBed(t)
	run := schemas.NewID()
	rb := runtreetest.New(run, time.Now(), listCast)
	hop := rb.Start("alice", "planner", "plan", "wf", nil, "p")
	const ghosts = 300
	for i := range ghosts {
		id := fmt.Sprintf("ghost-%d", i)
		rb.SetMember(runtreetest.Member{ID: id, Type: schemas.TypeAgent})
		rb.Deny(hop, id, "x", runtreetest.Denial{Reason: schemas.ReasonTarget, Message: "unknown target"})
	}
	if _, err := rb.AppendTo(b.ctx, b.l); err != nil {
		t.Fatal(err)
	}
	b.run("bob", schemas.StateCompleted) // pushes the run's state out (StateBytes 1)
	x := b.list(TaskListConfig{PerCaller: 10, StateBytes: 1})
	states, listed := x.held()
	// alice at planner, bob at planner, planner at researcher: 3 real keys.
	if listed > 3*10 {
		t.Fatalf("the list holds %d tasks (%d run states) after one agent's %d denied invokes to made-up targets; "+
			"PerCaller 10 over the 3 real caller/agent pairs is 30: the list's memory is bounded by nothing the operator sets",
			listed, states, ghosts)
	}
}
