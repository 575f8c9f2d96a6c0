package enforcer_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

// openRun starts a run from tomas to the orchestrator and returns the run
// id and the root hop, once delivered.
func openRun(t *testing.T, tomas *sender) (run, root string) {
	t.Helper()
	run = schemas.NewID()
	env := tomas.invoke(run, "", "orchestrator")
	before := len(tomas.g.Deliveries("orchestrator"))
	tomas.send(run, env)
	waitDeliveries(t, tomas.g, "orchestrator", before+1)
	return run, env.HopID
}

// delegate has from invoke to as a child of parent and waits for the
// delivery; it returns the new hop id.
func delegate(t *testing.T, from *sender, run, parent, to string) string {
	t.Helper()
	before := len(from.g.Deliveries(to))
	env := from.invoke(run, parent, to)
	from.send(run, env)
	waitDeliveries(t, from.g, to, before+1)
	return env.HopID
}

func TestAllowedHopDeliveredOnceWithLedgerContext(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")

	ds := waitDeliveries(t, g, "research", 1)
	if len(ds) != 1 {
		t.Fatalf("research got %d deliveries, want 1", len(ds))
	}
	d := ds[0]
	want := schemas.Context{RunID: run, HopID: child, ParentHopID: root, Depth: 1, Ancestry: []string{"tomas", "orchestrator"}, OnBehalfOf: "tomas"}
	got := d.Context
	if d.Kind != schemas.DeliverInvoke || got.RunID != want.RunID || got.HopID != want.HopID || got.ParentHopID != want.ParentHopID ||
		got.Depth != want.Depth || !slices.Equal(got.Ancestry, want.Ancestry) || got.OnBehalfOf != want.OnBehalfOf || got.Deadline.IsZero() {
		t.Fatalf("delivery %s context %+v, want %+v with a deadline", d.Kind, got, want)
	}
	env, err := d.DecodeEnvelope()
	if err != nil || env.From != "orchestrator" || env.Signature == "" {
		t.Fatalf("delivered envelope %+v, %v", env, err)
	}
	sender, _ := g.Dir.Get("orchestrator")
	if err := schemas.VerifySignature(d.Envelope, sender.SigningKey()); err != nil {
		t.Fatalf("the recipient cannot check the sender's signature: %v", err)
	}

	recs := waitRun(t, g, run, 3)
	if !equalTypes(types(recs), schemas.EventRunStarted, schemas.EventHopAllowed, schemas.EventHopAllowed) {
		t.Fatalf("ledger %v", types(recs))
	}
	if hd := decision(t, recs[2]); hd.Depth != 1 || hd.OnBehalfOf != "tomas" || !slices.Equal(hd.PolicyIDs, []string{"agents-delegate-to-agents"}) {
		t.Fatalf("decision %+v", hd)
	}
}

func TestReplyClosesHopAndCompletesRun(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")

	research.send(run, research.reply(child, "orchestrator", &schemas.Usage{InputTokens: 100, OutputTokens: 20, CostUSD: 0.01}))
	ds := waitDeliveries(t, g, "orchestrator", 2)
	if ds[1].Kind != schemas.DeliverReply || ds[1].Context.HopID != child {
		t.Fatalf("orchestrator's second delivery is %s for %s, want the reply for %s", ds[1].Kind, ds[1].Context.HopID, child)
	}
	orch.send(run, orch.reply(root, "tomas", &schemas.Usage{InputTokens: 10, CostUSD: 0.001}))
	ds = waitDeliveries(t, g, "tomas", 1)
	if ds[0].Kind != schemas.DeliverReply || ds[0].Context.HopID != root {
		t.Fatalf("tomas got %s for %s", ds[0].Kind, ds[0].Context.HopID)
	}
	recs := waitRun(t, g, run, 6)
	if !equalTypes(types(recs), schemas.EventRunStarted, schemas.EventHopAllowed, schemas.EventHopAllowed,
		schemas.EventHopCompleted, schemas.EventHopCompleted, schemas.EventRunCompleted) {
		t.Fatalf("ledger %v", types(recs))
	}
	st, err := g.Ledger.Load(ctxT(t), run)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Completed || st.Status != schemas.StateCompleted || st.Spent.Tokens != 130 || len(st.Open) != 0 {
		t.Fatalf("state completed=%v status=%s tokens=%d open=%d", st.Completed, st.Status, st.Spent.Tokens, len(st.Open))
	}

	// The run is over: a late delegation is refused with a reason.
	late := orch.invoke(run, root, "writer")
	orch.send(run, late)
	ds = waitDeliveries(t, g, "orchestrator", 3)
	if d := ds[2]; d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonRun {
		t.Fatalf("late delegation: %s %+v", d.Kind, d.Denial)
	}
}

// TestDenials covers every way a submission is refused. Each is answered to
// its sender with a stable reason and recorded in a ledger.
func TestDenials(t *testing.T) {
	// deny_only: a limit denial here must not halt the run the other cases
	// share (halting is covered in limits_test.go).
	g := startGateway(t, enforcer.Config{Limits: limits.Run{MaxDelegationDepth: 2, OnBreach: limits.DenyOnly}, MaxEnvelopeBytes: 4096})
	tomas, orch, research, writer := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research"), newSender(t, g, "writer")
	run, root := openRun(t, tomas)
	toResearch := delegate(t, orch, run, root, "research")
	toWriter := delegate(t, research, run, toResearch, "writer")
	_, mallory := mustOtherKey(t)

	cases := []struct {
		name       string
		as         *sender
		send       func() // publishes the submission
		reason     schemas.Reason
		inRun      bool // recorded in the run's ledger (else in an entry of its own)
		wantPolicy string
	}{
		{"policy: sub-agent re-invokes the orchestrator", research, func() { research.send(run, research.invoke(run, toResearch, "orchestrator")) },
			schemas.ReasonPolicy, true, "no-agent-invokes-an-orchestrator"},
		{"policy: default deny for a user at a non-entry agent", tomas, func() { tomas.send("r2", tomas.invoke("r2", "", "research")) },
			schemas.ReasonPolicy, false, ""},
		{"depth", writer, func() { writer.send(run, writer.invoke(run, toWriter, "critic")) }, schemas.ReasonDepth, true, ""},
		{"identity: from differs from the subject", research, func() {
			env := research.invoke(run, toResearch, "writer")
			env.From = "orchestrator"
			research.send(run, env)
		}, schemas.ReasonIdentity, true, ""},
		{"identity: forged signature", research, func() {
			env := research.invoke(run, toResearch, "writer")
			wire, _ := env.Sign(mallory.Sign)
			research.sendRaw(g.Subjects.Submit("research", run), wire)
		}, schemas.ReasonIdentity, true, ""},
		{"identity: unsigned", research, func() {
			wire, _ := research.invoke(run, toResearch, "writer").Marshal()
			research.sendRaw(g.Subjects.Submit("research", run), wire)
		}, schemas.ReasonIdentity, true, ""},
		{"malformed: not JSON", research, func() { research.sendRaw(g.Subjects.Submit("research", run), []byte("\x00garbage{")) },
			schemas.ReasonMalformed, true, ""},
		{"malformed: oversized", research, func() {
			env := research.invoke(run, toResearch, "writer")
			env.Message = textMessage(strings.Repeat("x", 5000))
			research.send(run, env)
		}, schemas.ReasonMalformed, true, ""},
		{"malformed: schema version 3", research, func() {
			env := research.invoke(run, toResearch, "writer")
			env.Version = 3
			research.send(run, env)
		}, schemas.ReasonMalformed, true, ""},
		{"replay: sent_at an hour old", research, func() {
			env := research.invoke(run, toResearch, "writer")
			env.SentAt = time.Now().Add(-time.Hour).UTC()
			research.send(run, env)
		}, schemas.ReasonReplay, true, ""},
		{"parent: hop delivered to another agent", writer, func() { writer.send(run, writer.invoke(run, toResearch, "critic")) },
			schemas.ReasonParent, true, ""},
		{"run: unknown run", research, func() { research.send("nosuchrun", research.invoke("nosuchrun", toResearch, "writer")) },
			schemas.ReasonRun, false, ""},
		{"hop: reply to a hop that is not yours", writer, func() { writer.send(run, writer.reply(toResearch, "orchestrator", nil)) },
			schemas.ReasonHop, true, ""},
		{"target: unknown agent", research, func() { research.send(run, research.invoke(run, toResearch, "ghost")) },
			schemas.ReasonTarget, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(g.Deliveries(tc.as.id))
			runBefore, _ := g.Ledger.Read(ctxT(t), run)
			tc.send()
			ds := waitDeliveries(t, g, tc.as.id, before+1)
			d := ds[len(ds)-1]
			if d.Kind != schemas.DeliverDenied || d.Denial == nil || d.Denial.Reason != tc.reason {
				t.Fatalf("got %s %+v, want a %s denial", d.Kind, d.Denial, tc.reason)
			}
			if d.Denial.Message == "" || d.Denial.SubmitSeq == 0 {
				t.Fatalf("denial without explanation or submit seq: %+v", d.Denial)
			}
			if tc.wantPolicy != "" && !slices.Contains(d.Denial.PolicyIDs, tc.wantPolicy) {
				t.Fatalf("policy ids %v, want %s", d.Denial.PolicyIDs, tc.wantPolicy)
			}
			if !tc.inRun {
				// Recorded in the run it named (a new run it started), or in
				// an entry of its own when that run does not exist.
				entry := d.Context.RunID
				if entry == run {
					t.Fatalf("denial recorded in the unrelated run %s", run)
				}
				if head, err := g.Ledger.Head(ctxT(t), entry); err != nil || head.Empty() {
					entry = rejectionEntry(t, g, d.Denial.SubmitSeq)
				}
				var denials []schemas.Reason
				for _, r := range waitRun(t, g, entry, 1) {
					if r.Event.Type == schemas.EventHopDenied {
						denials = append(denials, decision(t, r).Reason)
					}
				}
				if len(denials) != 1 || denials[0] != tc.reason {
					t.Fatalf("ledger %s records denials %v, want one %s denial", entry, denials, tc.reason)
				}
			}
			recs := waitRun(t, g, run, len(runBefore))
			if tc.inRun {
				recs = waitRun(t, g, run, len(runBefore)+1)
				var denial *schemas.HopDecision
				for _, r := range recs[len(runBefore):] {
					if r.Event.Type == schemas.EventHopDenied {
						denial = decision(t, r)
					}
				}
				if denial == nil || denial.Reason != tc.reason || denial.SubmitSeq != d.Denial.SubmitSeq {
					t.Fatalf("new events %v, denial %+v; want the %s denial", types(recs[len(runBefore):]), denial, tc.reason)
				}
			} else if len(recs) != len(runBefore) {
				t.Fatalf("the run's ledger grew from %d to %d events", len(runBefore), len(recs))
			}
		})
	}
}

// TestRejectsWithoutRunAreRecorded: a submission that names no existing run
// and fails before identity is established is recorded in a ledger entry of
// its own, and still answered.
func TestRejectsWithoutRunAreRecorded(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	research := newSender(t, g, "research")
	seq := research.sendRaw(g.Subjects.Submit("research", "fresh-run"), []byte(`{"v":1,"kind":"invoke"}`))
	ds := waitDeliveries(t, g, "research", 1)
	if ds[0].Denial == nil || ds[0].Denial.Reason != schemas.ReasonMalformed || ds[0].Denial.SubmitSeq != seq {
		t.Fatalf("denial %+v", ds[0].Denial)
	}
	if !strings.Contains(ds[0].Denial.Message, "hop_id") {
		t.Errorf("message %q does not name the missing hop_id", ds[0].Denial.Message)
	}
	ctx := ctxT(t)
	stream, err := g.JS.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstreamSubjectsFilter("tg.ledger.*"))
	if err != nil {
		t.Fatal(err)
	}
	var rejects []string
	for subj := range info.State.Subjects {
		if strings.HasPrefix(subj, "tg.ledger."+ledger.RejectedPrefix) {
			rejects = append(rejects, subj)
		}
	}
	if len(rejects) != 1 {
		t.Fatalf("reject entries: %v, want exactly one", info.State.Subjects)
	}
	for _, subj := range rejects {
		run := strings.TrimPrefix(subj, "tg.ledger.")
		recs := waitRun(t, g, run, 1)
		if d := decision(t, recs[0]); d.Reason != schemas.ReasonMalformed || d.From != "research" || d.SubmitSeq != seq {
			t.Fatalf("recorded %+v", d)
		}
	}
}

// TestForgedContextIgnored: an agent that writes its own depth, run,
// ancestry or principal into the envelope gets the ledger's.
func TestForgedContextIgnored(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	unsigned, err := orch.invoke(run, root, "research").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Members the schema does not have carry no authority, and run_id on a
	// delegation is only advisory. All of it is signed: the agent really
	// means it.
	var m map[string]any
	if err := json.Unmarshal(unsigned, &m); err != nil {
		t.Fatal(err)
	}
	m["run_id"], m["depth"], m["ancestry"], m["on_behalf_of"] = "otherrun", 0, []string{}, "admin"
	m["context"] = map[string]any{"run_id": "otherrun", "depth": 0, "on_behalf_of": "admin"}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	orch.sendRaw(g.Subjects.Submit("orchestrator", run), signRaw(t, orch.kp, body))

	ds := waitDeliveries(t, g, "research", 1)
	c := ds[0].Context
	if ds[0].Kind != schemas.DeliverInvoke || c.RunID != run || c.Depth != 1 || c.OnBehalfOf != "tomas" || !slices.Equal(c.Ancestry, []string{"tomas", "orchestrator"}) {
		t.Fatalf("delivery %s with context %+v; want the ledger-derived run %s, depth 1, principal tomas", ds[0].Kind, c, run)
	}
}

// TestRunOrderKept: many invokes of one run, published back to back, are
// decided in the order they were published.
func TestRunOrderKept(t *testing.T) {
	g := startGateway(t, enforcer.Config{Shards: 4, Limits: limits.Run{MaxEdgeRepeats: 100}})
	tomas, orch := newSender(t, g, "tomas"), newSender(t, g, "orchestrator")
	run, root := openRun(t, tomas)
	var want []string
	for range 40 {
		env := orch.invoke(run, root, "research")
		want = append(want, env.HopID)
		wire, err := env.Sign(orch.kp.Sign)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := orch.js.PublishAsync(g.Subjects.Submit("orchestrator", run), wire); err != nil {
			t.Fatal(err)
		}
	}
	recs := waitRun(t, g, run, 2+len(want))
	var got []string
	for _, r := range recs[2:] {
		got = append(got, r.Event.HopID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ledger order differs from publish order:\n got %v\nwant %v", got, want)
	}
	if n := len(waitDeliveries(t, g, "research", len(want))); n != len(want) {
		t.Fatalf("%d deliveries, want %d", n, len(want))
	}
}

// TestUnknownAgentDenied: an unregistered identity cannot even connect
// (broker tests); a submission naming one, published through the
// unrestricted gateway credential, is still denied and recorded.
func TestUnknownAgentDenied(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	_, ghost := mustOtherKey(t)
	env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindInvoke, RunID: "ghostrun",
		From: "ghost", To: "orchestrator", Message: textMessage("hi"), SentAt: time.Now().UTC()}
	env.HopID = env.DerivedHopID()
	wire, err := env.Sign(ghost.Sign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.JS.Publish(ctxT(t), g.Subjects.Submit("ghost", "ghostrun"), wire); err != nil {
		t.Fatal(err)
	}
	ds := waitDeliveries(t, g, "ghost", 1)
	if ds[0].Denial == nil || ds[0].Denial.Reason != schemas.ReasonIdentity || !strings.Contains(ds[0].Denial.Message, "not a registered identity") {
		t.Fatalf("got %+v", ds[0].Denial)
	}
	if st := runState(t, g, "ghostrun"); st.Started {
		t.Fatal("an unknown identity started a run")
	}
}

// TestLedgerSignaturesOnACopy: every admitted envelope of a real run
// verifies against the registered keys, and a copy whose envelope was
// changed, blanked or swapped for another sender's fails at that event.
func TestLedgerSignaturesOnACopy(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	child := delegate(t, orch, run, root, "research")
	research.send(run, research.reply(child, "orchestrator", &schemas.Usage{InputTokens: 3}))
	recs := waitRun(t, g, run, 4)
	keys := ledger.Keys{}
	for _, id := range g.Dir.All() {
		if k := id.SigningKey(); k != nil {
			keys.Add(id.ID, k)
		}
	}
	if err := ledger.Verify(run, recs, keys).Err(); err != nil {
		t.Fatalf("real run: %v", err)
	}
	edit := func(i int, from, to string) []ledger.Record {
		c := append([]ledger.Record(nil), recs...)
		c[i].Raw = []byte(strings.Replace(string(c[i].Raw), from, to, 1))
		// An attacker who can rewrite the whole chain: only the
		// signatures can tell.
		c, err := runtreetest.Rechain(c)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	d := decision(t, recs[2])
	cases := map[string][]ledger.Record{
		"payload edited":   edit(2, `"text":"work"`, `"text":"steal"`),
		"envelope blanked": edit(2, `"envelope":`+string(d.Envelope), `"envelope":{}`),
		"sender swapped":   edit(2, `"from":"orchestrator","to":"research","from_type"`, `"from":"research","to":"research","from_type"`),
	}
	for name, c := range cases {
		var ve *ledger.VerifyError
		if err := ledger.Verify(run, c, keys).Err(); !errors.As(err, &ve) || ve.Seq != 3 {
			t.Errorf("%s: got %v, want a broken link at event 3", name, err)
		}
	}
}

// TestClientEstimateIsReserved: an estimate stated with the agent client's
// WithEstimate is recorded at admission, reserved while the hop is open,
// and released when the reply settles the real spend.
func TestClientEstimateIsReserved(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	release := make(chan struct{})
	g.Agent("orchestrator", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		<-release
		return &agent.Result{Usage: &schemas.Usage{InputTokens: 10, CostUSD: 0.25}}, nil
	})
	tomas := g.Agent("tomas", nil)
	done := make(chan *agent.Reply, 1)
	go func() {
		r, err := tomas.Start(ctxT(t), "orchestrator", agent.UserText("brief"), agent.WithEstimate(schemas.Usage{CostUSD: 2}))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	var run string
	waitFor(t, func() bool {
		ds := g.Deliveries("orchestrator")
		if len(ds) == 0 {
			return false
		}
		d, err := schemas.DecodeDelivery(ds[0].Data)
		if err != nil {
			t.Fatal(err)
		}
		run = d.Context.RunID
		return true
	})
	st := runState(t, g, run)
	if st.Reserved.CostUSD != 2 || decision(t, waitRun(t, g, run, 2)[1]).Estimate.Cost() != 2 {
		t.Fatalf("reserved $%g at admission, want the $2 estimate", st.Reserved.CostUSD)
	}
	close(release)
	<-done
	waitFor(t, func() bool { return runState(t, g, run).Completed })
	if st := runState(t, g, run); st.Reserved.CostUSD != 0 || st.Spent.CostUSD != 0.25 {
		t.Fatalf("after the reply: reserved $%g spent $%g, want $0 and $0.25", st.Reserved.CostUSD, st.Spent.CostUSD)
	}
}

// TestRepeatedDelegationAnsweredFromTheLedger: an orchestrator whose task
// runs again after a crash makes the same delegation (same parent, same
// hop key, so the same derived hop id). The gateway does not admit a new
// hop: it answers with the recorded reply, and the run's ledger, spend and
// the callee's deliveries are unchanged.
func TestRepeatedDelegationAnsweredFromTheLedger(t *testing.T) {
	g := startGateway(t, enforcer.Config{})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	call := func() *schemas.Envelope {
		env := orch.invoke(run, root, "research")
		env.HopKey = "0"
		env.HopID = env.DerivedHopID()
		return env
	}
	first := call()
	orch.send(run, first)
	waitDeliveries(t, g, "research", 1)
	research.send(run, research.reply(first.HopID, "orchestrator", &schemas.Usage{InputTokens: 100, CostUSD: 0.5}))
	waitDeliveries(t, g, "orchestrator", 2) // the task, then the reply
	recs := waitRun(t, g, run, 4)
	spent := runState(t, g, run).Spent

	orch.send(run, call()) // the re-run
	ds := waitDeliveries(t, g, "orchestrator", 3)
	again := ds[len(ds)-1]
	if again.Kind != schemas.DeliverReply || again.Context.HopID != first.HopID {
		t.Fatalf("re-run answered with %s for hop %s, want the recorded reply of %s", again.Kind, again.Context.HopID, first.HopID)
	}
	env, err := again.DecodeEnvelope()
	if err != nil || env.From != "research" || env.Usage == nil || env.Usage.InputTokens != 100 {
		t.Fatalf("replayed reply %+v, %v", env, err)
	}
	if n := len(g.Deliveries("research")); n != 1 {
		t.Fatalf("research got %d tasks, want the one", n)
	}
	if after := waitRun(t, g, run, len(recs)); len(after) != len(recs) || runState(t, g, run).Spent != spent {
		t.Fatalf("the re-run changed the run: %d events (was %d), spend %+v (was %+v)", len(after), len(recs), runState(t, g, run).Spent, spent)
	}
	if s := g.Enforcer.Stats(); s.Replayed != 1 {
		t.Fatalf("stats %+v, want one replayed invoke", s)
	}
}

// TestRunCacheBoundedByBytes: with a run cache far smaller than the runs
// it governs, the enforcer keeps its estimate of what it holds within the
// budget (plus the run it works on), folds evicted runs from the ledger
// again, and governs every hop as with a cache that holds them all.
func TestRunCacheBoundedByBytes(t *testing.T) {
	const budget = 32 << 10
	g := startGateway(t, enforcer.Config{Shards: 2, RunCacheBytes: budget})
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	var runs []string
	for range 40 {
		run, root := openRun(t, tomas)
		child := delegate(t, orch, run, root, "research")
		runs = append(runs, run)
		research.send(run, research.reply(child, "orchestrator", &schemas.Usage{InputTokens: 10}))
	}
	// Every reply closes its hop, though most runs were evicted in between.
	for _, run := range runs {
		waitFor(t, func() bool {
			st := runState(t, g, run)
			return st.Spent.Tokens == 10 && len(st.Open) == 1
		})
	}
	if b := g.Enforcer.CacheBytes(); b <= 0 || b > budget+4<<10 {
		t.Fatalf("cache holds an estimated %d bytes, want some and at most the budget of %d", b, budget)
	}
}
