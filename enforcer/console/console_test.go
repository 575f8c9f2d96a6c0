package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

func TestNothingWithoutLogin(t *testing.T) {
	f := start(t)
	anon := client(t)
	for _, p := range []struct{ method, path string }{
		{"GET", "/api/session"}, {"GET", "/api/runs"}, {"GET", "/api/runs/" + f.incident}, {"GET", "/api/events"},
		{"GET", "/api/policies"}, {"POST", "/api/runs/" + f.incident + "/whatif"}, {"POST", "/api/runs/" + f.incident + "/halt"},
		{"GET", "/api/spend"},
	} {
		st, b := call(t, anon, p.method, f.base+p.path, map[string]string{})
		if st != http.StatusUnauthorized {
			t.Errorf("%s %s without login: %d %s, want 401", p.method, p.path, st, b)
		}
		if strings.Contains(string(b), f.incident+"\"") && p.path != "/api/runs/"+f.incident {
			t.Errorf("%s %s without login leaked the run: %s", p.method, p.path, b)
		}
		st, _ = call(t, anon, p.method, f.base+p.path, map[string]string{}, "Authorization", "Bearer tgc_not-a-token")
		if st != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d, want 401", p.method, p.path, st)
		}
	}
	// The app itself (no data) loads, so that the login form shows.
	if st, b := call(t, anon, "GET", f.base+"/runs/"+f.incident, nil); st != http.StatusOK || !strings.Contains(string(b), "<title>Tollgate console</title>") {
		t.Fatalf("the app: %d %.200s", st, b)
	}

	// Wrong token, wrong seed, unknown operator, both at once: refused.
	other, _ := (func() (string, error) { tok, _, err := console.NewToken(); return tok, err })()
	for _, body := range []map[string]string{
		{"token": other},
		{"operator": operatorID, "seed": "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"},
		{"operator": "nobody", "seed": f.opSeed},
		{"token": f.token, "operator": operatorID, "seed": f.opSeed},
	} {
		if st, b := call(t, anon, "POST", f.base+"/api/login", body); st == http.StatusOK {
			t.Errorf("login %v accepted: %s", body, b)
		}
	}
	if st, _ := call(t, anon, "GET", f.base+"/api/runs", nil); st != http.StatusUnauthorized {
		t.Fatalf("a refused login left a session: %d", st)
	}
	// A login must be JSON: a cross-site form cannot post one.
	req, _ := http.NewRequest("POST", f.base+"/api/login", strings.NewReader("token="+f.token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := anon.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("form login: %d, want 415", resp.StatusCode)
	}

	// A bearer token reads; a token login gives a session cookie that
	// reads; logging out ends it.
	if st, b := call(t, anon, "GET", f.base+"/api/runs", nil, "Authorization", "Bearer "+f.token); st != http.StatusOK {
		t.Fatalf("bearer token: %d %s", st, b)
	}
	c := client(t)
	f.login(t, c)
	st, b := call(t, c, "GET", f.base+"/api/session", nil)
	var s struct{ Role, Name string }
	decode(t, b, &s)
	if st != http.StatusOK || s.Role != "reader" || s.Name != "auditors" {
		t.Fatalf("session after token login: %d %+v", st, s)
	}
	call(t, c, "POST", f.base+"/api/logout", map[string]string{})
	if st, _ := call(t, c, "GET", f.base+"/api/runs", nil); st != http.StatusUnauthorized {
		t.Fatalf("after logout: %d, want 401", st)
	}
}

// TestRunDetailIsTheFold checks that the run page's data is exactly the
// tree the one fold builds from the verified ledger, at the end and as of
// every event.
func TestRunDetailIsTheFold(t *testing.T) {
	f := start(t)
	c := client(t)
	f.login(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := f.g.Ledger().ReadVerified(ctx, f.incident, f.g.SigningKeys())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() {
		t.Fatalf("incident does not verify: %s", v.Summary())
	}
	check := func(at uint64) {
		t.Helper()
		path := f.base + "/api/runs/" + f.incident
		want, err := runtree.FromVerified(v)
		if at > 0 {
			path += "?at=" + strconv.FormatUint(at, 10)
			want, err = runtree.FromVerifiedAsOf(v, at)
		}
		if err != nil {
			t.Fatal(err)
		}
		st, b := call(t, c, "GET", path, nil)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, st, b)
		}
		var got map[string]json.RawMessage
		decode(t, b, &got)
		wantJSON, _ := json.Marshal(want)
		var wantMap map[string]json.RawMessage
		decode(t, wantJSON, &wantMap)
		for k, w := range wantMap {
			if !jsonEqual(t, got[k], w) {
				t.Errorf("at %d: %s = %s, the fold says %s", at, k, got[k], w)
			}
		}
		gWant, _ := json.Marshal(want.Graph())
		if !jsonEqual(t, got["graph"], gWant) {
			t.Errorf("at %d: graph = %s, want %s", at, got["graph"], gWant)
		}
		vWant, _ := json.Marshal(&v.Verification)
		if !jsonEqual(t, got["verification"], vWant) {
			t.Errorf("verification = %s, want %s", got["verification"], vWant)
		}
		var tl []console.TimelineEvent
		decode(t, got["timeline"], &tl)
		if len(tl) != v.Events || tl[len(tl)-1].Seq != uint64(v.Events) {
			t.Errorf("timeline has %d events, the run %d", len(tl), v.Events)
		}
	}
	check(0)
	for at := uint64(1); at <= uint64(v.Events); at++ {
		check(at)
	}
	// The page shows the incident: the denied cycle edge, the denial's policy.
	_, b := call(t, c, "GET", f.base+"/api/runs/"+f.incident, nil)
	var run console.RunJSON
	decode(t, b, &run)
	var denied *runtree.Edge
	for i := range run.Graph.Edges {
		if e := &run.Graph.Edges[i]; e.From == "research" && e.To == "orchestrator" {
			denied = e
		}
	}
	if denied == nil || denied.Denied != 1 || denied.Cycles != 1 {
		t.Fatalf("research -> orchestrator edge: %+v", denied)
	}
	if run.TraceURL != "http://tracing.example/trace/{trace_id}" || run.TraceID == "" {
		t.Fatalf("trace: %q %q", run.TraceURL, run.TraceID)
	}
	for _, bad := range []string{"?at=0", "?at=999", "?at=x"} {
		if st, _ := call(t, c, "GET", f.base+"/api/runs/"+f.incident+bad, nil); st != http.StatusBadRequest {
			t.Errorf("at %s: %d, want 400", bad, st)
		}
	}
	if st, _ := call(t, c, "GET", f.base+"/api/runs/"+schemas.NewID(), nil); st != http.StatusNotFound {
		t.Errorf("unknown run: %d, want 404", st)
	}
	// No run token that is not an id reaches a ledger subject: wildcards
	// would read other runs.
	for _, bad := range []string{"_rejected-%3E", "_rejected-*", "%3E", "a.b", "_rejected-x.y", "..%2f..%2fetc"} {
		if st, b := call(t, c, "GET", f.base+"/api/runs/"+bad, nil); st != http.StatusBadRequest {
			t.Errorf("run %q: %d %s, want 400", bad, st, b)
		}
		if st, _ := call(t, c, "POST", f.base+"/api/runs/"+bad+"/whatif", console.WhatIfRequest{Set: "loop"}); st != http.StatusBadRequest {
			t.Errorf("what-if of run %q: %d, want 400", bad, st)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if len(a) == 0 || json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestRunsList(t *testing.T) {
	f := start(t)
	second := f.play(t)
	c := client(t)
	f.login(t, c)
	st, b := call(t, c, "GET", f.base+"/api/runs", nil)
	var list console.RunsJSON
	decode(t, b, &list)
	if st != http.StatusOK || len(list.Runs) != 2 || list.Runs[0].RunID != second || list.Runs[1].RunID != f.incident {
		t.Fatalf("runs (newest first: %s, %s): %d %s", second, f.incident, st, b)
	}
	r := list.Runs[1]
	if r.Status != "completed" || r.OnBehalfOf != "tomas" || r.Workflow != "research-brief" || r.RootAgent != "orchestrator" ||
		r.Hops != 4 || r.Denied != 1 || !r.Looping || r.AwaitingApproval || r.CostUSD <= 0 {
		t.Fatalf("incident row: %+v", r)
	}
	for q, want := range map[string]int{"?q=ORCHESTRATOR": 2, "?q=" + f.incident[:20]: 1, "?q=nobody": 0, "?status=halted": 0, "?status=completed": 2, "?limit=1": 1} {
		st, b := call(t, c, "GET", f.base+"/api/runs"+q, nil)
		var l console.RunsJSON
		decode(t, b, &l)
		if st != http.StatusOK || len(l.Runs) != want {
			t.Errorf("runs%s: %d, %d runs, want %d", q, st, len(l.Runs), want)
		}
	}
	for _, q := range []string{"?status=bogus", "?limit=-1", "?since=yesterday"} {
		if st, b := call(t, c, "GET", f.base+"/api/runs"+q, nil); st != http.StatusBadRequest {
			t.Errorf("runs%s: %d %s, want 400", q, st, b)
		}
	}
}

// TestEventsFromTheLedger checks that the event stream sends a run's
// summary when its ledger grows.
func TestEventsFromTheLedger(t *testing.T) {
	f := start(t)
	c := client(t)
	f.login(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.base+"/api/events", nil)
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("event stream ended")
			}
			return l
		case <-ctx.Done():
			t.Fatal("no event in time")
		}
		return ""
	}
	for next() != "event: hello" {
	}
	run := f.play(t) // new ledger events
	var final *console.RunRow
	for final == nil || final.Status != "completed" {
		l := next()
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			var row console.RunRow
			decode(t, []byte(d), &row)
			if row.Summary != nil && row.RunID == run {
				final = &row
			}
		}
	}
	if final.Hops != 4 || final.Denied != 1 || final.RootAgent != "orchestrator" {
		t.Fatalf("streamed row: %+v", final)
	}
}

func TestHaltIsTheOperatorsSignedCommand(t *testing.T) {
	f := start(t)
	run := f.hold(t)
	reader := client(t)
	f.login(t, reader)
	if st, b := call(t, reader, "POST", f.base+"/api/runs/"+run+"/halt", map[string]string{"reason": "looks bad"}); st != http.StatusForbidden {
		t.Fatalf("reader halt: %d %s, want 403", st, b)
	}
	if slices.Contains(f.ledgerEvents(t, run), schemas.EventRunHalted) {
		t.Fatal("a reader halted the run")
	}
	op := client(t)
	if st, b := call(t, op, "POST", f.base+"/api/login", map[string]string{"operator": operatorID, "seed": f.opSeed}); st != http.StatusOK {
		t.Fatalf("operator login: %d %s", st, b)
	}
	if st, b := call(t, op, "POST", f.base+"/api/runs/"+run+"/halt", map[string]string{"reason": ""}); st != http.StatusBadRequest {
		t.Fatalf("halt without reason: %d %s", st, b)
	}
	st, b := call(t, op, "POST", f.base+"/api/runs/"+run+"/halt", map[string]string{"reason": "stuck at the orchestrator"})
	var reply schemas.HaltReply
	decode(t, b, &reply)
	if st != http.StatusOK || !reply.OK || reply.LedgerSeq == 0 || len(reply.OpenHops) != 1 {
		t.Fatalf("operator halt: %d %s", st, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := f.g.Ledger().ReadVerified(ctx, run, f.g.SigningKeys())
	if err != nil {
		t.Fatal(err)
	}
	tree, err := runtree.FromVerified(v)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || tree.Halt == nil || tree.Halt.By != operatorID || tree.Halt.Reason != "stuck at the orchestrator" || tree.Status != "halted" {
		t.Fatalf("ledger after halt: %s, halt %+v, status %s", v.Summary(), tree.Halt, tree.Status)
	}
	st, b = call(t, op, "POST", f.base+"/api/runs/"+run+"/halt", map[string]string{"reason": "again"})
	decode(t, b, &reply)
	if st != http.StatusOK || !reply.Already {
		t.Fatalf("second halt: %d %s", st, b)
	}
}

func TestWhatIf(t *testing.T) {
	f := start(t)
	c := client(t)
	f.login(t, c)
	st, b := call(t, c, "GET", f.base+"/api/policies", nil)
	var sets console.PoliciesJSON
	decode(t, b, &sets)
	if st != http.StatusOK || len(sets.Sets) != 2 || sets.Sets[0].Name != "running policies" || sets.Sets[1].Name != "loop" {
		t.Fatalf("policies: %d %s", st, b)
	}
	st, b = call(t, c, "POST", f.base+"/api/runs/"+f.incident+"/whatif", console.WhatIfRequest{Set: "loop"})
	var rep console.WhatIfJSON
	decode(t, b, &rep)
	if st != http.StatusOK || rep.Changed != 1 || rep.FirstChange == 0 {
		t.Fatalf("what-if without the no-reinvoke policy: %d %s", st, b)
	}
	// Without the policy, the cycle limit denies the hop instead.
	ch := rep.Changes()[0]
	if ch.From != "research" || ch.To != "orchestrator" || ch.Change != "redenied" {
		t.Fatalf("changed hop: %+v", ch)
	}
	st, b = call(t, c, "POST", f.base+"/api/runs/"+f.incident+"/whatif", console.WhatIfRequest{Set: "running policies"})
	decode(t, b, &rep)
	if st != http.StatusOK || rep.Changed != 0 {
		t.Fatalf("what-if with the running policies: %d %s", st, b)
	}
	// Uploads: a forbid-everything set stops the first hop; garbage is a
	// clear 422.
	st, b = call(t, c, "POST", f.base+"/api/runs/"+f.incident+"/whatif", console.WhatIfRequest{Files: []console.UploadFile{{Name: "deny.cedar",
		Text: `@id("nothing") forbid (principal, action, resource);`}}})
	decode(t, b, &rep)
	if st != http.StatusOK || rep.Changed == 0 || rep.Hops[0].Change != "stopped" {
		t.Fatalf("what-if with an upload: %d %s", st, b)
	}
	for _, req := range []console.WhatIfRequest{{Files: []console.UploadFile{{Name: "x.cedar", Text: "permit ("}}}, {Set: "nope"}, {}} {
		if st, b := call(t, c, "POST", f.base+"/api/runs/"+f.incident+"/whatif", req); st < 400 || !strings.Contains(string(b), "error") {
			t.Errorf("what-if %+v: %d %s", req, st, b)
		}
	}
}

func TestSpendNeedsClickHouse(t *testing.T) {
	f := start(t)
	c := client(t)
	f.login(t, c)
	st, b := call(t, c, "GET", f.base+"/api/spend", nil)
	if st != http.StatusNotFound || !strings.Contains(string(b), "clickhouse.dsn") {
		t.Fatalf("spend without ClickHouse: %d %s", st, b)
	}
}

// TestAwaitingApproval: a hop a policy holds for a human shows in the runs
// list's badge and on the run page as held, pending.
func TestAwaitingApproval(t *testing.T) {
	f := startWith(t, policy.File{Name: "approval.cedar", Src: []byte(`@id("writer-needs-approval")
@approval("required")
@approvers("finance")
permit (principal is Agent, action == Action::"invoke", resource == Agent::"writer");`)})
	run := f.delegateHeld(t)
	c := client(t)
	f.login(t, c)
	var row *console.RunRow
	brokertest.Eventually(t, 20*time.Second, "the run awaits approval in the runs list", func() bool {
		_, b := call(t, c, "GET", f.base+"/api/runs?q="+run, nil)
		var l console.RunsJSON
		decode(t, b, &l)
		if len(l.Runs) == 1 && l.Runs[0].AwaitingApproval {
			row = &l.Runs[0]
		}
		return row != nil
	})
	if row.Status != "running" || len(row.Pending) != 1 {
		t.Fatalf("row: %+v", row)
	}
	_, b := call(t, c, "GET", f.base+"/api/runs/"+run, nil)
	var detail console.RunJSON
	decode(t, b, &detail)
	var held *runtree.Hop
	for _, h := range detail.Hops {
		if h.To == "writer" {
			held = h
		}
	}
	if held == nil || held.Decision != runtree.DecisionHeld || held.Status != "pending" || held.Approval == nil ||
		held.Approval.Outcome != "pending" || !slices.Contains(held.Approval.Approvers, "finance") {
		t.Fatalf("held hop: %+v", held)
	}

	// A reader cannot answer; the operator (group finance) approves with
	// the signed command, and the ledger records it.
	path := f.base + "/api/runs/" + run + "/hops/" + held.HopID
	if st, b := call(t, c, "POST", path+"/approve", console.AnswerRequest{Note: "ok"}); st != http.StatusForbidden {
		t.Fatalf("reader approve: %d %s", st, b)
	}
	op := client(t)
	if st, b := call(t, op, "POST", f.base+"/api/login", map[string]string{"operator": operatorID, "seed": f.opSeed}); st != http.StatusOK {
		t.Fatalf("operator login: %d %s", st, b)
	}
	if st, b := call(t, op, "POST", path+"/reject", console.AnswerRequest{}); st != http.StatusBadRequest {
		t.Fatalf("reject without a note: %d %s", st, b)
	}
	st, b := call(t, op, "POST", path+"/approve", console.AnswerRequest{Note: "budget checked"})
	var reply schemas.ApprovalReply
	decode(t, b, &reply)
	if st != http.StatusOK || !reply.OK || reply.LedgerSeq == 0 {
		t.Fatalf("approve: %d %s", st, b)
	}
	if !slices.Contains(f.ledgerEvents(t, run), schemas.EventHopApproved) {
		t.Fatal("no hop.approved in the ledger")
	}
	_, b = call(t, c, "GET", f.base+"/api/runs/"+run, nil)
	decode(t, b, &detail)
	for _, h := range detail.Hops {
		if h.HopID == held.HopID && (h.Approval.Outcome != "approved" || h.Approval.By != operatorID || h.Approval.Note != "budget checked") {
			t.Fatalf("approved hop: %+v", h.Approval)
		}
	}
	// Answering again changes nothing: the gateway says so.
	st, b = call(t, op, "POST", path+"/approve", console.AnswerRequest{Note: "again"})
	decode(t, b, &reply)
	n := 0
	for _, e := range f.ledgerEvents(t, run) {
		if e == schemas.EventHopApproved {
			n++
		}
	}
	if st != http.StatusOK || reply.Error != "already approved" || n != 1 {
		t.Fatalf("approve twice: %d %s, %d hop.approved events", st, b, n)
	}
}

// TestFailedLoginsThrottled: past a burst of failed logins from one
// address, even the right token waits.
func TestFailedLoginsThrottled(t *testing.T) {
	f := start(t)
	c := client(t)
	refused := 0
	for range 12 {
		st, _ := call(t, c, "POST", f.base+"/api/login", map[string]string{"token": "tgc_guess"})
		switch st {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("guess: %d", st)
		}
	}
	if refused != 2 {
		t.Fatalf("%d of 12 guesses throttled, want 2 (burst 10)", refused)
	}
	if st, _ := call(t, c, "POST", f.base+"/api/login", map[string]string{"token": f.token}); st != http.StatusTooManyRequests {
		t.Fatalf("right token right after: %d, want 429", st)
	}
	// Bearer reads are not logins and are not throttled.
	if st, _ := call(t, c, "GET", f.base+"/api/runs", nil, "Authorization", "Bearer "+f.token); st != http.StatusOK {
		t.Fatalf("bearer read: %d", st)
	}
}

// TestTamperedRun: a run whose chain is broken shows the first broken
// link, the events before it only, and refuses a what-if.
func TestTamperedRun(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := f.g.Ledger().Read(ctx, f.incident)
	if err != nil {
		t.Fatal(err)
	}
	// Event 2 stored again at the end: event 12 does not follow event 11.
	if _, err := f.g.JetStream().Publish(ctx, f.g.Subjects().Ledger(f.incident), recs[1].Raw); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	f.login(t, c)
	st, b := call(t, c, "GET", f.base+"/api/runs/"+f.incident, nil)
	var run console.RunJSON
	decode(t, b, &run)
	if st != http.StatusOK || run.Verification.OK() || run.Verification.Broken.Seq != uint64(len(recs)+1) ||
		run.Verification.Valid != len(recs) || run.Events != len(recs) || len(run.Timeline) != len(recs) {
		t.Fatalf("tampered run: %d, verification %+v, %d events, timeline %d", st, run.Verification, run.Events, len(run.Timeline))
	}
	if st, _ := call(t, c, "GET", f.base+"/api/runs/"+f.incident+"?at="+strconv.Itoa(len(recs)+1), nil); st != http.StatusBadRequest {
		t.Fatalf("as of the broken event: %d, want 400", st)
	}
	if st, b := call(t, c, "POST", f.base+"/api/runs/"+f.incident+"/whatif", console.WhatIfRequest{Set: "loop"}); st != http.StatusConflict {
		t.Fatalf("what-if on a tampered run: %d %s, want 409", st, b)
	}
}

// TestRunShowsRetriesAndFallbacks: the run page's API shows a hop the
// gateway retried (each attempt with its outcome and spend, the edge's
// retries) and a hop re-routed to a fallback (the re-route, the target it
// left with why, the fallback edge), as the ledger recorded them.
func TestRunShowsRetriesAndFallbacks(t *testing.T) {
	f := startConfigured(t, func(cfg *gateway.Config, keys map[string]nkeys.KeyPair) { enforcertest.AddRetries(t, cfg, keys) })
	run := f.retryRun(t)
	c := client(t)
	f.login(t, c)
	st, b := call(t, c, "GET", f.base+"/api/runs/"+run, nil)
	if st != http.StatusOK {
		t.Fatalf("GET run: %d %s", st, b)
	}
	var got struct {
		Hops  []runtree.Hop  `json:"hops"`
		Graph *runtree.Graph `json:"graph"`
	}
	decode(t, b, &got)
	hops := map[string]runtree.Hop{}
	for _, h := range got.Hops {
		if h.From == "orchestrator" {
			hops[h.To] = h
		}
	}
	w := hops["writer"]
	if len(w.Retries) != 1 || w.Retries[0].Attempt != 2 || w.Retries[0].ErrorClass != "rate_limited" || w.Status != "completed" || w.Tokens != 30 {
		t.Fatalf("the writer's hop: %+v", w)
	}
	if a := w.Attempts; len(a) != 2 || a[0].N != 1 || a[0].Outcome != "failed" || a[0].ErrorClass != "rate_limited" || a[0].Error != "model overloaded" ||
		a[0].Tokens != 10 || a[1].N != 2 || a[1].Outcome != "completed" || a[1].Tokens != 20 || a[1].To != "writer" {
		t.Fatalf("the writer's attempts: %+v", a)
	}
	r := hops["editor"]
	if len(r.Reroutes) != 1 || r.Reroutes[0].From != "reviewer" || r.Reroutes[0].Cause != schemas.RerouteNoConsumer || r.Status != "completed" {
		t.Fatalf("the reviewer's hop: %+v (hops %v)", r, got.Hops)
	}
	if a := r.Attempts; len(a) != 2 || a[0].To != "reviewer" || a[0].Outcome != "unavailable" || a[0].Cause != schemas.RerouteNoConsumer ||
		a[1].To != "editor" || a[1].Outcome != "completed" || a[1].Tokens != 5 {
		t.Fatalf("the reviewer's attempts: %+v", a)
	}
	edges := map[string]runtree.Edge{}
	for _, e := range got.Graph.Edges {
		edges[e.From+">"+e.To] = e
	}
	if e := edges["orchestrator>writer"]; e.Retries != 1 || e.Calls != 1 || e.Tokens != 30 {
		t.Fatalf("orchestrator -> writer: %+v", e)
	}
	if e := edges["orchestrator>reviewer"]; e.Rerouted != 1 || e.Calls != 0 {
		t.Fatalf("orchestrator -> reviewer (re-routed away): %+v", e)
	}
	if e := edges["orchestrator>editor"]; e.Fallbacks != 1 || e.Calls != 1 || e.Tokens != 5 {
		t.Fatalf("orchestrator -> editor (the fallback): %+v", e)
	}
	for _, n := range got.Graph.Nodes {
		if (n.ID == "editor" || n.ID == "reviewer") && n.Type != schemas.TypeAgent {
			t.Fatalf("node %s has type %q: want Agent (hop.rerouted records the fallback's)", n.ID, n.Type)
		}
	}
	// The hop list of an older moment: the retry is not there yet.
	var first uint64
	for _, rt := range w.Retries {
		first = rt.Seq - 1
	}
	st, b = call(t, c, "GET", f.base+"/api/runs/"+run+"?at="+strconv.FormatUint(first, 10), nil)
	if st != http.StatusOK {
		t.Fatalf("GET run as of %d: %d %s", first, st, b)
	}
	var before struct {
		Hops []runtree.Hop `json:"hops"`
	}
	decode(t, b, &before)
	for _, h := range before.Hops {
		if h.To == "writer" && (len(h.Retries) != 0 || len(h.Attempts) != 0 || h.Status != "open") {
			t.Fatalf("the writer's hop before its retry: %+v", h)
		}
	}
}
