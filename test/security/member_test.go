package security_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// task is a hop delivered to an attacker: it is a member of the hop's run
// while the hop is open.
type task struct {
	a        *attacker
	Run, Hop string
	Context  schemas.Context
	// done receives tomas's outcome of the run.
	done chan *agent.Reply
}

// delegatedTo starts a run tomas → orchestrator → a.id and returns the
// hop the attacker received.
func (a *attacker) delegatedTo(t *testing.T) *task {
	t.Helper()
	run := schemas.NewID()
	tk := &task{a: a, Run: run, done: make(chan *agent.Reply, 1)}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		r, err := a.g.cast.tomas.Start(ctx, "orchestrator", agent.UserText("to:"+a.id), agent.WithRunID(run))
		if err != nil {
			r = &agent.Reply{Error: err.Error()}
		}
		tk.done <- r
	}()
	d, m := a.await(t, 30*time.Second, "its task of run "+run, func(d *schemas.Delivery) bool {
		return d.Kind == schemas.DeliverInvoke && d.Context.RunID == run
	})
	_ = m.Ack()
	tk.Hop, tk.Context = d.Context.HopID, d.Context
	return tk
}

// reply is the attacker's reply to its task, as a well-behaved agent
// would send it.
func (tk *task) reply(text string, usage *schemas.Usage) *schemas.Envelope {
	env := tk.a.envelope(schemas.KindReply)
	env.HopID, env.RunID, env.To = tk.Hop, tk.Run, "orchestrator"
	out, _ := json.Marshal(agent.AgentText(text))
	env.Result = &schemas.Result{Status: schemas.StateCompleted, Output: out}
	env.Usage = usage
	return env
}

// finish replies to the task and checks that tomas gets the reply through
// the orchestrator.
func (tk *task) finish(t *testing.T, usage *schemas.Usage) {
	t.Helper()
	tk.a.submit(t, tk.Run, tk.a.sign(t, tk.reply(tk.a.id+" done", usage)), nil)
	select {
	case r := <-tk.done:
		if got := agent.MessageText(r.Output); got != tk.a.id+" done" {
			t.Fatalf("tomas got %q (%s)", got, r.Error)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tomas never got the reply")
	}
}

// spent folds a run and returns what it spent and reserved.
func spent(t testing.TB, recs []ledger.Record) ledger.Spend {
	t.Helper()
	st, err := ledger.Fold(recs[0].Event.RunID, recs)
	if err != nil {
		t.Fatal(err)
	}
	return st.Total()
}
