package agent_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// TestAnsweredTaskIsNotRunAgain: a task whose reply was stored but whose
// acknowledgement was lost (here: an agent replies, then the task is
// handed back to the server) is delivered again; the agent client asks
// the gateway, learns the hop is closed, acknowledges it and does not run
// its handler.
func TestAnsweredTaskIsNotRunAgain(t *testing.T) {
	files, err := policy.ReadFS(deploy.Policies(), "")
	if err != nil {
		t.Fatal(err)
	}
	g := enforcertest.Start(t, enforcertest.Options{Policies: files, Identities: []broker.Identity{
		{ID: "tomas", Type: schemas.TypeUser, RequireSignature: true},
		{ID: "orchestrator", Type: schemas.TypeAgent, Tags: []string{"entry"}, RequireSignature: true},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tomas := g.Agent("tomas", nil)
	done := make(chan *agent.Reply, 1)
	go func() {
		r, err := tomas.Start(ctx, "orchestrator", agent.UserText("brief"))
		if err != nil {
			t.Errorf("start: %v", err)
		}
		done <- r
	}()

	// The first incarnation of the orchestrator: it takes the task,
	// replies, and loses its acknowledgement (the task goes back).
	nc := g.ConnAs("orchestrator", nil)
	js, err := jetstream.NewWithAPIPrefix(nc, g.Subjects.JSAPIPrefix())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "DELIVER", broker.AgentConsumer("orchestrator"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d, err := schemas.DecodeDelivery(msg.Data())
	if err != nil {
		t.Fatal(err)
	}
	reply := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindReply, HopID: d.Context.HopID, RunID: d.Context.RunID,
		From: "orchestrator", To: "tomas", Result: &schemas.Result{Status: schemas.StateCompleted}, SentAt: time.Now().UTC()}
	wire, err := reply.Sign(g.Keys["orchestrator"].Sign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, g.Subjects.Submit("orchestrator", d.Context.RunID), wire); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r == nil || r.Status != schemas.StateCompleted {
		t.Fatalf("tomas's reply: %+v", r)
	}
	if err := msg.Nak(); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	// The orchestrator restarted: the task is delivered again.
	var runs atomic.Int64
	g.Agent("orchestrator", func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		runs.Add(1)
		return &agent.Result{}, nil
	})
	gwCons, err := g.JS.Consumer(ctx, "DELIVER", broker.AgentConsumer("orchestrator"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := gwCons.Info(ctx)
		if err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Consumer >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task was not acknowledged: %+v %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for a task answered before", n)
	}
}
