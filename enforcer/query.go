package enforcer

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// onQuery answers an identity's question about a hop it holds, from the
// ledger (not from a shard's cache, which another goroutine owns): is it
// still open? An agent client asks it when a task is delivered again, so
// that a task it already answered is acknowledged and skipped instead of
// run twice. Only the hop's caller or target learns anything.
func (e *Enforcer) onQuery(m *nats.Msg) {
	answer := func(st schemas.HopStatus) {
		b, _ := json.Marshal(st)
		if err := m.Respond(b); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
			e.cfg.Logger.Debug("query answer", "err", err)
		}
	}
	caller, run, hop, ok := e.subjects.ParseQuery(m.Subject)
	if !ok {
		answer(schemas.HopStatus{Error: "not a query subject"})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	st, err := e.ledger.Load(ctx, run)
	if err != nil {
		answer(schemas.HopStatus{RunID: run, HopID: hop, Error: "the ledger cannot be read now"})
		return
	}
	out := schemas.HopStatus{RunID: run, HopID: hop}
	if h := st.Hops[hop]; h != nil && (h.To == caller || h.From == caller) {
		out.Known, out.Open, out.Status = true, h.Open(), string(h.Status)
		if h.Status == ledger.HopOpen {
			out.Status = string(ledger.HopOpen)
		}
	}
	answer(out)
}
