package a2ahttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/ingress"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

// cast of the task list's runs: two users and two agents.
var listCast = []runtreetest.Member{
	{ID: "alice", Type: schemas.TypeUser}, {ID: "bob", Type: schemas.TypeUser},
	{ID: "planner", Type: schemas.TypeAgent}, {ID: "researcher", Type: schemas.TypeAgent},
}

// castListable is the lists' listable for listCast: the pairs of a
// registered caller and a registered agent.
func castListable(caller, agent string) bool {
	var okCaller, okAgent bool
	for _, m := range listCast {
		okCaller = okCaller || m.ID == caller
		okAgent = okAgent || m.ID == agent && m.Type == schemas.TypeAgent
	}
	return okCaller && okAgent
}

// listBed is a real JetStream ledger the tests append runs to.
type listBed struct {
	t   testing.TB
	bus *brokertest.Bus
	l   *ledger.Ledger
	ctx context.Context
}

func newListBed(t testing.TB) *listBed {
	bus := brokertest.Start(t, brokertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return &listBed{t: t, bus: bus, l: ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects), ctx: ctx}
}

// run appends a run in which caller calls planner, which delegates to
// researcher; both hops end with status. It returns the run and the
// caller's hop.
func (b *listBed) run(caller string, status schemas.TaskState) (run, hop string) {
	b.t.Helper()
	return b.runAt(caller, status, time.Now())
}

// runAt is run with its events' clock starting at start.
func (b *listBed) runAt(caller string, status schemas.TaskState, start time.Time) (run, hop string) {
	b.t.Helper()
	run = schemas.NewID()
	rb := runtreetest.New(run, start, listCast)
	hop = rb.Start(caller, "planner", "plan", "wf", nil, "p")
	sub := rb.Invoke(hop, "researcher", "look", "p")
	rb.Reply(sub, schemas.StateCompleted, "found", nil)
	rb.Reply(hop, status, "planned", &schemas.Usage{InputTokens: 1, OutputTokens: 1})
	rb.Complete()
	if _, err := rb.AppendTo(b.ctx, b.l); err != nil {
		b.t.Fatal(err)
	}
	return run, hop
}

// list starts a task list on the ledger, as an ingress instance does.
func (b *listBed) list(cfg TaskListConfig) *taskList {
	b.t.Helper()
	x := newTaskList(b.l, cfg, castListable, slog.New(slog.DiscardHandler))
	x.started.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		x.follow(ctx)
	}()
	b.t.Cleanup(func() { cancel(); <-done })
	if err := x.sync(b.ctx); err != nil {
		b.t.Fatal(err)
	}
	return x
}

// tasks are the task ids x lists for caller at agent, newest first.
func tasks(t *testing.T, x *taskList, caller, agent string) []a2a.TaskID {
	t.Helper()
	if err := x.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []a2a.TaskID
	x.each(caller, agent, func(run string, h *ledger.Hop) bool {
		if h.From != caller || h.To != agent {
			t.Errorf("listed %s's hop %s -> %s for %s at %s", h.From, h.From, h.To, caller, agent)
		}
		out = append(out, TaskID(run, h.ID))
		return true
	})
	return out
}

func TestTaskListFromLedger(t *testing.T) {
	b := newListBed(t)
	var alice []a2a.TaskID
	for range 4 {
		run, hop := b.run("alice", schemas.StateCompleted)
		alice = append([]a2a.TaskID{TaskID(run, hop)}, alice...) // newest first
	}
	bobRun, bobHop := b.run("bob", schemas.StateCompleted)

	first := b.list(TaskListConfig{})
	if got := tasks(t, first, "alice", "planner"); fmt.Sprint(got) != fmt.Sprint(alice) {
		t.Fatalf("alice's tasks at planner: %v, want %v", got, alice)
	}
	if got := tasks(t, first, "bob", "planner"); len(got) != 1 || got[0] != TaskID(bobRun, bobHop) {
		t.Fatalf("bob's tasks at planner: %v", got)
	}
	if got := tasks(t, first, "alice", "researcher"); len(got) != 0 {
		t.Fatalf("alice made no task at researcher, listed %v", got)
	}
	if got := tasks(t, first, "planner", "researcher"); len(got) != 5 {
		t.Fatalf("planner's tasks at researcher: %d, want 5", len(got))
	}

	// Followed: a run appended after the start is listed at the next call.
	run, hop := b.run("alice", schemas.StateFailed)
	alice = append([]a2a.TaskID{TaskID(run, hop)}, alice...)
	if got := tasks(t, first, "alice", "planner"); fmt.Sprint(got) != fmt.Sprint(alice) {
		t.Fatalf("after one more run: %v, want %v", got, alice)
	}

	// Another instance, or this one restarted: the same list, from the
	// ledger alone.
	second := b.list(TaskListConfig{})
	if got := tasks(t, second, "alice", "planner"); fmt.Sprint(got) != fmt.Sprint(alice) {
		t.Fatalf("a second list: %v, want %v", got, alice)
	}
}

// TestTaskListBounds: a call's work is bounded by the caller's listed
// tasks (PerCaller), whatever the ledger holds, and reads no ledger
// event; run states are bounded by StateBytes, and a dropped run is read
// again when it changes.
func TestTaskListBounds(t *testing.T) {
	b := newListBed(t)
	for range 30 {
		b.run("alice", schemas.StateCompleted)
	}
	for range 150 {
		b.run("bob", schemas.StateCompleted)
	}
	x := b.list(TaskListConfig{PerCaller: 10, StateBytes: 1})
	if got := tasks(t, x, "alice", "planner"); len(got) != 10 {
		t.Fatalf("alice's listed tasks: %d, want the newest 10", len(got))
	}
	states, listed, _ := x.held()
	if states > 1 {
		t.Errorf("states held: %d, want at most 1 (StateBytes 1)", states)
	}
	// Each caller->agent pair holds at most 10: alice and bob at planner,
	// planner at researcher.
	if listed > 3*10 {
		t.Errorf("tasks listed: %d, want at most 30", listed)
	}

	// A listing examines the caller's listed tasks only and reads nothing
	// from the ledger, however many calls.
	reads := x.reads.Load()
	for range 20 {
		examined := 0
		if err := x.sync(b.ctx); err != nil {
			t.Fatal(err)
		}
		x.each("alice", "planner", func(string, *ledger.Hop) bool { examined++; return true })
		if examined > 10 {
			t.Fatalf("a listing examined %d tasks, over PerCaller 10", examined)
		}
	}
	if got := x.reads.Load(); got != reads {
		t.Fatalf("20 listings read %d ledger events, want 0", got-reads)
	}

	// A run whose state was dropped changes: it is read again, and its
	// task's status follows.
	run := schemas.NewID()
	rb := runtreetest.New(run, time.Now(), listCast)
	hop := rb.Start("alice", "planner", "plan", "wf", nil, "p")
	if _, err := rb.AppendTo(b.ctx, b.l); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, x, "alice", run, hop); st != a2a.TaskStateWorking {
		t.Fatalf("open task: %s", st)
	}
	b.run("bob", schemas.StateCompleted) // pushes the open run's state out
	loads := x.loads.Load()
	rb.Reply(hop, schemas.StateCompleted, "done", nil)
	recs, err := rb.Records()
	if err != nil {
		t.Fatal(err)
	}
	head, err := b.l.Head(b.ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	ev := recs[len(recs)-1].Event
	ev.Hash = ""
	if _, _, err := b.l.Append(b.ctx, head, ev); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, x, "alice", run, hop); st != a2a.TaskStateCompleted {
		t.Fatalf("replied task: %s", st)
	}
	if x.loads.Load() == loads {
		t.Fatal("the dropped run was not read again")
	}
}

func stateOf(t *testing.T, x *taskList, caller, run, hop string) a2a.TaskState {
	t.Helper()
	if err := x.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var st a2a.TaskState
	x.each(caller, "planner", func(r string, h *ledger.Hop) bool {
		if r == run && h.ID == hop {
			st = hopState(h)
			return false
		}
		return true
	})
	return st
}

// listServer is an ingress on the bed's ledger, with its task list
// started; calls go to its handler as alice's at planner.
func (b *listBed) listServer(cfg TaskListConfig) (*Server, context.Context) {
	b.t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		b.t.Fatal(err)
	}
	ing, err := ingress.New(ingress.Config{Conn: b.bus.Conn, JetStream: b.bus.JS, Subjects: b.bus.Subjects, Key: kp, Ledger: b.l})
	if err != nil {
		b.t.Fatal(err)
	}
	var cast []broker.Identity // registered: the list lists their tasks
	for _, m := range listCast {
		cast = append(cast, broker.Identity{ID: m.ID, Type: m.Type})
	}
	dir, err := broker.NewDirectory(cast)
	if err != nil {
		b.t.Fatal(err)
	}
	s, err := New(Config{Ingress: ing, Auth: &bearer.Authenticator{}, Directory: func() *broker.Directory { return dir },
		PublicURL: "http://gw", Ledger: b.l, TaskList: cfg})
	if err != nil {
		b.t.Fatal(err)
	}
	s.Start(b.ctx)
	b.t.Cleanup(s.Close)
	ctx := context.WithValue(b.ctx, callKey{}, &call{target: "planner", caller: &broker.Identity{ID: "alice", Type: schemas.TypeUser}})
	return s, ctx
}

func TestListTasksPages(t *testing.T) {
	b := newListBed(t)
	var want []a2a.TaskID
	for i := range 7 {
		st := schemas.StateCompleted
		if i%3 == 0 {
			st = schemas.StateFailed
		}
		run, hop := b.run("alice", st)
		want = append([]a2a.TaskID{TaskID(run, hop)}, want...)
	}
	bobRun, _ := b.run("bob", schemas.StateCompleted)
	s, ctx := b.listServer(TaskListConfig{})
	// A small list, holding one run's state: the others' are read from
	// the ledger when a contextId names them.
	small, _ := b.listServer(TaskListConfig{StateBytes: 1})

	// By contextId: the caller's task in the run; none in another's run.
	for name, srv := range map[string]*Server{"states held": s, "states dropped": small} {
		for i, id := range want {
			run, _, _ := ParseTaskID(id)
			res, err := srv.handler.ListTasks(ctx, &a2a.ListTasksRequest{ContextID: run})
			if err != nil || len(res.Tasks) != 1 || res.Tasks[0].ID != id || res.TotalSize != 1 {
				t.Fatalf("%s: ListTasks(contextId of task %d): %+v %v", name, i, res, err)
			}
		}
		if res, err := srv.handler.ListTasks(ctx, &a2a.ListTasksRequest{ContextID: bobRun}); err != nil || len(res.Tasks) != 0 {
			t.Fatalf("%s: alice listed bob's run: %+v %v", name, res, err)
		}
	}

	var got []a2a.TaskID
	token, pages := "", 0
	if err := s.tasks.sync(ctx); err != nil {
		t.Fatal(err)
	}
	reads := s.tasks.reads.Load()
	for {
		res, err := s.handler.ListTasks(ctx, &a2a.ListTasksRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if res.TotalSize != 7 || res.PageSize != 3 || len(res.Tasks) > 3 {
			t.Fatalf("page %d: total %d, size %d, %d tasks", pages, res.TotalSize, res.PageSize, len(res.Tasks))
		}
		for _, task := range res.Tasks {
			got = append(got, task.ID)
			if task.Status.Timestamp == nil || task.Status.Message == nil || len(task.Artifacts) != 0 {
				t.Errorf("task %s: timestamp %v, message %v, %d artifacts (none without includeArtifacts)",
					task.ID, task.Status.Timestamp, task.Status.Message, len(task.Artifacts))
			}
		}
		if token = res.NextPageToken; token == "" {
			break
		}
	}
	if pages != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d pages: %v, want 3 pages of %v", pages, got, want)
	}
	if n := s.tasks.reads.Load() - reads; n != 0 {
		t.Fatalf("three pages read %d events through the task list, want none (the list was current)", n)
	}

	failed, err := s.handler.ListTasks(ctx, &a2a.ListTasksRequest{Status: a2a.TaskStateFailed})
	if err != nil {
		t.Fatal(err)
	}
	if failed.TotalSize != 3 || len(failed.Tasks) != 3 {
		t.Fatalf("failed tasks: total %d, %d listed, want 3", failed.TotalSize, len(failed.Tasks))
	}
	for _, task := range failed.Tasks {
		if task.Status.State != a2a.TaskStateFailed {
			t.Errorf("status filter let %s through", task.Status.State)
		}
	}
	future := time.Now().Add(time.Hour)
	if none, err := s.handler.ListTasks(ctx, &a2a.ListTasksRequest{StatusTimestampAfter: &future}); err != nil || none.TotalSize != 0 {
		t.Fatalf("tasks updated after an hour from now: %+v %v", none, err)
	}

	minus := -1
	for name, req := range map[string]*a2a.ListTasksRequest{
		"page size over 100":      {PageSize: 101},
		"negative page size":      {PageSize: -1},
		"negative history length": {HistoryLength: &minus},
		"forged page token":       {PageToken: "bm90LWEtdG9rZW4"},
		"page token not base64":   {PageToken: "%%%"},
	} {
		_, err := s.handler.ListTasks(ctx, req)
		if !errors.Is(err, a2a.ErrInvalidParams) {
			t.Errorf("%s: %v, want invalid params", name, err)
		}
	}
}

// BenchmarkListTasks is ListTasks without a contextId, a page of 50, on a
// ledger of 5,000 runs (30,000 events): 1,000 by the caller, 4,000 by
// another. Sub-benchmarks in the same run: the raw JetStream floor of the
// page (50 direct gets of stored messages by sequence, what the page
// reads for the replies), and one scan of the whole ledger, what
// answering each call from a scan would cost.
func BenchmarkListTasks(b *testing.B) {
	bed := newListBed(b)
	var seqs []uint64
	for i := range 5000 {
		caller := "bob"
		if i%5 == 0 {
			caller = "alice"
		}
		bed.run(caller, schemas.StateCompleted)
	}
	started := time.Now()
	s, ctx := bed.listServer(TaskListConfig{})
	res, err := s.handler.ListTasks(ctx, &a2a.ListTasksRequest{})
	for i := 0; i < 20 && errors.Is(err, a2a.ErrInternalError); i++ {
		res, err = s.handler.ListTasks(ctx, &a2a.ListTasksRequest{}) // still rebuilding
	}
	b.Logf("the task list was rebuilt from %d ledger events in %v", s.tasks.reads.Load(), time.Since(started).Round(time.Millisecond))
	if err != nil || len(res.Tasks) != 50 || res.TotalSize != 1000 {
		b.Fatalf("list: %v %v", res, err)
	}
	for _, task := range res.Tasks {
		run, hop, _ := ParseTaskID(task.ID)
		st, err := bed.l.Load(bed.ctx, run)
		if err != nil {
			b.Fatal(err)
		}
		seqs = append(seqs, st.Hops[hop].CloseStreamSeq)
	}
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.handler.ListTasks(ctx, &a2a.ListTasksRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-50-gets", func(b *testing.B) {
		st, err := bed.bus.JS.Stream(bed.ctx, bed.l.StreamName())
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			for _, seq := range seqs {
				if _, err := st.GetMsg(bed.ctx, seq); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("scan-whole-ledger", func(b *testing.B) {
		for b.Loop() {
			if err := bed.l.ScanAll(bed.ctx, time.Time{}, func(string, []byte, uint64) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzListTasksParams feeds what a caller controls in ListTasks paging
// (pageSize, pageToken, historyLength) to newPager: it refuses or
// accepts, never panics, and what it accepts is in range; a token it
// writes reads back.
func FuzzListTasksParams(f *testing.F) {
	f.Add(0, "", 0)
	f.Add(50, pageToken(12345), 3)
	f.Add(101, "dGcxLjA", -1)
	f.Add(-7, "%%%", 0)
	f.Fuzz(func(t *testing.T, size int, token string, history int) {
		p, err := newPager(&a2a.ListTasksRequest{PageSize: size, PageToken: token, HistoryLength: &history})
		if err == nil && (p.size < 1 || p.size > maxPageSize || history < 0) {
			t.Fatalf("accepted size %d (page %d), history %d", size, p.size, history)
		}
		if seq, err := parsePageToken(token); err == nil {
			if seq == 0 || pageToken(seq) != token {
				t.Fatalf("token %q read as %d, which writes %q", token, seq, pageToken(seq))
			}
		}
	})
}

// TestTaskListUnreachableNamesHoldNothing: a denied invoke is recorded
// under the target its envelope named, which the caller chooses freely
// (a target that does not exist is denied and recorded: the caller is a
// member of the run). No ListTasks call can reach such a task (ListTasks
// is served only under /<agent>/ of a registered agent), so the list
// does not hold it: one member's 300 invokes to made-up targets add no
// caller and agent pair and no task, however long the process lives.
func TestTaskListUnreachableNamesHoldNothing(t *testing.T) {
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
	// A denied invoke to a registered agent is listed: a call reaches it.
	denied := rb.Deny(hop, "researcher", "x", runtreetest.Denial{Reason: schemas.ReasonPolicy, Message: "not allowed"})
	if _, err := rb.AppendTo(b.ctx, b.l); err != nil {
		t.Fatal(err)
	}
	b.run("bob", schemas.StateCompleted) // pushes the run's state out (StateBytes 1)
	x := b.list(TaskListConfig{PerCaller: 10, StateBytes: 1})
	_, listed, keys := x.held()
	// alice at planner, bob at planner, planner at researcher.
	if keys != 3 || listed != 4 {
		t.Fatalf("the list holds %d tasks under %d caller/agent pairs after one agent's %d denied invokes to made-up targets, "+
			"want 4 under the 3 pairs a call can reach", listed, keys, ghosts)
	}
	if got := tasks(t, x, "planner", "researcher"); !slices.Contains(got, TaskID(run, denied)) {
		t.Errorf("the denied invoke to a registered agent is not listed: %v", got)
	}
	if got := tasks(t, x, "planner", "ghost-0"); len(got) != 0 {
		t.Errorf("tasks listed at a made-up agent: %v", got)
	}
}

// TestTaskListTotalAndAgeBounds: MaxTasks bounds the tasks (and so the
// caller and agent pairs) the list holds in all, the oldest decided
// dropped first; a task decided before the window is dropped as the list
// follows the ledger, not only left out of the rebuild.
func TestTaskListTotalAndAgeBounds(t *testing.T) {
	b := newListBed(t)
	base := time.Now().Add(-30 * time.Minute) // a run a minute
	for i := range 5 {
		b.runAt("alice", schemas.StateCompleted, base.Add(time.Duration(i)*time.Minute))
	}
	var newest []string
	for i := range 5 {
		run, hop := b.runAt("bob", schemas.StateCompleted, base.Add(time.Duration(5+i)*time.Minute))
		newest = append(newest, string(TaskID(run, hop)))
	}
	// 10 runs of 2 tasks each (the caller's and planner's), MaxTasks 6.
	x := b.list(TaskListConfig{MaxTasks: 6})
	if _, listed, _ := x.held(); listed != 6 {
		t.Fatalf("tasks held: %d, want MaxTasks 6", listed)
	}
	if got := tasks(t, x, "alice", "planner"); len(got) != 0 {
		t.Errorf("alice's older tasks are still listed past MaxTasks: %v", got)
	}
	got := tasks(t, x, "bob", "planner")
	if len(got) != 3 || string(got[0]) != newest[4] {
		t.Errorf("bob's listed tasks: %v, want his newest 3, newest first (%s)", got, newest[4])
	}

	// Age: a list following the ledger drops what its window left behind.
	y := b.list(TaskListConfig{Window: time.Hour})
	if _, listed, _ := y.held(); listed != 20 {
		t.Fatalf("tasks held within the window: %d, want 20", listed)
	}
	// A run decided two hours ago (on its events' clock) is never listed.
	old := schemas.NewID()
	rb := runtreetest.New(old, time.Now().Add(-2*time.Hour), listCast)
	oldHop := rb.Start("alice", "planner", "plan", "wf", nil, "p")
	if _, err := rb.AppendTo(b.ctx, b.l); err != nil {
		t.Fatal(err)
	}
	if got := tasks(t, y, "alice", "planner"); slices.Contains(got, TaskID(old, oldHop)) {
		t.Errorf("a task decided before the window is listed")
	}
	// Two hours on, everything listed has aged out at the next read.
	y.mu.Lock()
	y.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	y.mu.Unlock()
	if err := y.sync(b.ctx); err != nil {
		t.Fatal(err)
	}
	b.run("alice", schemas.StateCompleted) // an event to follow: the list reads, and trims
	if err := y.sync(b.ctx); err != nil {
		t.Fatal(err)
	}
	if _, listed, keys := y.held(); listed != 0 || keys != 0 {
		t.Errorf("after the window passed the list holds %d tasks under %d pairs, want none", listed, keys)
	}
}

// TestTaskListListableByTheDirectory: the server's list lists a pair
// when the caller is registered and the agent is a registered agent (what
// ListTasks is served under), and no other.
func TestTaskListListableByTheDirectory(t *testing.T) {
	b := newListBed(t)
	s, _ := b.listServer(TaskListConfig{})
	for _, c := range []struct {
		caller, agent string
		want          bool
	}{
		{"alice", "planner", true}, {"planner", "researcher", true},
		{"alice", "ghost-1", false},   // no such agent
		{"ghost-1", "planner", false}, // no such caller
		{"planner", "alice", false},   // a user: no ListTasks is served under /alice/
	} {
		if got := s.listable(c.caller, c.agent); got != c.want {
			t.Errorf("listable(%s, %s) = %v, want %v", c.caller, c.agent, got, c.want)
		}
	}
}
