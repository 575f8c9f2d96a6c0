package a2ahttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/broker/ingress"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// governed is the a2asrv.RequestHandler of the ingress: each operation is
// the authenticated caller's, on the agent of the path, through the
// gateway.
type governed struct{ s *Server }

var _ a2asrv.RequestHandler = (*governed)(nil)

// who returns the call of ctx, or the error that answers it.
func (g *governed) who(ctx context.Context) (*call, error) {
	c := callOf(ctx)
	if c.err != nil {
		return nil, c.err
	}
	return c, nil
}

// invoke submits the message as a hop from the caller to the target.
func (g *governed) invoke(ctx context.Context, req *a2a.SendMessageRequest) (*ingress.Pending, error) {
	c, err := g.who(ctx)
	if err != nil {
		return nil, err
	}
	if req.Message == nil || req.Message.ID == "" || len(req.Message.Parts) == 0 {
		return nil, a2a.NewError(a2a.ErrInvalidParams, "a message with a messageId and parts is required")
	}
	run, parent, _, err := parentTask(req)
	if err != nil {
		return nil, a2a.NewError(a2a.ErrInvalidParams, err.Error())
	}
	if len(req.Message.ID) > 128 {
		return nil, a2a.NewError(a2a.ErrInvalidParams, "messageId is longer than 128 bytes")
	}
	msg := *req.Message
	// The task and context ids are the gateway's; the callee gets its own.
	msg.TaskID, msg.ContextID = "", ""
	raw, err := json.Marshal(&msg)
	if err != nil {
		return nil, a2a.NewError(a2a.ErrInvalidParams, fmt.Sprintf("message does not encode: %v", err))
	}
	p, err := g.s.cfg.Ingress.Invoke(ctx, ingress.Call{Caller: c.caller.ID, To: c.target, ParentHopID: parent, RunID: run,
		Key: req.Message.ID, Message: raw, Estimate: UsageOf(req.Metadata)})
	if err != nil {
		g.s.log.Error("a2a ingress: submit", "caller", c.caller.ID, "to", c.target, "err", err)
		return nil, a2a.NewError(a2a.ErrInternalError, "the gateway could not take the call; try again")
	}
	return p, nil
}

// await waits for a hop's outcome, or its caller's cancel, within the
// ingress's timeout.
func (g *governed) await(ctx context.Context, p *ingress.Pending) (*ingress.Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, g.s.cfg.Timeout)
	defer cancel()
	woken, done := g.s.cancelled(p.HopID)
	defer done()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-woken:
			stop()
		case <-wctx.Done():
		}
	}()
	o, err := p.Wait(wctx)
	select {
	case <-woken:
		return nil, errCanceled
	default:
	}
	return o, err
}

var errCanceled = errors.New("canceled by its caller")

// result turns a hop's outcome into the A2A task, or the A2A error of a
// denial.
func (g *governed) result(run, hop string, o *ingress.Outcome, err error) (*a2a.Task, error) {
	var denied *ingress.DeniedError
	switch {
	case errors.As(err, &denied):
		return nil, denialError(denied)
	case errors.Is(err, errCanceled):
		return &a2a.Task{ID: TaskID(run, hop), ContextID: run, Status: a2a.TaskStatus{State: a2a.TaskStateCanceled}}, nil
	case errors.Is(err, ingress.ErrTimedOut):
		return &a2a.Task{ID: TaskID(run, hop), ContextID: run, Status: a2a.TaskStatus{State: a2a.TaskStateFailed,
			Message: textMessage(TaskID(run, hop), run, "tollgate: the hop timed out")}}, nil
	case err != nil:
		return nil, a2a.NewError(a2a.ErrInternalError, fmt.Sprintf("tollgate: waiting for the hop: %v", err))
	}
	return replyTask(run, hop, o.Reply), nil
}

func textMessage(task a2a.TaskID, run, text string) *a2a.Message {
	return &a2a.Message{ID: a2a.NewMessageID(), Role: a2a.MessageRoleAgent, TaskID: task, ContextID: run,
		Parts: a2a.ContentParts{a2a.NewTextPart(text)}}
}

// denialError is the A2A error of a denied hop: "permission denied" (or
// invalid params for a malformed call) with the reason code, the policy
// ids and the hop in its details.
func denialError(d *ingress.DeniedError) error {
	base := a2a.ErrUnauthorized
	switch d.Denial.Reason {
	case schemas.ReasonMalformed:
		base = a2a.ErrInvalidParams
	case schemas.ReasonUnavailable:
		base = a2a.ErrInternalError
	}
	details := map[string]any{"reason": string(d.Denial.Reason), "hop_id": d.HopID}
	if d.RunID != "" {
		details["run_id"] = d.RunID
	}
	if len(d.Denial.PolicyIDs) > 0 {
		details["policy_ids"] = d.Denial.PolicyIDs
	}
	return a2a.NewError(base, fmt.Sprintf("tollgate denied the call (%s): %s", d.Denial.Reason, d.Denial.Message)).WithDetails(details)
}

// SendMessage implements a2asrv.RequestHandler: the call is a hop, and
// its reply the task returned. With returnImmediately the task is
// returned working, and GetTask follows it.
func (g *governed) SendMessage(ctx context.Context, req *a2a.SendMessageRequest) (a2a.SendMessageResult, error) {
	p, err := g.invoke(ctx, req)
	if err != nil {
		return nil, err
	}
	run := p.RunID
	if req.Config != nil && req.Config.ReturnImmediately && run != "" {
		p.Close()
		return &a2a.Task{ID: TaskID(run, p.HopID), ContextID: run, Status: a2a.TaskStatus{State: a2a.TaskStateWorking}}, nil
	}
	o, err := g.await(ctx, p)
	if o != nil {
		run = o.Context.RunID
	}
	return g.result(run, p.HopID, o, err)
}

// SendStreamingMessage implements a2asrv.RequestHandler: the task, working,
// then its final status (and artifacts) when the hop is answered.
func (g *governed) SendStreamingMessage(ctx context.Context, req *a2a.SendMessageRequest) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		p, err := g.invoke(ctx, req)
		if err != nil {
			yield(nil, err)
			return
		}
		run := p.RunID
		if run != "" {
			if !yield(&a2a.Task{ID: TaskID(run, p.HopID), ContextID: run, Status: a2a.TaskStatus{State: a2a.TaskStateWorking}}, nil) {
				p.Close()
				return
			}
		}
		// The callee's progress is relayed as it comes, before the final
		// status; the task is announced first if the run was not known.
		announced := run != ""
		p.OnProgress = func(d *schemas.Delivery) bool {
			if !announced {
				if run = d.Context.RunID; run == "" {
					return true
				}
				announced = true
				if !yield(&a2a.Task{ID: TaskID(run, p.HopID), ContextID: run, Status: a2a.TaskStatus{State: a2a.TaskStateWorking}}, nil) {
					return false
				}
			}
			ev := progressEvent(d, TaskID(run, p.HopID), run)
			return ev == nil || yield(ev, nil)
		}
		o, err := g.await(ctx, p)
		if errors.Is(err, ingress.ErrStopped) {
			return // the client went away
		}
		if o != nil {
			run = o.Context.RunID
		}
		t, err := g.result(run, p.HopID, o, err)
		if err != nil {
			yield(nil, err)
			return
		}
		if !announced {
			if !yield(&a2a.Task{ID: t.ID, ContextID: run, Status: a2a.TaskStatus{State: a2a.TaskStateWorking}}, nil) {
				return
			}
		}
		for _, a := range t.Artifacts {
			if !yield(&a2a.TaskArtifactUpdateEvent{TaskID: t.ID, ContextID: run, Artifact: a, LastChunk: true}, nil) {
				return
			}
		}
		ev := a2a.NewStatusUpdateEvent(t, t.Status.State, t.Status.Message)
		ev.Metadata = t.Metadata
		yield(ev, nil)
	}
}

// lookup reads the caller's task from the ledger.
func (g *governed) lookup(ctx context.Context, id a2a.TaskID) (*call, *ingress.Hop, error) {
	c, err := g.who(ctx)
	if err != nil {
		return nil, nil, err
	}
	run, hop, ok := ParseTaskID(id)
	if !ok {
		return nil, nil, a2a.NewError(a2a.ErrTaskNotFound, fmt.Sprintf("task %q is not a task of this gateway", id))
	}
	h, err := g.s.cfg.Ingress.Lookup(ctx, c.caller.ID, run, hop)
	if errors.Is(err, ingress.ErrUnknownHop) || err == nil && h.To != c.target {
		return nil, nil, a2a.NewError(a2a.ErrTaskNotFound, fmt.Sprintf("no task %s of yours at %s", id, c.target))
	}
	if err != nil {
		return nil, nil, a2a.NewError(a2a.ErrInternalError, err.Error())
	}
	return c, h, nil
}

// taskOf is the A2A task of a hop as the ledger has it, its status
// stamped with when the hop reached it.
func taskOf(h *ingress.Hop) *a2a.Task {
	var t *a2a.Task
	if h.Reply != nil {
		t = replyTask(h.RunID, h.ID, h.Reply)
	} else {
		t = &a2a.Task{ID: TaskID(h.RunID, h.ID), ContextID: h.RunID, Status: a2a.TaskStatus{State: hopState(h.Hop)}}
		switch h.Status {
		case ledger.HopDenied:
			t.Status.Message = textMessage(t.ID, h.RunID, fmt.Sprintf("tollgate denied the call (%s)", h.Reason))
		case ledger.HopTimedOut:
			t.Status.Message = textMessage(t.ID, h.RunID, "tollgate: the hop timed out")
		}
		if h.Usage != nil {
			t.SetMeta(UsageMetadataKey, usageMeta(h.Usage))
		}
	}
	if at := statusTime(h.Hop); !at.IsZero() {
		at = at.UTC()
		t.Status.Timestamp = &at
	}
	return t
}

// GetTask implements a2asrv.RequestHandler from the ledger.
func (g *governed) GetTask(ctx context.Context, req *a2a.GetTaskRequest) (*a2a.Task, error) {
	_, h, err := g.lookup(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	return taskOf(h), nil
}

// CancelTask implements a2asrv.RequestHandler: a governed cancel of the
// caller's open hop.
func (g *governed) CancelTask(ctx context.Context, req *a2a.CancelTaskRequest) (*a2a.Task, error) {
	c, h, err := g.lookup(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	if !h.Live() {
		return nil, a2a.NewError(a2a.ErrTaskNotCancelable, fmt.Sprintf("task %s is %s", req.ID, h.Status))
	}
	if err := g.s.cfg.Ingress.Cancel(ctx, c.caller.ID, h.RunID, h.ID, h.To); err != nil {
		return nil, a2a.NewError(a2a.ErrInternalError, err.Error())
	}
	// The gateway records the cancel; read it back.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, now, err := g.lookup(ctx, req.ID)
		if err == nil && !now.Live() {
			g.s.wake(h.ID)
			return taskOf(now), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, a2a.NewError(a2a.ErrTaskNotCancelable, fmt.Sprintf("task %s: the gateway did not record the cancel", req.ID))
}

// SubscribeToTask implements a2asrv.RequestHandler: the task as it is,
// and, while it is open, its outcome when it comes.
func (g *governed) SubscribeToTask(ctx context.Context, req *a2a.SubscribeToTaskRequest) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		c, h, err := g.lookup(ctx, req.ID)
		if err != nil {
			yield(nil, err)
			return
		}
		if !h.Live() {
			yield(nil, a2a.NewError(a2a.ErrUnsupportedOperation, fmt.Sprintf("task %s is in a terminal state", req.ID)))
			return
		}
		p, err := g.s.cfg.Ingress.Await(c.caller.ID, h.RunID, h.ID)
		if err != nil {
			yield(nil, a2a.NewError(a2a.ErrInternalError, err.Error()))
			return
		}
		if !yield(taskOf(h), nil) {
			p.Close()
			return
		}
		// It may have closed between the read and the subscription.
		if _, now, err := g.lookup(ctx, req.ID); err == nil && !now.Live() {
			p.Close()
			t := taskOf(now)
			yield(a2a.NewStatusUpdateEvent(t, t.Status.State, t.Status.Message), nil)
			return
		}
		p.OnProgress = func(d *schemas.Delivery) bool {
			ev := progressEvent(d, TaskID(h.RunID, h.ID), h.RunID)
			return ev == nil || yield(ev, nil)
		}
		o, err := g.await(ctx, p)
		if errors.Is(err, ingress.ErrStopped) {
			return
		}
		t, err := g.result(h.RunID, h.ID, o, err)
		if err != nil {
			yield(nil, err)
			return
		}
		yield(a2a.NewStatusUpdateEvent(t, t.Status.State, t.Status.Message), nil)
	}
}

// GetTaskPushConfig implements a2asrv.RequestHandler: not supported.
func (g *governed) GetTaskPushConfig(context.Context, *a2a.GetTaskPushConfigRequest) (*a2a.PushConfig, error) {
	return nil, a2a.ErrPushNotificationNotSupported
}

// ListTaskPushConfigs implements a2asrv.RequestHandler: not supported.
func (g *governed) ListTaskPushConfigs(context.Context, *a2a.ListTaskPushConfigRequest) (*a2a.ListTaskPushConfigResponse, error) {
	return nil, a2a.ErrPushNotificationNotSupported
}

// CreateTaskPushConfig implements a2asrv.RequestHandler: not supported.
func (g *governed) CreateTaskPushConfig(context.Context, *a2a.PushConfig) (*a2a.PushConfig, error) {
	return nil, a2a.ErrPushNotificationNotSupported
}

// DeleteTaskPushConfig implements a2asrv.RequestHandler: not supported.
func (g *governed) DeleteTaskPushConfig(context.Context, *a2a.DeleteTaskPushConfigRequest) error {
	return a2a.ErrPushNotificationNotSupported
}

// GetExtendedAgentCard implements a2asrv.RequestHandler: there is none.
func (g *governed) GetExtendedAgentCard(context.Context, *a2a.GetExtendedAgentCardRequest) (*a2a.AgentCard, error) {
	return nil, a2a.ErrExtendedCardNotConfigured
}

// progressEvent is the A2A event a progress delivery carries, as the
// gateway forwarded it, stamped with the gateway's task and context ids
// (never the callee's): a TaskArtifactUpdateEvent, or a
// TaskStatusUpdateEvent of a state that is not terminal (only the reply
// ends the task). Anything else is nil, and not relayed.
func progressEvent(d *schemas.Delivery, task a2a.TaskID, contextID string) a2a.Event {
	env, err := d.DecodeEnvelope()
	if err != nil || env == nil || env.Kind != schemas.KindProgress || env.Result == nil {
		return nil
	}
	var probe struct {
		Artifact json.RawMessage `json:"artifact"`
		Status   json.RawMessage `json:"status"`
	}
	if json.Unmarshal(env.Result.Output, &probe) != nil {
		return nil
	}
	switch {
	case probe.Artifact != nil:
		var ev a2a.TaskArtifactUpdateEvent
		if json.Unmarshal(env.Result.Output, &ev) != nil || ev.Artifact == nil {
			return nil
		}
		ev.TaskID, ev.ContextID = task, contextID
		return &ev
	case probe.Status != nil:
		var ev a2a.TaskStatusUpdateEvent
		if json.Unmarshal(env.Result.Output, &ev) != nil || ev.Status.State.Terminal() || ev.Status.State == a2a.TaskStateUnspecified {
			return nil
		}
		ev.TaskID, ev.ContextID = task, contextID
		if m := ev.Status.Message; m != nil {
			m.TaskID, m.ContextID = task, contextID
		}
		return &ev
	}
	return nil
}
