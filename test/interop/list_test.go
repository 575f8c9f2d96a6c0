package interop

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/ingress"
	"github.com/tollgate/tollgate/ledger"
)

// secondFront starts a second A2A ingress on e's NATS, as another
// gateway instance runs it: its own connection, ingress and task list
// (rebuilt from the ledger), the same ingress and token keys, served at
// its own address, which it returns.
func (e *env) secondFront() string {
	t := e.t
	t.Helper()
	nc, err := e.g.Connect("second front")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	key, err := broker.LoadSeed(filepath.Join(e.cfg.HTTPKeysDir(), "ingress.nk"))
	if err != nil {
		t.Fatal(err)
	}
	subj := e.g.Subjects()
	l := ledger.New(js, subj.Stream(broker.StreamLedger), subj)
	ing, err := ingress.New(ingress.Config{Conn: nc, JetStream: js, Subjects: subj, Key: key, Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	auth := e.g.Authenticator()
	front, err := a2ahttp.New(a2ahttp.Config{Ingress: ing, Auth: auth, Directory: auth.Directory, PublicURL: srv.URL, Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	front.Start(context.Background())
	t.Cleanup(front.Close)
	mux.Handle("/", front)
	return srv.URL
}

// clientAt is an a2a-go/v2 client of agentID at the ingress at base.
func clientAt(t *testing.T, base, agentID, token string) *a2aclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := httpClientFor(token)
	card, err := agentcard.NewResolver(hc).Resolve(ctx, base+"/"+agentID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := a2aclient.NewFromCard(ctx, card, a2aclient.WithJSONRPCTransport(hc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listAll pages through the caller's tasks, pageSize at a time, and
// checks every page's totalSize.
func listAll(t *testing.T, ctx context.Context, c *a2aclient.Client, pageSize int) []*a2a.Task {
	t.Helper()
	var out []*a2a.Task
	token := ""
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatal("more than 50 pages")
		}
		res, err := c.ListTasks(ctx, &a2a.ListTasksRequest{PageSize: pageSize, PageToken: token, IncludeArtifacts: true})
		if err != nil {
			t.Fatal(err)
		}
		if pageSize > 0 && len(res.Tasks) > pageSize {
			t.Fatalf("page of %d tasks, asked for %d", len(res.Tasks), pageSize)
		}
		out = append(out, res.Tasks...)
		if res.NextPageToken == "" {
			if res.TotalSize != len(out) {
				t.Fatalf("totalSize %d, listed %d", res.TotalSize, len(out))
			}
			return out
		}
		token = res.NextPageToken
	}
}

func ids(tasks []*a2a.Task) []a2a.TaskID {
	out := make([]a2a.TaskID, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

// TestListTasksFromLedger: ListTasks without a contextId answers from the
// ledger, not from what an instance served: a second ingress instance on
// the same NATS lists the tasks the first served (and the other way
// round), and so does the gateway restarted on the same data. Pages of
// two hold them all, newest first; a caller never sees another's.
func TestListTasksFromLedger(t *testing.T) {
	e := newEnv(t)
	echo := &executor{do: func(_ context.Context, ec *a2asrv.ExecutorContext) (string, map[string]any, error) {
		return "echo: " + ec.Message.Parts[0].Text(), nil, nil
	}}
	e.bridge("jsagent", a2aServer(t, "jsagent", echo))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	aliceTok, bobTok := e.token("alice"), e.token("bob")
	send := func(c *a2aclient.Client, what string) a2a.TaskID {
		t.Helper()
		res, err := c.SendMessage(ctx, userText(what))
		if err != nil {
			t.Fatal(err)
		}
		task, ok := res.(*a2a.Task)
		if !ok || task.Status.State != a2a.TaskStateCompleted {
			t.Fatalf("send %q: %T %+v", what, res, res)
		}
		return task.ID
	}
	var want []a2a.TaskID // alice's, newest first
	alice := e.client("jsagent", aliceTok)
	for i := range 3 {
		want = slices.Insert(want, 0, send(alice, fmt.Sprintf("task %d", i)))
	}
	bobTask := send(e.client("jsagent", bobTok), "bob's")

	second := e.secondFront()
	alice2 := clientAt(t, second, "jsagent", aliceTok)
	if got := ids(listAll(t, ctx, alice2, 0)); !slices.Equal(got, want) {
		t.Fatalf("the second instance lists %v, want %v", got, want)
	}
	want = slices.Insert(want, 0, send(alice2, "through the second instance"))
	if got := ids(listAll(t, ctx, alice, 2)); !slices.Equal(got, want) {
		t.Fatalf("the first instance, pages of 2: %v, want %v", got, want)
	}
	if got := ids(listAll(t, ctx, clientAt(t, second, "jsagent", bobTok), 0)); !slices.Equal(got, []a2a.TaskID{bobTask}) {
		t.Fatalf("bob at the second instance: %v, want only his %s", got, bobTask)
	}

	e.restart()
	got := listAll(t, ctx, e.client("jsagent", aliceTok), 3)
	if !slices.Equal(ids(got), want) {
		t.Fatalf("after the restart: %v, want %v", ids(got), want)
	}
	for _, task := range got {
		if task.Status.State != a2a.TaskStateCompleted || task.Status.Timestamp == nil || !containsEcho(task) {
			t.Errorf("task %s after the restart: %s, %q", task.ID, task.Status.State, text(task))
		}
	}
	if got := ids(listAll(t, ctx, e.client("jsagent", bobTok), 0)); !slices.Equal(got, []a2a.TaskID{bobTask}) {
		t.Fatalf("bob after the restart: %v, want only his %s", got, bobTask)
	}
	// Another agent's list holds none of them.
	if got := listAll(t, ctx, e.client("sleeper", aliceTok), 0); len(got) != 0 {
		t.Fatalf("alice's tasks at sleeper: %v", ids(got))
	}
}

func containsEcho(task *a2a.Task) bool {
	s := text(task)
	return len(s) >= 5 && s[:5] == "echo:"
}
