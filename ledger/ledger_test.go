package ledger_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

func newLedger(t *testing.T) (*ledger.Ledger, *brokertest.Bus) {
	t.Helper()
	bus := brokertest.Start(t, brokertest.Options{})
	return ledger.New(bus.JS, bus.Subjects.Stream(broker.StreamLedger), bus.Subjects), bus
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func event(t *testing.T, run string, typ schemas.EventType, hop string, data any) schemas.Event {
	t.Helper()
	ev, err := schemas.NewEvent(run, typ, hop, time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// appendRun writes a small run: start, two allowed hops, one denied, one
// reply, completion.
func appendRun(t *testing.T, l *ledger.Ledger, run string) ledger.Head {
	t.Helper()
	ctx := ctxT(t)
	root, child := schemas.NewID(), schemas.NewID()
	evs := []schemas.Event{
		event(t, run, schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: root, Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"}),
		event(t, run, schemas.EventHopAllowed, root, &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator", Action: schemas.ActionInvoke,
			Ancestry: []string{"tomas"}, Digest: strings.Repeat("1", 64), Estimate: &schemas.Usage{CostUSD: 1}}),
		event(t, run, schemas.EventHopAllowed, child, &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: root, From: "orchestrator", To: "research",
			Action: schemas.ActionInvoke, Depth: 1, Ancestry: []string{"tomas", "orchestrator"}, Digest: strings.Repeat("2", 64)}),
		event(t, run, schemas.EventHopDenied, schemas.NewID(), &schemas.HopDecision{Kind: schemas.KindInvoke, ParentHopID: child, From: "research", To: "orchestrator",
			Depth: 2, Reason: schemas.ReasonPolicy, Message: "no", Digest: strings.Repeat("3", 64)}),
		event(t, run, schemas.EventHopCompleted, child, &schemas.HopCompleted{Status: schemas.StateCompleted, By: "research",
			Usage: &schemas.Usage{InputTokens: 100, OutputTokens: 50, CostUSD: 0.25}, Digest: strings.Repeat("4", 64)}),
	}
	var head ledger.Head
	for _, ev := range evs {
		var err error
		head, _, err = l.Append(ctx, head, ev)
		if err != nil {
			t.Fatalf("append %s: %v", ev.Type, err)
		}
	}
	return head
}

func TestAppendReadFold(t *testing.T) {
	l, _ := newLedger(t)
	ctx := ctxT(t)
	run := schemas.NewID()
	head := appendRun(t, l, run)
	if head.Seq != 5 {
		t.Fatalf("head seq %d, want 5", head.Seq)
	}
	got, err := l.Head(ctx, run)
	if err != nil || got != head {
		t.Fatalf("Head = %+v, %v; want %+v", got, err, head)
	}
	recs, err := l.Read(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("read %d events, want 5", len(recs))
	}
	if err := ledger.Verify(run, recs, nil).Err(); err != nil {
		t.Fatalf("verify: %v", err)
	}
	st, err := l.Load(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Started || st.OnBehalfOf != "tomas" || st.Allowed != 2 || st.Denied != 1 {
		t.Fatalf("state: started=%v principal=%q allowed=%d denied=%d", st.Started, st.OnBehalfOf, st.Allowed, st.Denied)
	}
	if st.Spent.Tokens != 150 || st.Spent.CostUSD != 0.25 {
		t.Errorf("spent %+v, want 150 tokens, $0.25", st.Spent)
	}
	if st.Reserved.CostUSD != 1 || len(st.Open) != 1 {
		t.Errorf("reserved %+v, open %d; want the root's $1 estimate and 1 open hop", st.Reserved, len(st.Open))
	}
	if st.Edges[ledger.Edge{From: "orchestrator", To: "research"}] != 1 {
		t.Errorf("edges %v", st.Edges)
	}
	if _, ok := st.Decided(strings.Repeat("3", 64)); !ok {
		t.Error("denied submission digest not remembered")
	}
	if st.Head != head {
		t.Errorf("folded head %+v, want %+v", st.Head, head)
	}

	empty, err := l.Load(ctx, "nosuchrun")
	if err != nil || empty.Started || !empty.Head.Empty() {
		t.Fatalf("Load of a missing run = %+v, %v", empty, err)
	}
	if _, err := l.Read(ctx, "nosuchrun"); !errors.Is(err, ledger.ErrNoRun) {
		t.Fatalf("Read of a missing run: %v, want ErrNoRun", err)
	}
}

// TestAppendConflict: two writers building on the same head; exactly one
// wins, the other gets ErrConflict, and a retry of the winner's very own
// append is accepted as already done.
func TestAppendConflict(t *testing.T) {
	l, _ := newLedger(t)
	ctx := ctxT(t)
	run := schemas.NewID()
	start := event(t, run, schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "a", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"})
	other := event(t, run, schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "b", Caller: "mallory", CallerType: schemas.TypeUser, OnBehalfOf: "mallory"})

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, ev := range []schemas.Event{start, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = l.Append(ctx, ledger.Head{}, ev)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ledger.ErrConflict):
			t.Fatalf("loser got %v, want ErrConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers created the run, want exactly 1 (errors %v)", won, errs)
	}

	// Retrying the same append (same content, same head) is idempotent.
	recs, err := l.Read(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	winner := start
	if recs[0].Event.Hash != mustSealHash(t, start) {
		winner = other
	}
	head, rec, err := l.Append(ctx, ledger.Head{}, winner)
	if err != nil {
		t.Fatalf("retry of the stored append: %v", err)
	}
	if head.Seq != 1 || rec.StreamSeq != recs[0].StreamSeq {
		t.Fatalf("retry gave head %+v, stream seq %d; want the stored event", head, rec.StreamSeq)
	}
	if recs, _ := l.Read(ctx, run); len(recs) != 1 {
		t.Fatalf("run has %d events after the retry, want 1", len(recs))
	}
}

func mustSealHash(t *testing.T, ev schemas.Event) string {
	t.Helper()
	if _, err := ledger.Seal(&ev, ledger.Head{}); err != nil {
		t.Fatal(err)
	}
	return ev.Hash
}

// TestVerifyDetectsTampering edits a copy of a run in every way an attacker
// could and checks that Verify names the right event.
func TestVerifyDetectsTampering(t *testing.T) {
	l, _ := newLedger(t)
	run := schemas.NewID()
	appendRun(t, l, run)
	recs, err := l.Read(ctxT(t), run)
	if err != nil {
		t.Fatal(err)
	}
	clone := func() []ledger.Record {
		out := make([]ledger.Record, len(recs))
		for i, r := range recs {
			out[i] = r
			out[i].Raw = append([]byte(nil), r.Raw...)
		}
		return out
	}
	cases := []struct {
		name    string
		tamper  func([]ledger.Record) []ledger.Record
		wantSeq uint64
		want    string
	}{
		{"edit a field", func(r []ledger.Record) []ledger.Record {
			r[4].Raw = []byte(strings.Replace(string(r[4].Raw), `"cost_usd":0.25`, `"cost_usd":0.01`, 1))
			return r
		}, 5, "edited"},
		{"drop an event", func(r []ledger.Record) []ledger.Record { return append(r[:2], r[3:]...) }, 3, "removed"},
		{"swap two events", func(r []ledger.Record) []ledger.Record { r[1], r[2] = r[2], r[1]; return r }, 2, "seq"},
		{"rehash an edit without fixing the chain", func(r []ledger.Record) []ledger.Record {
			ev := r[2].Event
			ev.Data = []byte(strings.Replace(string(ev.Data), `"research"`, `"writer"`, 1))
			wrong := []byte(r[1].Event.Hash)
			wrong[0] ^= 1 // another hex digit, always
			wire, err := ledger.Seal(&ev, ledger.Head{Seq: 2, Hash: string(wrong)})
			if err != nil {
				t.Fatal(err)
			}
			r[2].Raw = wire
			return r
		}, 3, "prev_hash"},
		{"move to another run", func(r []ledger.Record) []ledger.Record {
			r[0].Raw = []byte(strings.Replace(string(r[0].Raw), run, "other", 1))
			return r
		}, 1, "belongs to run"},
		{"strip the hash", func(r []ledger.Record) []ledger.Record {
			s := string(r[3].Raw)
			r[3].Raw = []byte(s[:strings.LastIndex(s, `,"hash"`)] + "}")
			return r
		}, 4, "no hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ledger.Verify(run, tc.tamper(clone()), nil).Err()
			var ve *ledger.VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ledger.ErrTampered) {
				t.Fatalf("got %v, want a VerifyError", err)
			}
			if ve.Seq != tc.wantSeq || !strings.Contains(ve.Problem, tc.want) {
				t.Fatalf("got %q at event %d, want %q at event %d", ve.Problem, ve.Seq, tc.want, tc.wantSeq)
			}
		})
	}
}

// TestLedgerStreamIsImmutable: even the gateway's own credential cannot
// delete or purge ledger messages, roll them up, or relax the stream.
func TestLedgerStreamIsImmutable(t *testing.T) {
	l, bus := newLedger(t)
	ctx := ctxT(t)
	run := schemas.NewID()
	appendRun(t, l, run)
	stream, err := bus.JS.Stream(ctx, bus.Subjects.Stream(broker.StreamLedger))
	if err != nil {
		t.Fatal(err)
	}
	wantCode := func(name string, err error, code jetstream.ErrorCode) {
		t.Helper()
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != code {
			t.Errorf("%s: got %v, want API error %d", name, err, code)
		}
	}
	// The client flattens the API error of a message delete into text.
	for name, err := range map[string]error{"delete message": stream.DeleteMsg(ctx, 1), "secure delete message": stream.SecureDeleteMsg(ctx, 1)} {
		if !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) || !strings.Contains(err.Error(), "err_code=10057") {
			t.Errorf("%s: got %v, want the server's refusal 10057", name, err)
		}
	}
	wantCode("purge", stream.Purge(ctx), 10110)
	cfg := stream.CachedInfo().Config
	cfg.DenyDelete = false
	_, err = bus.JS.UpdateStream(ctx, cfg)
	wantCode("turn off DenyDelete", err, 10052)
	cfg = stream.CachedInfo().Config
	cfg.DenyPurge = false
	_, err = bus.JS.UpdateStream(ctx, cfg)
	wantCode("turn off DenyPurge", err, 10052)

	recs, err := l.Read(ctx, run)
	if err != nil || len(recs) != 5 {
		t.Fatalf("after the attempts the run has %d events (%v), want 5", len(recs), err)
	}
}
