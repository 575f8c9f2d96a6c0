package fault_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// TestLedgerFull: under load, the LEDGER stream is capped at the bytes it
// holds (as ledger_max_bytes does when it is reached), then given room
// again. While it is full the gateway fails closed: every submission it
// cannot record is refused with reason unavailable and a reason that says
// so, no agent runs a hop the ledger does not hold, and runs cut off in
// the middle end once there is room. A reply (or cancel) that finds no
// room is not refused but kept and recorded later: its sender has
// acknowledged its task and will not send it again, so no hop an agent
// answered may end timed out. After that, runs complete again.
func TestLedgerFull(t *testing.T) {
	c := sizes()
	s := start(t, options{external: true, hopTimeout: 6 * time.Second})
	admin := s.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := admin.Stream(ctx, broker.DefaultSubjects().Stream(broker.StreamLedger))
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(s, c.workers)
	time.Sleep(2 * time.Second)

	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxBytes = int64(info.State.Bytes) // full from now on
	if _, err := admin.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	before := l.count()
	time.Sleep(3 * time.Second)
	cfg.MaxBytes = -1 // room again
	if _, err := admin.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("the ledger was full for 3s (%d runs started before, %d after)", before, l.count())
	time.Sleep(3 * time.Second)
	tl := account(t, s, "LEDGER full for 3s under load", 0, 0, l.finish())
	tl.assert(t)
	if tl.refused == 0 {
		t.Fatalf("no submission was refused while the ledger was full")
	}
	if tl.timedOut != 0 {
		t.Fatalf("%d hops timed out: an answer sent while the ledger was full was lost instead of kept", tl.timedOut)
	}

	// Runs complete again.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	r, err := l.tomas.Start(rctx, "orchestrator", agent.UserText("work"))
	var denied *agent.DeniedError
	if errors.As(err, &denied) || err != nil || r.Status != schemas.StateCompleted {
		t.Fatalf("a run after the ledger had room again: %+v %v", r, err)
	}
}
