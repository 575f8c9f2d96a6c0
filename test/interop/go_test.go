package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// cast starts the A2A servers behind the gateway: researcher answers;
// planner delegates to researcher and tries the vault, through the
// gateway's ingress with its own token, naming the task it serves;
// sleeper works until cancelled.
type cast struct {
	researcher, planner, vault, sleeper *executor
	sleeperCancelled                    chan struct{}
}

func startCast(t testing.TB, e *env) *cast {
	t.Helper()
	c := &cast{sleeperCancelled: make(chan struct{}, 4)}
	c.researcher = &executor{do: func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		return "researched: " + ec.Message.Parts[0].Text(), map[string]any{"input_tokens": 100, "output_tokens": 50, "cost_usd": 0.002}, nil
	}}
	c.vault = &executor{do: func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		return "the vault's secrets", nil, nil
	}}
	plannerToken := e.token("planner")
	c.planner = &executor{do: func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		task, _ := ec.Message.Metadata[a2ahttp.TaskKey].(string)
		if task == "" {
			return "", nil, errors.New("the bridge named no task")
		}
		onward := func(to, what string) (*a2a.Task, error) {
			req := userText(what)
			req.Message.Metadata = map[string]any{a2ahttp.ParentTaskKey: task}
			res, err := e.client(to, plannerToken).SendMessage(ctx, req)
			if err != nil {
				return nil, err
			}
			t, ok := res.(*a2a.Task)
			if !ok {
				return nil, fmt.Errorf("got %T", res)
			}
			return t, nil
		}
		r, err := onward("researcher", ec.Message.Parts[0].Text())
		if err != nil {
			return "", nil, fmt.Errorf("researcher: %w", err)
		}
		out := "plan from " + text(r)
		if _, err := onward("vault", "open up"); err != nil {
			out += " | vault: " + err.Error()
		}
		return out, map[string]any{"input_tokens": 10, "output_tokens": 5}, nil
	}}
	c.sleeper = &executor{do: func(ctx context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		select {
		case <-ctx.Done():
			c.sleeperCancelled <- struct{}{}
			return "", nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return "slept", nil, nil
		}
	}}
	e.bridge("researcher", a2aServer(t, "researcher", c.researcher))
	e.bridge("planner", a2aServer(t, "planner", c.planner))
	e.bridge("vault", a2aServer(t, "vault", c.vault))
	e.bridge("sleeper", a2aServer(t, "sleeper", c.sleeper))
	return c
}

// TestGoInterop: an a2a-go/v2 client calls, through the gateway's ingress,
// an a2a-go/v2 server behind a bridge, which delegates through the
// gateway to a second one; the vault edge is denied and reported; the
// run's ledger verifies and carries depth, principal and the ingress
// taint across the hops. Then stream, get, list and cancel.
func TestGoInterop(t *testing.T) {
	e := newEnv(t)
	c := startCast(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice := e.client("planner", e.token("alice"))

	res, err := alice.SendMessage(ctx, userText("agent governance"))
	if err != nil {
		t.Fatal(err)
	}
	task, ok := res.(*a2a.Task)
	if !ok {
		t.Fatalf("SendMessage returned %T", res)
	}
	got := text(task)
	if task.Status.State != a2a.TaskStateCompleted || !strings.Contains(got, "plan from researched: agent governance") {
		t.Fatalf("task %s: %q", task.Status.State, got)
	}
	if !strings.Contains(got, "vault:") || !strings.Contains(got, "policy") || !strings.Contains(got, "nobody-reaches-the-vault") {
		t.Fatalf("the denied vault edge did not surface as an error with its policy: %q", got)
	}
	if c.vault.calls.Load() != 0 {
		t.Fatal("the vault's server was called")
	}
	if u := a2ahttp.UsageOf(task.Metadata); u == nil || u.InputTokens != 10 {
		t.Fatalf("usage in the task's metadata: %v", task.Metadata)
	}

	// The ledger: verified, with the ingress key, every signature.
	run := task.ContextID
	v, err := e.g.Ledger().ReadVerified(ctx, run, e.g.SigningKeys())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Signatures != ledger.SigVerified {
		t.Fatalf("run %s: ok=%v signatures=%s", run, v.OK(), v.Signatures)
	}
	st, err := e.g.Ledger().Load(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	var toResearcher, toVault, root *ledger.Hop
	for _, h := range st.Hops {
		switch {
		case h.From == "alice":
			root = h
		case h.To == "researcher":
			toResearcher = h
		case h.To == "vault":
			toVault = h
		}
	}
	if root == nil || toResearcher == nil || toVault == nil {
		t.Fatalf("hops %v", st.Hops)
	}
	if root.Depth != 0 || toResearcher.Depth != 1 || toResearcher.ParentID != root.ID || st.OnBehalfOf != "alice" {
		t.Fatalf("depth/ancestry: root %+v, researcher hop %+v, principal %q", root, toResearcher, st.OnBehalfOf)
	}
	if !slices.Equal(toResearcher.Ancestry, []string{"alice", "planner"}) {
		t.Fatalf("ancestry %v", toResearcher.Ancestry)
	}
	if toVault.Status != ledger.HopDenied || toVault.Reason != schemas.ReasonPolicy {
		t.Fatalf("vault hop %+v", toVault)
	}
	if !slices.Contains(root.TaintSources, decision.TaintIngress) || !slices.Contains(toResearcher.TaintSources, decision.TaintIngress) {
		t.Fatalf("taint: root %v, researcher %v", root.TaintSources, toResearcher.TaintSources)
	}
	if toResearcher.Usage == nil || toResearcher.Usage.InputTokens != 100 {
		t.Fatalf("researcher's reported usage did not reach the ledger: %+v", toResearcher.Usage)
	}

	t.Run("stream", func(t *testing.T) {
		var states []a2a.TaskState
		var artifact string
		for ev, err := range alice.SendStreamingMessage(ctx, userText("streams")) {
			if err != nil {
				t.Fatal(err)
			}
			switch x := ev.(type) {
			case *a2a.Task:
				states = append(states, x.Status.State)
			case *a2a.TaskStatusUpdateEvent:
				states = append(states, x.Status.State)
				if x.Status.Message != nil {
					artifact += x.Status.Message.Parts[0].Text()
				}
			case *a2a.TaskArtifactUpdateEvent:
				for _, p := range x.Artifact.Parts {
					artifact += p.Text()
				}
			}
		}
		if len(states) < 2 || states[0] != a2a.TaskStateWorking || states[len(states)-1] != a2a.TaskStateCompleted {
			t.Fatalf("states %v", states)
		}
		if !strings.Contains(artifact, "researched: streams") {
			t.Fatalf("artifact %q", artifact)
		}
	})

	t.Run("get", func(t *testing.T) {
		got, err := alice.GetTask(ctx, &a2a.GetTaskRequest{ID: task.ID})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.State != a2a.TaskStateCompleted || !strings.Contains(text(got), "plan from researched") {
			t.Fatalf("GetTask: %s %q", got.Status.State, text(got))
		}
		bob := e.client("planner", e.token("bob"))
		if _, err := bob.GetTask(ctx, &a2a.GetTaskRequest{ID: task.ID}); !errors.Is(err, a2a.ErrTaskNotFound) {
			t.Fatalf("another caller read alice's task: %v", err)
		}
	})

	t.Run("outcome stored before the wait", func(t *testing.T) {
		// An outcome delivered while nobody listened (a reconnect of the
		// gateway's connection) is read from DELIVER.
		runID, hop, _ := a2ahttp.ParseTaskID(task.ID)
		p, err := e.g.Ingress().Await("alice", runID, hop)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		o, err := p.Wait(wctx)
		if err != nil || o.Reply == nil || o.Reply.Result.Status != schemas.StateCompleted {
			t.Fatalf("Wait on a closed hop: %+v %v", o, err)
		}
	})

	t.Run("list", func(t *testing.T) {
		l, err := alice.ListTasks(ctx, &a2a.ListTasksRequest{ContextID: run})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Tasks) != 1 || l.Tasks[0].ID != task.ID {
			t.Fatalf("ListTasks(run): %+v", l.Tasks)
		}
		all, err := alice.ListTasks(ctx, &a2a.ListTasksRequest{})
		if err != nil || len(all.Tasks) < 2 {
			t.Fatalf("ListTasks: %v %v", all, err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		sleeper := e.client("sleeper", e.token("alice"))
		req := userText("sleep")
		req.Config = &a2a.SendMessageConfig{ReturnImmediately: true}
		res, err := sleeper.SendMessage(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		st := res.(*a2a.Task)
		deadline := time.Now().Add(20 * time.Second)
		for c.sleeper.calls.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		// A subscriber to the task sees it end when it is cancelled.
		subscribed := make(chan a2a.TaskState, 1)
		go func() {
			var last a2a.TaskState
			for ev, err := range sleeper.SubscribeToTask(ctx, &a2a.SubscribeToTaskRequest{ID: st.ID}) {
				if err != nil {
					break
				}
				switch x := ev.(type) {
				case *a2a.Task:
					last = x.Status.State
				case *a2a.TaskStatusUpdateEvent:
					last = x.Status.State
				}
			}
			subscribed <- last
		}()
		time.Sleep(200 * time.Millisecond) // let the subscription reach the gateway
		got, err := sleeper.CancelTask(ctx, &a2a.CancelTaskRequest{ID: st.ID})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.State != a2a.TaskStateCanceled {
			t.Fatalf("cancelled task is %s", got.Status.State)
		}
		select {
		case <-c.sleeperCancelled:
		case <-time.After(20 * time.Second):
			t.Fatal("the cancel did not reach the sleeper's A2A server")
		}
		select {
		case last := <-subscribed:
			if last != a2a.TaskStateCanceled {
				t.Fatalf("the subscriber saw the task end %s", last)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the subscription did not end with the cancel")
		}
		if _, err := sleeper.CancelTask(ctx, &a2a.CancelTaskRequest{ID: st.ID}); !errors.Is(err, a2a.ErrTaskNotCancelable) {
			t.Fatalf("second cancel: %v", err)
		}
	})

	t.Run("http+json", func(t *testing.T) {
		hc := httpClientFor(e.token("alice"))
		card, err := agentcard.NewResolver(hc).Resolve(ctx, e.base+"/planner")
		if err != nil {
			t.Fatal(err)
		}
		rest, err := a2aclient.NewFromCard(ctx, card, a2aclient.WithRESTTransport(hc),
			a2aclient.WithConfig(a2aclient.Config{PreferredTransports: []a2a.TransportProtocol{a2a.TransportProtocolHTTPJSON}}))
		if err != nil {
			t.Fatal(err)
		}
		res, err := rest.SendMessage(ctx, userText("over rest"))
		if err != nil {
			t.Fatal(err)
		}
		got := res.(*a2a.Task)
		if got.Status.State != a2a.TaskStateCompleted || !strings.Contains(text(got), "researched: over rest") {
			t.Fatalf("HTTP+JSON: %s %q", got.Status.State, text(got))
		}
		again, err := rest.GetTask(ctx, &a2a.GetTaskRequest{ID: got.ID})
		if err != nil || again.Status.State != a2a.TaskStateCompleted {
			t.Fatalf("HTTP+JSON GetTask: %v %v", again, err)
		}
	})

	t.Run("denied edge", func(t *testing.T) {
		// Users start runs only at entry agents.
		_, err := e.client("researcher", e.token("alice")).SendMessage(ctx, userText("direct"))
		if !errors.Is(err, a2a.ErrUnauthorized) || !strings.Contains(err.Error(), "policy") {
			t.Fatalf("alice -> researcher: %v", err)
		}
	})
}
