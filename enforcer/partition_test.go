package enforcer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/schemas"
)

const testPartitions = 4

// handled records which enforcer instance appended to which run.
type handled struct {
	mu   sync.Mutex
	runs map[string]map[string]int // run → instance → appends
}

func (h *handled) hook(instance string, next func(run, hop string) error) func(run, hop string) error {
	return func(run, hop string) error {
		h.mu.Lock()
		if h.runs[run] == nil {
			h.runs[run] = map[string]int{}
		}
		h.runs[run][instance]++
		h.mu.Unlock()
		if next != nil {
			return next(run, hop)
		}
		return nil
	}
}

func (h *handled) by(run string) map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.runs[run] {
		out[k] = v
	}
	return out
}

// runIn returns a new run id that falls in partition p.
func runIn(p int) string {
	for {
		if id := schemas.NewID(); broker.Partition(id, testPartitions) == p {
			return id
		}
	}
}

// openRunAs opens run (tomas → orchestrator) and waits for its delivery.
func openRunAs(t *testing.T, tomas *sender, run string) string {
	t.Helper()
	env := tomas.invoke(run, "", "orchestrator")
	before := len(tomas.g.Deliveries("orchestrator"))
	tomas.send(run, env)
	waitDeliveries(t, tomas.g, "orchestrator", before+1)
	return env.HopID
}

// secondEnforcer starts another enforcer instance on the test gateway's
// bus, on a connection of its own, as a second gateway process would run
// one; its connection is returned so a test can cut it (a crash).
func secondEnforcer(t *testing.T, g *enforcertest.Gateway, cfg enforcer.Config) (*enforcer.Enforcer, *nats.Conn) {
	t.Helper()
	nc, js := g.NewConn()
	cfg.Publishers = []jetstream.JetStream{}
	cfg.Partitions = testPartitions
	e, err := enforcer.New(js, g.Subjects, g.Gateway.Registry(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e, nc
}

func partitionConfig(instance int, hook func(run, hop string) error) enforcer.Config {
	return enforcer.Config{Partitions: testPartitions, Instance: instance, Instances: 2, PinnedTTL: 3 * time.Second,
		StandbyDelay: time.Second, AckWait: 2 * time.Second, Hooks: enforcer.Hooks{AfterAppend: hook}}
}

// TestPartitionsOwnedByOneInstance runs two enforcer instances over a
// partitioned SUBMIT: every run is worked on by exactly one instance,
// each instance owns the partitions it prefers, and a run's delegations
// follow its opening to the same instance.
func TestPartitionsOwnedByOneInstance(t *testing.T) {
	h := &handled{runs: map[string]map[string]int{}}
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: examplePolicies(t),
		Partitions: testPartitions, Config: partitionConfig(0, h.hook("a", nil))})
	secondEnforcer(t, g, partitionConfig(1, h.hook("b", nil)))
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")

	owner := map[int]string{}
	for i := range 4 * testPartitions {
		p := i % testPartitions
		run := runIn(p)
		root := openRunAs(t, tomas, run)
		delegate(t, orch, run, root, "research")
		by := h.by(run)
		if len(by) != 1 {
			t.Fatalf("run %s (partition %d) was appended to by %v: want one instance", run, p, by)
		}
		for inst := range by {
			if owner[p] == "" {
				owner[p] = inst
			}
			if owner[p] != inst {
				t.Fatalf("partition %d: run %s on %s, earlier runs on %s", p, run, inst, owner[p])
			}
		}
	}
	// Instance a (0 of 2) prefers partitions 0 and 2, b the others.
	want := map[int]string{0: "a", 1: "b", 2: "a", 3: "b"}
	for p, inst := range want {
		if owner[p] != inst {
			t.Errorf("partition %d owned by %s, want %s (owners %v)", p, owner[p], inst, owner)
		}
	}
}

// TestPartitionTakeover cuts one of two instances off the bus while it
// holds a hop it has recorded but not yet forwarded (a crash between
// append and forward), and checks that the other instance takes its
// partitions over within seconds: the held hop is delivered once, recorded
// once, and new runs in those partitions are decided by the survivor.
func TestPartitionTakeover(t *testing.T) {
	h := &handled{runs: map[string]map[string]int{}}
	var held sync.Map // hop id → chan struct{}: b blocks after appending it
	crash := make(chan struct{})
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: examplePolicies(t),
		Partitions: testPartitions, Config: partitionConfig(0, h.hook("a", nil))})
	_, ncB := secondEnforcer(t, g, partitionConfig(1, h.hook("b", func(_, hop string) error {
		if v, ok := held.Load(hop); ok {
			close(v.(chan struct{}))
			<-crash
			return errCrash
		}
		return nil
	})))
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")

	// A run in partition 1 (b's) and its delegation, which b records and
	// then hangs on.
	run := runIn(1)
	root := openRunAs(t, tomas, run)
	if by := h.by(run); by["b"] == 0 || by["a"] != 0 {
		t.Fatalf("partition 1 run handled by %v, want b", by)
	}
	env := orch.invoke(run, root, "research")
	appended := make(chan struct{})
	held.Store(env.HopID, appended)
	orch.send(run, env)
	select {
	case <-appended:
	case <-time.After(15 * time.Second):
		t.Fatal("b never appended the held hop")
	}
	if n := len(g.Deliveries("research")); n != 0 {
		t.Fatalf("research has %d deliveries before the crash", n)
	}

	// b dies: its connection is gone, nothing of it is acked or unpinned.
	cut := time.Now()
	ncB.Close()
	close(crash)

	// A new run in each of b's partitions is taken over by a.
	for _, p := range []int{1, 3} {
		r := runIn(p)
		openRunAs(t, tomas, r)
		if by := h.by(r); by["a"] == 0 || by["b"] != 0 {
			t.Fatalf("partition %d run after the crash handled by %v, want a", p, by)
		}
	}
	took := time.Since(cut)
	t.Logf("b's partitions taken over after %s", took)

	// The held hop: recorded once (by b), forwarded once (by a).
	waitDeliveries(t, g, "research", 1)
	if !pollFor(20*time.Second, func() bool { return pendingSubmissions(t, g) == 0 }) {
		st, _ := g.JS.Stream(ctxT(t), "SUBMIT")
		info, _ := st.Info(ctxT(t), jetstream.WithSubjectFilter(">"))
		t.Logf("SUBMIT: %+v", info.State)
		for p := range testPartitions {
			c, _ := g.JS.Consumer(ctxT(t), "SUBMIT", broker.PartitionConsumer(broker.EnforcerConsumer, p))
			ci, _ := c.Info(ctxT(t))
			t.Logf("p%d: pending %d ackpending %d redelivered %d waiting %d groups %+v", p, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.PriorityGroups)
		}
		t.Fatal("submissions left")
	}
	ds := waitDeliveries(t, g, "research", 1)
	if len(ds) != 1 || ds[0].Context.HopID != env.HopID {
		t.Fatalf("research got %d deliveries, want exactly the held hop once", len(ds))
	}
	recs := waitRun(t, g, run, 3)
	n := 0
	for _, r := range recs {
		if r.Event.HopID == env.HopID {
			n++
		}
	}
	if n != 1 || len(recs) != 3 {
		t.Fatalf("run has %d events, %d of them for the held hop: %v", len(recs), n, types(recs))
	}
	// And the run goes on, on a.
	delegate(t, orch, run, root, "writer")
	if by := h.by(run); by["a"] == 0 {
		t.Fatalf("run after the takeover handled by %v, want a too", by)
	}
	if took > 20*time.Second {
		t.Fatalf("takeover took %s", took)
	}
}

// TestPartitionReleasedOnStop stops one instance cleanly: its partitions
// are unpinned as it stops, and the other instance decides their runs.
func TestPartitionReleasedOnStop(t *testing.T) {
	h := &handled{runs: map[string]map[string]int{}}
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: examplePolicies(t),
		Partitions: testPartitions, Config: partitionConfig(0, h.hook("a", nil))})
	b, _ := secondEnforcer(t, g, partitionConfig(1, h.hook("b", nil)))
	tomas := newSender(t, g, "tomas")
	for _, p := range []int{1, 3} {
		if r := runIn(p); openRunAs(t, tomas, r) != "" && h.by(r)["b"] == 0 {
			t.Fatalf("partition %d not on b before the stop: %v", p, h.by(r))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{1, 3} {
		r := runIn(p)
		openRunAs(t, tomas, r)
		if by := h.by(r); by["a"] == 0 || by["b"] != 0 {
			t.Fatalf("partition %d after b stopped handled by %v", p, by)
		}
	}
	for _, p := range []int{1, 3} {
		name := broker.PartitionConsumer(broker.EnforcerConsumer, p)
		c, err := g.JS.Consumer(ctxT(t), g.Subjects.Stream(broker.StreamSubmit), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.PriorityGroups) != 1 || info.PriorityGroups[0].PinnedClientID == "" {
			t.Errorf("%s: priority groups %+v, want one pinned", name, info.PriorityGroups)
		}
	}
}

func pollFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
