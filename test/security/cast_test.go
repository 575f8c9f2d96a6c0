package security_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// legitCast are the well-behaved identities: tomas starts runs at the
// orchestrator, which delegates to research (or holds the hop open, or
// delegates to a named agent, or spawns a run of its own).
type legitCast struct {
	g                     *gw
	tomas, orch, research *agent.Client
	orchPtr               atomic.Pointer[agent.Client]

	mu    sync.Mutex
	holds map[string]*hold // run id -> its hold
}

// hold keeps a run's root hop open at the orchestrator until released.
type hold struct {
	started chan schemas.Context
	release chan struct{}
	once    sync.Once
}

func (g *gw) startCast(t *testing.T) *legitCast {
	t.Helper()
	c := &legitCast{g: g, holds: map[string]*hold{}}
	c.research = g.agentClient(t, "research", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		return &agent.Result{Output: agent.AgentText("research: " + agent.MessageText(task.Message))}, nil
	})
	c.orch = g.agentClient(t, "orchestrator", c.orchestrate)
	c.orchPtr.Store(c.orch)
	c.tomas = g.agentClient(t, "tomas", nil)
	return c
}

// agentClient connects an identity with the agent client package.
func (g *gw) agentClient(t testing.TB, id string, h agent.Handler) *agent.Client {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	c, err := agent.Connect(ctx, agent.Config{ID: id, Key: g.keys[id], URL: g.url, Handler: h})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(c.Close)
	return c
}

func (c *legitCast) orchestrate(ctx context.Context, task *agent.Task) (*agent.Result, error) {
	text := agent.MessageText(task.Message)
	switch {
	case text == "delegate":
		r, err := task.Delegate(ctx, "research", agent.UserText("find"))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: r.Output}, nil
	case text == "hold":
		c.mu.Lock()
		h := c.holds[task.Context.RunID]
		c.mu.Unlock()
		if h == nil {
			return nil, errors.New("no hold registered")
		}
		h.started <- task.Context
		select {
		case <-h.release:
		case <-ctx.Done():
		}
		return &agent.Result{Output: agent.AgentText("released")}, nil
	case strings.HasPrefix(text, "to:"):
		r, err := task.Delegate(ctx, strings.TrimPrefix(text, "to:"), agent.UserText("work"))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: r.Output}, nil
	case text == "spawn":
		run := schemas.NewID()
		from := &schemas.SpawnRef{RunID: task.Context.RunID, HopID: task.Context.HopID}
		r, err := c.orchPtr.Load().Start(ctx, "research", agent.UserText("spawned"), agent.WithRunID(run),
			agent.WithEnvelope(func(e *schemas.Envelope) { e.SpawnedFrom = from }))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: agent.AgentText(run + " " + agent.MessageText(r.Output))}, nil
	}
	return nil, errors.New("unknown instruction " + text)
}

// legit runs tomas → orchestrator → research and checks the reply and the
// run's ledger: two allowed hops, a verified chain. It returns the run id.
func (c *legitCast) legit(t testing.TB) string {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	r, err := c.tomas.Start(ctx, "orchestrator", agent.UserText("delegate"))
	if err != nil {
		t.Fatalf("legitimate run: %v", err)
	}
	if got := agent.MessageText(r.Output); got != "research: find" || r.Status != schemas.StateCompleted {
		t.Fatalf("legitimate run replied %q (%s)", got, r.Status)
	}
	var recs []ledger.Record
	brokertest.Eventually(t, 10*time.Second, "the legitimate run completes in the ledger", func() bool {
		recs = c.g.ops.read(t, r.RunID)
		return len(recs) > 0 && recs[len(recs)-1].Event.Type == schemas.EventRunCompleted
	})
	if n := countEvents(recs, schemas.EventHopAllowed); n != 2 {
		t.Fatalf("legitimate run has %d allowed hops, want 2", n)
	}
	return r.RunID
}

// openRun is a run of tomas whose root hop the orchestrator holds open.
type openRun struct {
	ID, RootHop string
	release     func()
	// done receives the run's outcome once it is released.
	done chan error
}

// open starts a run of tomas that the orchestrator holds open, and waits
// until the orchestrator has the task.
func (c *legitCast) open(t testing.TB) *openRun {
	t.Helper()
	run := schemas.NewID()
	h := &hold{started: make(chan schemas.Context, 1), release: make(chan struct{})}
	c.mu.Lock()
	c.holds[run] = h
	c.mu.Unlock()
	o := &openRun{ID: run, RootHop: schemas.DeriveHopID(schemas.RunScope(run), ""), done: make(chan error, 1)}
	o.release = func() { h.once.Do(func() { close(h.release) }) }
	t.Cleanup(o.release)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, err := c.tomas.Start(ctx, "orchestrator", agent.UserText("hold"), agent.WithRunID(run))
		o.done <- err
	}()
	select {
	case hc := <-h.started:
		if hc.HopID != o.RootHop {
			t.Fatalf("held hop is %s, want %s", hc.HopID, o.RootHop)
		}
	case err := <-o.done:
		t.Fatalf("the held run ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the orchestrator never got the held run's task")
	}
	return o
}

func countEvents(recs []ledger.Record, typ schemas.EventType) int {
	n := 0
	for _, r := range recs {
		if r.Event.Type == typ {
			n++
		}
	}
	return n
}

// decisionOf decodes a hop.allowed or hop.denied record.
func decisionOf(t testing.TB, r ledger.Record) *schemas.HopDecision {
	t.Helper()
	data, err := r.Event.DecodeData()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := data.(*schemas.HopDecision)
	if !ok {
		t.Fatalf("%s at seq %d is not a decision", r.Event.Type, r.Event.Seq)
	}
	return d
}
