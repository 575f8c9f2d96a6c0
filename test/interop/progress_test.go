package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// stepper is an a2a-go/v2 server's executor that reports its progress:
// two working status updates and an artifact update, then its answer and
// completed.
type stepper struct{}

func (stepper) Execute(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if ec.StoredTask == nil && !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		for _, ev := range []a2a.Event{
			a2a.NewStatusUpdateEvent(ec, a2a.TaskStateWorking, a2a.NewMessage(a2a.MessageRoleAgent, a2a.NewTextPart("step 1"))),
			a2a.NewStatusUpdateEvent(ec, a2a.TaskStateWorking, a2a.NewMessage(a2a.MessageRoleAgent, a2a.NewTextPart("step 2"))),
			a2a.NewArtifactEvent(ec, a2a.NewTextPart("partial")),
			a2a.NewArtifactEvent(ec, a2a.NewTextPart("done")),
			a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil),
		} {
			if !yield(ev, nil) {
				return
			}
		}
	}
}

func (stepper) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

// TestGoInteropProgress: an a2a-go/v2 server behind a bridge reports two
// status updates and artifact updates before it completes; an a2a-go/v2
// streaming client through the ingress receives them, in order, as the
// gateway's task's events before the final status, and so does a Go
// agent client watching its call (agent.WithProgress). Each progress is
// in the run's ledger (hop.progress), which verifies.
func TestGoInteropProgress(t *testing.T) {
	e := newEnv(t)
	e.bridge("planner", a2aServerOf(t, "planner", stepper{}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := e.client("planner", e.token("alice"))
	var got []string
	var task a2a.TaskID
	for ev, err := range alice.SendStreamingMessage(ctx, userText("plan")) {
		if err != nil {
			t.Fatal(err)
		}
		switch x := ev.(type) {
		case *a2a.Task:
			task = x.ID
			got = append(got, "task:"+string(x.Status.State))
		case *a2a.TaskStatusUpdateEvent:
			if x.TaskID != task {
				t.Fatalf("status update of task %q, the gateway's task is %q", x.TaskID, task)
			}
			s := "status:" + string(x.Status.State)
			if x.Status.Message != nil {
				s += ":" + x.Status.Message.Parts[0].Text()
			}
			got = append(got, s)
		case *a2a.TaskArtifactUpdateEvent:
			if x.TaskID != task {
				t.Fatalf("artifact update of task %q, the gateway's task is %q", x.TaskID, task)
			}
			got = append(got, "artifact:"+x.Artifact.Parts[0].Text())
		}
	}
	want := []string{"task:TASK_STATE_WORKING", "status:TASK_STATE_WORKING:step 1", "status:TASK_STATE_WORKING:step 2", "artifact:partial", "artifact:done"}
	if len(got) < len(want)+1 || strings.Join(got[:len(want)], "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q first", got, want)
	}
	if last := got[len(got)-1]; !strings.HasPrefix(last, "status:TASK_STATE_COMPLETED") {
		t.Fatalf("the stream ended with %q, not the final status", last)
	}

	// The ledger records each forwarded progress, and verifies.
	run, hop, ok := a2ahttp.ParseTaskID(task)
	if !ok {
		t.Fatalf("task id %q", task)
	}
	v, err := e.g.Ledger().ReadVerified(ctx, run, e.g.SigningKeys())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Signatures != ledger.SigVerified {
		t.Fatalf("run %s: ok=%v signatures=%s", run, v.OK(), v.Signatures)
	}
	var progress []int
	for _, r := range v.Records() {
		if r.Event.Type == schemas.EventHopProgress && r.Event.HopID == hop {
			d, _ := r.Event.DecodeData()
			progress = append(progress, d.(*schemas.HopProgress).N)
		}
	}
	if fmt.Sprint(progress) != "[1 2 3 4]" {
		t.Fatalf("hop.progress events %v", progress)
	}

	// A Go agent client watching its call sees the same progress.
	cl, err := agent.Connect(ctx, agent.Config{ID: "alice", Key: e.keys["alice"], InProcess: e.g.Embedded()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var mu sync.Mutex
	var seen []string
	reply, err := cl.Start(ctx, "planner", agent.UserText("plan again"), agent.WithProgress(func(env *schemas.Envelope) {
		var ev struct {
			Status   *struct{ Message *a2a.Message } `json:"status"`
			Artifact *a2a.Artifact                   `json:"artifact"`
		}
		_ = json.Unmarshal(env.Result.Output, &ev)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Artifact != nil:
			seen = append(seen, ev.Artifact.Parts[0].Text())
		case ev.Status != nil && ev.Status.Message != nil:
			seen = append(seen, ev.Status.Message.Parts[0].Text())
		}
	}))
	if err != nil || reply.Status != schemas.StateCompleted {
		t.Fatalf("agent client call: %v %+v", err, reply)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "|") != "step 1|step 2|partial|done" {
		t.Fatalf("progress seen by the agent client: %q", seen)
	}
}
