package enforcer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/schemas"
)

// haltRequest is an operator's kill switch on its way to the run's shard.
type haltRequest struct {
	req    *schemas.HaltRequest
	msg    *nats.Msg
	result schemas.HaltReply
}

func (h *haltRequest) reply(r schemas.HaltReply) {
	b, _ := json.Marshal(r)
	if err := h.msg.Respond(b); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		_ = err // the operator's request timed out; the halt stands
	}
}

// complete answers the operator once the halt's effects are stored.
func (h *haltRequest) complete(ok bool) {
	if !ok {
		h.result.OK, h.result.Error = false, "the halt is recorded but its cancels and alert are not all stored yet; they will be retried"
	}
	h.reply(h.result)
}

// onHalt receives an operator's halt request, checks its signature against
// the operator's registered key, and hands it to the run's shard.
func (e *Enforcer) onHalt(m *nats.Msg) {
	fail := func(format string, args ...any) {
		(&haltRequest{msg: m}).reply(schemas.HaltReply{Error: fmt.Sprintf(format, args...)})
	}
	run, ok := e.subjects.ParseCtlHalt(m.Subject)
	if !ok {
		fail("%q is not a halt subject", m.Subject)
		return
	}
	req, err := schemas.DecodeHaltRequest(m.Data)
	if err != nil {
		fail("%v", err)
		return
	}
	if req.RunID != run {
		fail("request names run %s but was sent for run %s", req.RunID, run)
		return
	}
	if err := e.verifyOperator(schemas.CmdHalt, req.By, m.Data, req.SentAt); err != nil {
		fail("%v", err)
		return
	}
	e.mailbox.put(work{run: run, halt: &haltRequest{req: req, msg: m}})
}

// processHalt halts a run on an operator's order: run.halted, then the same
// cancels and alert as a breach.
func (s *shard) processHalt(ctx context.Context, h *haltRequest) ([]outgoing, error) {
	st, err := s.state(ctx, h.req.RunID)
	if err != nil {
		return nil, err
	}
	switch {
	case !st.Started:
		return nil, fmt.Errorf("run %s does not exist", h.req.RunID)
	case st.Halted:
		h.result = schemas.HaltReply{OK: true, Already: true}
		return s.e.effectsFrom(ctx, st, st.HaltedStreamSeq, nil)
	case st.Completed:
		return nil, fmt.Errorf("run %s has completed (%s); there is nothing to halt", st.RunID, st.Status)
	}
	open := decision.OpenHopIDs(st)
	ev := decision.Halt(st, h.req.By, h.req.Reason, s.e.cfg.Clock())
	out, err := s.record(ctx, st, []schemas.Event{ev}, nil, "")
	if err != nil {
		return nil, err
	}
	h.result = schemas.HaltReply{OK: true, LedgerSeq: st.Head.Seq, OpenHops: open}
	return out, nil
}
