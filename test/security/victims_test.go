package security_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// victims are what the attacks aim at, set up before them and checked
// after all of them: runs of tomas in every state, a delivery waiting for
// an offline agent, a run id tomas will use later, and a run whose alert
// will be published.
type victims struct {
	g *gw
	// open is a run of tomas the orchestrator holds open; done a completed
	// one.
	open *openRun
	done string
	// writerRun's invoke waits in DELIVER for writer, which is offline;
	// writerReply receives tomas's outcome once writer answers.
	writerRun, writerHop string
	writerReply          chan *agent.Reply
	// future is a run id tomas starts only after the attacks; futureHop
	// its root hop.
	future, futureHop string
	// alertRun is held open and halted after the attacks; alerts receives
	// every alert the operator sees.
	alertRun *openRun
	alerts   chan *nats.Msg
}

func (g *gw) victims(t *testing.T) *victims {
	t.Helper()
	v := &victims{g: g, writerReply: make(chan *agent.Reply, 1), alerts: make(chan *nats.Msg, 64)}
	v.done = g.cast.legit(t)
	v.open = g.cast.open(t)
	v.alertRun = g.cast.open(t)
	if _, err := g.ops.nc.ChanSubscribe(g.subj.AlertAll(), v.alerts); err != nil {
		t.Fatal(err)
	}
	if err := g.ops.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	v.future = schemas.NewID()
	v.futureHop = schemas.DeriveHopID(schemas.RunScope(v.future), "")
	v.writerRun = schemas.NewID()
	v.writerHop = schemas.DeriveHopID(schemas.RunScope(v.writerRun), "")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		r, err := g.cast.tomas.Start(ctx, "writer", agent.UserText("draft"), agent.WithRunID(v.writerRun))
		if err != nil {
			r = &agent.Reply{Error: err.Error()}
		}
		v.writerReply <- r
	}()
	// The invoke is in DELIVER once the hop is allowed in the ledger.
	brokertest.Eventually(t, 20*time.Second, "the writer's hop is allowed", func() bool {
		return countEvents(g.ops.read(t, v.writerRun), schemas.EventHopAllowed) == 1
	})
	return v
}

// heads returns the chain head of every victim run.
func (v *victims) heads(t testing.TB) map[string]ledger.Head {
	t.Helper()
	out := map[string]ledger.Head{}
	for _, run := range []string{v.open.ID, v.done, v.writerRun, v.alertRun.ID} {
		h, err := v.g.ops.led.Head(testCtx(t, 10*time.Second), run)
		if err != nil {
			t.Fatal(err)
		}
		out[run] = h
	}
	return out
}

// unchanged asserts that every victim run still has the head it had and
// still verifies, and that the future run does not exist.
func (v *victims) unchanged(t testing.TB, before map[string]ledger.Head) {
	t.Helper()
	for run, h := range v.heads(t) {
		if h != before[run] {
			t.Errorf("victim run %s moved: head %+v, was %+v", run, h, before[run])
		}
		v.g.ops.verified(t, run)
	}
	if recs := v.g.ops.read(t, v.future); len(recs) != 0 {
		t.Errorf("run %s, which tomas has not started, has %d events", v.future, len(recs))
	}
}

// stillServed checks, after the attacks, that every victim is served as
// if nothing happened: writer gets its waiting task and tomas its reply,
// tomas's future run gets its reply, the open run completes, and the
// alert run's halt publishes the real alert, the first the operator sees
// for that run.
func (v *victims) stillServed(t *testing.T) {
	g := v.g
	g.agentClient(t, "writer", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		return &agent.Result{Output: agent.AgentText("writer: " + agent.MessageText(task.Message))}, nil
	})
	select {
	case r := <-v.writerReply:
		if agent.MessageText(r.Output) != "writer: draft" {
			t.Errorf("tomas's waiting call to writer: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Error("writer never got the task that waited in DELIVER")
	}

	ctx := testCtx(t, 30*time.Second)
	r, err := g.cast.tomas.Start(ctx, "orchestrator", agent.UserText("delegate"), agent.WithRunID(v.future))
	if err != nil || agent.MessageText(r.Output) != "research: find" {
		t.Errorf("tomas's future run %s: %+v %v", v.future, r, err)
	}

	v.open.release()
	select {
	case err := <-v.open.done:
		if err != nil {
			t.Errorf("the open run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the open run never completed")
	}
	g.ops.verified(t, v.open.ID)

	op, err := operator.Connect(operator.Config{ID: "ops", Key: g.keys["ops"], URL: g.url})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := op.Halt(ctx, v.alertRun.ID, "security suite"); err != nil {
		t.Fatalf("halt: %v", err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-v.alerts:
			if m.Subject != g.subj.Alert(v.alertRun.ID) {
				continue
			}
			var a schemas.Alert
			if err := json.Unmarshal(m.Data, &a); err != nil || a.By != "ops" || a.RunID != v.alertRun.ID {
				t.Fatalf("the first alert of run %s is not the gateway's: %q", v.alertRun.ID, m.Data)
			}
			return
		case <-deadline:
			t.Fatalf("no alert for the halted run %s", v.alertRun.ID)
		}
	}
}

// deliverMsgs is DELIVER's message count (external variant only).
func (g *gw) deliverMsgs(t testing.TB) uint64 {
	t.Helper()
	if g.admin == nil {
		return 0
	}
	s, err := g.admin.Stream(testCtx(t, 10*time.Second), g.subj.Stream(broker.StreamDeliver))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}
