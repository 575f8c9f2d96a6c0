package enforcer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// writerNeedsApproval holds every hop to the writer until an operator of
// group finance answers it.
var writerNeedsApproval = policy.File{Name: "approval.cedar", Src: []byte(`@id("writer-needs-approval")
@approval("required")
@approvers("finance")
permit (principal is Agent, action == Action::"invoke", resource == Agent::"writer");`)}

// approvals is a gateway whose operators are fin (group finance) and ops
// (no group).
type approvals struct {
	g        *enforcertest.Gateway
	fin, ops nkeys.KeyPair
	cfg      enforcer.Config
}

func startApprovals(t *testing.T, timeout time.Duration) *approvals {
	t.Helper()
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Operators: []string{"fin", "ops"},
		Policies: append(basePolicies(t), writerNeedsApproval), NoEnforcer: true})
	a := &approvals{g: g, fin: g.Keys["fin"], ops: g.Keys["ops"]}
	a.cfg = enforcer.Config{
		Operators:       map[string]string{"fin": publicKey(t, a.fin), "ops": publicKey(t, a.ops)},
		OperatorGroups:  map[string][]string{"fin": {"finance"}},
		ApprovalTimeout: timeout,
	}
	g.StartEnforcer(a.cfg)
	return a
}

func publicKey(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// operator connects as an operator over NATS with its own key, as
// `tollgate approve` does.
func (a *approvals) operator(t *testing.T, id string, kp nkeys.KeyPair) *operator.Client {
	t.Helper()
	c, err := operator.Connect(operator.Config{ID: id, Key: kp, URL: a.g.Server.ClientURL(), Subjects: &a.g.Subjects})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// held starts a run and has research delegate to the writer: the hop is
// held. It returns the run, research's hop and the held hop.
func (a *approvals) held(t *testing.T) (run, task, hop string) {
	t.Helper()
	g := a.g
	tomas, orch, research := newSender(t, g, "tomas"), newSender(t, g, "orchestrator"), newSender(t, g, "research")
	run, root := openRun(t, tomas)
	task = delegate(t, orch, run, root, "research")
	env := research.invoke(run, task, "writer")
	research.send(run, env)
	waitFor(t, func() bool {
		h := runState(t, g, run).Hops[env.HopID]
		return h != nil && h.Pending()
	})
	return run, task, env.HopID
}

func approvalAlert(t *testing.T, g *enforcertest.Gateway, run, hop string) schemas.Alert {
	t.Helper()
	s, err := g.JS.Stream(ctxT(t), "ALERTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctxT(t), g.Subjects.AlertApproval(run, hop))
	if err != nil {
		t.Fatalf("no approval alert for hop %s: %v", hop, err)
	}
	var al schemas.Alert
	if err := json.Unmarshal(m.Data, &al); err != nil {
		t.Fatal(err)
	}
	return al
}

func TestApprovalHoldsThenReleasesTheHop(t *testing.T) {
	a := startApprovals(t, 0)
	g := a.g
	run, task, hop := a.held(t)

	st := runState(t, g, run)
	h := st.Hops[hop]
	if h.Approvers[0] != "finance" || !h.Deadline.After(time.Now().Add(50*time.Minute)) || st.Allowed != 3 {
		t.Fatalf("held hop %+v, %d allowed", h, st.Allowed)
	}
	al := approvalAlert(t, g, run, hop)
	if al.Kind != schemas.AlertApproval || al.HopID != hop || al.To != "writer" || len(al.Approvers) != 1 || !strings.Contains(al.Message, "tollgate approve "+run+" "+hop) {
		t.Fatalf("alert %+v", al)
	}
	if n := len(g.Deliveries("writer")); n != 0 {
		t.Fatalf("the writer got %d deliveries before approval", n)
	}
	// The writer cannot answer a hop it never got.
	writer := newSender(t, g, "writer")
	writer.send(run, writer.reply(hop, "research", nil))
	d := nth(t, g, "writer", 1)
	if d.Kind != schemas.DeliverDenied || !strings.Contains(d.Denial.Message, "held for approval") {
		t.Fatalf("reply to a held hop: %+v", d.Denial)
	}

	// ops is an operator but not of group finance; a forged request is
	// refused before it reaches the run.
	if _, err := a.operator(t, "ops", a.ops).Approve(ctxT(t), run, hop, "looks fine"); !errors.Is(err, operator.ErrRefused) || !strings.Contains(err.Error(), "approver groups") {
		t.Fatalf("approve by ops: %v", err)
	}
	_, forger := mustOtherKey(t)
	if r := forged(t, g, forger, run, hop); r.OK || !strings.Contains(r.Error, "signature") {
		t.Fatalf("a request signed with another key: %+v", r)
	}
	if !runState(t, g, run).Hops[hop].Pending() {
		t.Fatal("the hop was released by a refused request")
	}

	fin := a.operator(t, "fin", a.fin)
	r, err := fin.Approve(ctxT(t), run, hop, "budget checked")
	if err != nil || r.LedgerSeq == 0 {
		t.Fatalf("approve: %+v %v", r, err)
	}
	inv := nth(t, g, "writer", 2)
	if inv.Kind != schemas.DeliverInvoke || inv.Context.HopID != hop || inv.Context.ParentHopID != task {
		t.Fatalf("delivery after approval %+v", inv)
	}
	if h := runState(t, g, run).Hops[hop]; !h.Open() || h.ApprovedStreamSeq == 0 {
		t.Fatalf("approved hop %+v", h)
	}
	writer.send(run, writer.reply(hop, "research", &schemas.Usage{OutputTokens: 10}))
	waitFor(t, func() bool { return runState(t, g, run).Hops[hop].Status == ledger.HopStatus(schemas.StateCompleted) })
	if got := len(g.Deliveries("writer")); got != 2 {
		t.Errorf("writer deliveries %d, want the denial and the one invoke", got)
	}
	// Approving again repeats the answer's effects: nothing new is
	// recorded or delivered twice.
	if r, err := fin.Approve(ctxT(t), run, hop, "again"); err != nil || r.Error != "already approved" {
		t.Fatalf("second approve: %+v %v", r, err)
	}
	if got := len(g.Deliveries("writer")); got != 2 {
		t.Errorf("writer deliveries after a second approve %d", got)
	}
}

func TestApprovalRejectedTellsTheCaller(t *testing.T) {
	a := startApprovals(t, 0)
	g := a.g
	run, task, hop := a.held(t)
	before := len(g.Deliveries("research"))
	if _, err := a.operator(t, "fin", a.fin).Reject(ctxT(t), run, hop, ""); err == nil {
		t.Fatal("a rejection without a note was sent")
	}
	if _, err := a.operator(t, "fin", a.fin).Reject(ctxT(t), run, hop, "not this quarter"); err != nil {
		t.Fatal(err)
	}
	d := nth(t, g, "research", before+1)
	if d.Kind != schemas.DeliverDenied || d.Denial.Reason != schemas.ReasonApproval || !strings.Contains(d.Denial.Message, "not this quarter") || d.Context.HopID != hop {
		t.Fatalf("research was told %+v %+v", d.Kind, d.Denial)
	}
	st := runState(t, g, run)
	if h := st.Hops[hop]; h.Status != ledger.HopDenied || h.Reason != schemas.ReasonApproval || len(st.Open) != 2 {
		t.Fatalf("rejected hop %+v, %d open", h, len(st.Open))
	}
	if len(g.Deliveries("writer")) != 0 {
		t.Fatal("a rejected hop was delivered")
	}
	// Research's task is still open: it can go on without the writer.
	if !st.Hops[task].Open() {
		t.Fatal("the caller's task closed with the rejection")
	}
}

func TestApprovalDeadlineRejects(t *testing.T) {
	a := startApprovals(t, time.Second)
	g := a.g
	run, _, hop := a.held(t)
	waitFor(t, func() bool { return runState(t, g, run).Hops[hop].Status == ledger.HopDenied })
	h := runState(t, g, run).Hops[hop]
	if h.Reason != schemas.ReasonApproval {
		t.Fatalf("hop past its approval deadline %+v", h)
	}
	var denial *schemas.Delivery
	for _, d := range waitDeliveries(t, g, "research", 2) {
		if d.Kind == schemas.DeliverDenied && d.Context.HopID == hop {
			denial = d
		}
	}
	if denial == nil || !strings.Contains(denial.Denial.Message, "deadline") {
		t.Fatalf("research was not told of the deadline: %+v", denial)
	}
	if _, err := a.operator(t, "fin", a.fin).Approve(ctxT(t), run, hop, "late"); !errors.Is(err, operator.ErrRefused) {
		t.Fatalf("approving a rejected hop: %v", err)
	}
}

// TestApprovalSurvivesARestart: the hold is in the ledger, not in the
// enforcer; a new enforcer releases it.
func TestApprovalSurvivesARestart(t *testing.T) {
	a := startApprovals(t, 0)
	g := a.g
	run, _, hop := a.held(t)
	g.StopEnforcer()
	g.StartEnforcer(a.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a.operator(t, "fin", a.fin).Approve(ctx, run, hop, "after the restart"); err != nil {
		t.Fatal(err)
	}
	if d := nth(t, g, "writer", 1); d.Kind != schemas.DeliverInvoke || d.Context.HopID != hop {
		t.Fatalf("delivery %+v", d)
	}
}

// forged sends fin's approval signed with kp, over the gateway's own
// connection: only the signature can tell it is not fin's.
func forged(t *testing.T, g *enforcertest.Gateway, kp nkeys.KeyPair, run, hop string) schemas.ApprovalReply {
	t.Helper()
	return signedControl[schemas.ApprovalReply](t, g, kp.Sign, g.Subjects.CtlApprove(run),
		&schemas.ApprovalRequest{Version: schemas.Version, Cmd: schemas.CmdApprove, RunID: run, HopID: hop, By: "fin", Approve: true, SentAt: time.Now().UTC()})
}
