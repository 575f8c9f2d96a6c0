package enforcer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// approveRequest is an operator's answer to a hop held for approval, on its
// way to the run's shard.
type approveRequest struct {
	req    *schemas.ApprovalRequest
	msg    *nats.Msg
	result schemas.ApprovalReply
}

func (a *approveRequest) reply(r schemas.ApprovalReply) {
	b, _ := json.Marshal(r)
	if err := a.msg.Respond(b); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		_ = err // the operator's request timed out; the answer stands in the ledger
	}
}

// complete answers the operator once the answer's effects are stored.
func (a *approveRequest) complete(ok bool) {
	if !ok {
		a.result.OK, a.result.Error = false, "the answer is recorded but its delivery is not stored yet; send it again to retry"
	}
	a.reply(a.result)
}

// onApprove receives an operator's approval or rejection of a held hop,
// checks its signature against the operator's registered key, and hands
// it to the run's shard. Which groups the operator must belong to is
// checked there, against the hop.
func (e *Enforcer) onApprove(m *nats.Msg) {
	fail := func(format string, args ...any) {
		(&approveRequest{msg: m}).reply(schemas.ApprovalReply{Error: fmt.Sprintf(format, args...)})
	}
	run, ok := e.subjects.ParseCtlApprove(m.Subject)
	if !ok {
		fail("%q is not an approval subject", m.Subject)
		return
	}
	req, err := schemas.DecodeApprovalRequest(m.Data)
	if err != nil {
		fail("%v", err)
		return
	}
	if req.RunID != run {
		fail("request names run %s but was sent for run %s", req.RunID, run)
		return
	}
	if err := e.verifyOperator(schemas.CmdApprove, req.By, m.Data, req.SentAt); err != nil {
		fail("%v", err)
		return
	}
	e.mailbox.put(work{run: run, approve: &approveRequest{req: req, msg: m}})
}

// verifyOperator checks a signed control request for the command cmd: by
// is a registered operator, the signature is its key's, the request is
// signed for cmd, and sentAt is within the replay window.
func (e *Enforcer) verifyOperator(cmd, by string, data []byte, sentAt time.Time) error {
	return broker.VerifyControl(cmd, by, (*e.operators.Load())[by], data, sentAt, e.cfg.Clock(), e.cfg.ReplayWindow)
}

// mayApprove reports whether an operator may answer a hop held for the
// given approver groups: any operator when none are named, else one of
// their members.
func (e *Enforcer) mayApprove(by string, approvers []string) bool {
	if len(approvers) == 0 {
		return true
	}
	groups := (*e.operatorGroups.Load())[by]
	for _, g := range approvers {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// processApprove records an operator's answer to a held hop: hop.approved
// (then the invoke is delivered) or hop.rejected (then its caller is told).
// Answering a hop already answered the same way repeats the effects of that
// answer, so an operator whose first request went unanswered can send it
// again.
func (s *shard) processApprove(ctx context.Context, a *approveRequest) ([]outgoing, error) {
	req := a.req
	st, err := s.state(ctx, req.RunID)
	if err != nil {
		return nil, err
	}
	h := st.Hops[req.HopID]
	switch {
	case !st.Started:
		return nil, fmt.Errorf("run %s does not exist", req.RunID)
	case h == nil:
		return nil, fmt.Errorf("hop %s is not a hop of run %s", req.HopID, req.RunID)
	case h.ApprovedStreamSeq != 0 && req.Approve:
		a.result = schemas.ApprovalReply{OK: true, Error: "already approved"}
		return s.e.effectsFrom(ctx, st, h.ApprovedStreamSeq, nil)
	case h.Status == ledger.HopDenied && h.Reason == schemas.ReasonApproval && !req.Approve:
		a.result = schemas.ApprovalReply{OK: true, Error: "already rejected"}
		return s.e.effectsFrom(ctx, st, h.CloseStreamSeq, nil)
	case !h.Pending():
		return nil, fmt.Errorf("hop %s is not awaiting approval (it is %s)", req.HopID, h.Status)
	case !s.e.mayApprove(req.By, h.Approvers):
		return nil, fmt.Errorf("operator %q is not in the approver groups %v of hop %s", req.By, h.Approvers, req.HopID)
	}
	rules := s.e.rules.Load()
	now := s.e.cfg.Clock()
	var ev schemas.Event
	if req.Approve {
		target, ok := rules.Dir.Get(h.To)
		if !ok {
			return nil, fmt.Errorf("hop %s: its target %q is no longer registered; reject it", req.HopID, h.To)
		}
		ev = schemas.EventOf(st.RunID, schemas.EventHopApproved, h.ID, now, &schemas.HopApproved{
			By: req.By, Note: req.Note, Deadline: now.Add(rules.TimeoutFor(target)).UTC(),
		})
	} else {
		ev = schemas.EventOf(st.RunID, schemas.EventHopRejected, h.ID, now, &schemas.HopRejected{By: req.By, Message: req.Note})
	}
	out, err := s.record(ctx, st, []schemas.Event{ev}, nil, h.ID)
	if err != nil {
		return nil, err
	}
	a.result = schemas.ApprovalReply{OK: true, LedgerSeq: st.Head.Seq}
	return out, nil
}
