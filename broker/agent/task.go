package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/broker"

	"github.com/tollgate/tollgate/schemas"
)

// Task is a task delivered to the agent.
type Task struct {
	c *Client
	// Context is the governance context the gateway stamped: run, hop,
	// parent, depth, ancestry, principal and deadline.
	Context schemas.Context
	// From is the caller.
	From string
	// Message is the A2A message of the invoke.
	Message *Message
	// Envelope is the caller's envelope as delivered.
	Envelope *schemas.Envelope

	// delegations counts the task's delegations: each one's ordinal is
	// its hop key, so a re-run of the task names the same hops.
	delegations atomic.Int64
}

// Delegate invokes another agent (or tool, or model) as part of this task:
// the new hop's parent is this task's hop, so the gateway derives its run,
// depth and ancestry. It waits for the reply. The hop is named by the
// delegation's ordinal within the task (or WithHopKey), so a re-run of the
// task after a crash makes the same hop, which the gateway answers with
// its recorded outcome instead of running it again.
func (t *Task) Delegate(ctx context.Context, to string, msg *Message, opts ...CallOption) (*Reply, error) {
	ordinal := t.delegations.Add(1) - 1
	env := &schemas.Envelope{Kind: schemas.KindInvoke, RunID: t.Context.RunID, ParentHopID: t.Context.HopID, To: to,
		HopKey: strconv.FormatInt(ordinal, 10)}
	return t.c.call(ctx, env, msg, apply(env, opts))
}

// Progress sends the caller intermediate progress of this task: event is
// an A2A v1.0 TaskStatusUpdateEvent or TaskArtifactUpdateEvent (any value
// that encodes to one). The gateway forwards it to the caller before the
// reply, in order; it refuses progress beyond its per-hop bound
// (max_progress_per_hop) or after the hop closed, and scans it with the
// agent's outbound guardrails like a reply. A refusal comes back as a
// denial delivery (Config.OnDelivery); the task goes on.
func (t *Task) Progress(ctx context.Context, event any) error {
	out, err := json.Marshal(event)
	if err != nil {
		return fmt.Errorf("progress of hop %s: encode the event: %w", t.Context.HopID, err)
	}
	env := &schemas.Envelope{
		Kind: schemas.KindProgress, HopID: t.Context.HopID, RunID: t.Context.RunID, To: t.From,
		Result: &schemas.Result{Status: schemas.StateWorking, Output: out},
	}
	s, err := t.c.seal(ctx, env)
	if err != nil {
		return fmt.Errorf("progress of hop %s: %w", t.Context.HopID, err)
	}
	if err := t.c.publish(ctx, s); err != nil {
		return fmt.Errorf("progress of hop %s: %w", t.Context.HopID, err)
	}
	return nil
}

// Spawn starts a new run from inside this task, invoking the target as
// its first hop, and waits for its reply. The gateway allows it only where
// a policy permits the agent Action::"start_run"; the new run continues
// this task's principal, workflow, limits, depth and ancestry
// (spawned_from), so spawning resets nothing that delegating would not.
//
// Like a delegation, the run is named by the task's hop and the call's
// ordinal, so a task run again after a crash spawns the same run, and is
// answered from its ledger.
func (t *Task) Spawn(ctx context.Context, to string, msg *Message, opts ...CallOption) (*Reply, error) {
	ordinal := strconv.FormatInt(t.delegations.Add(1)-1, 10)
	env := &schemas.Envelope{Kind: schemas.KindInvoke, To: to,
		RunID:       schemas.DeriveHopID("spawn:"+t.Context.HopID, ordinal),
		SpawnedFrom: &schemas.SpawnRef{RunID: t.Context.RunID, HopID: t.Context.HopID}}
	return t.c.call(ctx, env, msg, apply(env, opts))
}

// taskRecord is what the client knows of a hop whose handler it started.
type taskRecord struct {
	// msg is the latest delivery of the task: the one to acknowledge.
	msg jetstream.Msg
	// answered is set once the reply is stored and the task acknowledged.
	answered bool
}

// taskKey names one attempt of a hop: a hop its target's retry policy
// retries is delivered again (context.attempt 2, 3, ...) with the same hop
// id, and each attempt is a task of its own, run once.
func taskKey(hc schemas.Context) string {
	if hc.Attempt <= 1 {
		return hc.HopID
	}
	return hc.HopID + "#" + strconv.Itoa(hc.Attempt)
}

func (c *Client) startTask(m jetstream.Msg, d *schemas.Delivery) {
	hop := taskKey(d.Context)
	c.mu.Lock()
	if rec := c.tasks[hop]; rec != nil {
		// This process ran (or is running) the handler of this hop: the
		// task came again because an acknowledgement was lost. Never run
		// it twice: acknowledge it if answered, else let the running
		// handler acknowledge this latest delivery.
		answered := rec.answered
		if !answered {
			rec.msg = m
		}
		c.mu.Unlock()
		if answered {
			c.ackSync(m, hop)
		} else {
			_ = m.InProgress()
		}
		return
	}
	c.mu.Unlock()
	if redelivered(m) && c.answered(d.Context) {
		// The task was answered before (by an earlier process) and only
		// its acknowledgement was lost (a crash, a server restart): the
		// reply is in the ledger. Run it again and it would run twice.
		c.ackSync(m, hop)
		return
	}
	env, err := d.DecodeEnvelope()
	if err != nil || env == nil {
		c.log.Warn("task without a readable envelope", "hop", hop, "err", err)
		_ = m.Term()
		return
	}
	var msg Message
	if err := json.Unmarshal(env.Message, &msg); err != nil {
		c.log.Warn("task message is not A2A", "hop", hop, "err", err)
	}
	t := &Task{c: c, Context: d.Context, From: env.From, Message: &msg, Envelope: env}
	base := c.traceContext(m)
	ctx, cancel := context.WithCancel(base)
	if !d.Context.Deadline.IsZero() {
		ctx, cancel = context.WithDeadline(base, d.Context.Deadline)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		return // left unacked: redelivered to the next instance
	}
	c.tasks[hop] = &taskRecord{msg: m}
	c.running[hop] = cancel
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.running, hop)
			c.mu.Unlock()
			cancel()
		}()
		if c.cfg.Handler == nil {
			c.finish(t, &Result{Status: schemas.StateRejected, Error: c.cfg.ID + " serves no tasks"})
			return
		}
		c.sem <- struct{}{}
		defer func() { <-c.sem }()
		stop := c.keepAlive(ctx, hop)
		hctx, span := c.taskSpan(ctx, t)
		res, err := c.cfg.Handler(hctx, t)
		endTaskSpan(span, res, err)
		stop()
		if err != nil {
			res = &Result{Status: schemas.StateFailed, Error: err.Error(), Usage: usageOf(res), ErrorClass: errorClassOf(res)}
		}
		if res == nil {
			res = &Result{}
		}
		if res.Status == "" && errors.Is(ctx.Err(), context.Canceled) {
			res.Status = schemas.StateCanceled
		}
		c.finish(t, res)
	}()
}

func errorClassOf(r *Result) string {
	if r == nil {
		return ""
	}
	return r.ErrorClass
}

func usageOf(r *Result) *schemas.Usage {
	if r == nil {
		return nil
	}
	return r.Usage
}

// keepAlive tells the broker the task is still being worked on, so a long
// task is not redelivered. It marks the task's latest delivery.
func (c *Client) keepAlive(ctx context.Context, hop string) func() {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(c.progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				_ = c.latest(hop).InProgress()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// latest is the task's latest delivery.
func (c *Client) latest(hop string) jetstream.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tasks[hop].msg
}

// finish replies to the caller and acknowledges the task. The handler's
// result is final: the reply is sent again until the broker has stored it
// (the very same bytes, so the gateway records it once), and only then is
// the task acknowledged. A task whose reply could not be stored before its
// deadline had passed long ago is left unacknowledged, never re-run here.
func (c *Client) finish(t *Task, res *Result) {
	if res == nil {
		res = &Result{}
	}
	if res.Status == "" {
		res.Status = schemas.StateCompleted
	}
	hop := taskKey(t.Context)
	env := &schemas.Envelope{
		Kind: schemas.KindReply, HopID: t.Context.HopID, RunID: t.Context.RunID, To: t.From,
		Result: &schemas.Result{Status: res.Status, Error: res.Error, ErrorClass: res.ErrorClass}, Usage: res.Usage,
	}
	if res.Output != nil {
		out, err := json.Marshal(res.Output)
		if err != nil {
			res.Output = nil
			env.Result.Error = fmt.Sprintf("output does not encode: %v", err)
		}
		env.Result.Output = out
	}
	ctx, cancel := context.WithCancel(context.Background())
	if !t.Context.Deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.Background(), t.Context.Deadline.Add(replyGrace))
	}
	defer cancel()
	stop := c.stopOnClose(ctx, cancel)
	defer stop()
	s, err := c.seal(ctx, env)
	if err == nil {
		err = c.publish(ctx, s)
	}
	if err != nil {
		c.log.Warn("reply not stored; the task stays unacknowledged", "hop", hop, "err", err)
		return
	}
	// The reply is stored: only now is the task acknowledged, and the
	// acknowledgement confirmed. If it is lost anyway, the redelivered task
	// is recognised as answered (startTask).
	c.mu.Lock()
	rec := c.tasks[hop]
	rec.answered = true
	c.done = append(c.done, hop)
	if len(c.done) > maxRemembered {
		// The gateway's ledger still knows; this only spares a query.
		delete(c.tasks, c.done[0])
		c.done = c.done[1:]
	}
	m := rec.msg
	c.mu.Unlock()
	c.ackSync(m, hop)
}

// replyGrace is how long after a task's deadline its reply is still
// offered: the gateway closes the hop as timed out by then.
const replyGrace = time.Minute

// stopOnClose cancels ctx when the client closes.
func (c *Client) stopOnClose(ctx context.Context, cancel context.CancelFunc) func() {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		cancel()
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				c.mu.Lock()
				closed := c.closed
				c.mu.Unlock()
				if closed {
					cancel()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// ackSync acknowledges a task and waits for the server to confirm it,
// trying a few times (a server restarting loses unconfirmed acks).
func (c *Client) ackSync(m jetstream.Msg, hop string) {
	var err error
	for attempt := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = m.DoubleAck(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	c.log.Warn("ack task", "hop", hop, "err", err)
}

// redelivered reports whether the broker delivered m before.
func redelivered(m jetstream.Msg) bool {
	meta, err := m.Metadata()
	return err == nil && meta.NumDelivered > 1
}

// answered reports whether the task of hop hc is answered already: this
// process replied to it, or the gateway's ledger shows the hop closed. A
// failed query counts as not answered: the task runs (a crash mid-task
// must redo it).
func (c *Client) answered(hc schemas.Context) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, c.subj.Query(c.cfg.ID, hc.RunID, hc.HopID), nil)
	if err != nil {
		c.log.Warn("query hop", "hop", hc.HopID, "err", err)
		return false
	}
	var st schemas.HopStatus
	if err := json.Unmarshal(m.Data, &st); err != nil || st.Error != "" {
		c.log.Warn("query hop", "hop", hc.HopID, "err", err, "answer", st.Error)
		return false
	}
	return st.Known && !st.Open
}

// maxRemembered bounds the answered hops a client remembers.
const maxRemembered = 65536

// traceContext continues the trace context the gateway stamped on the
// delivery (the hop's span).
func (c *Client) traceContext(m jetstream.Msg) context.Context {
	return propagation.TraceContext{}.Extract(context.Background(), broker.HeaderCarrier(m.Headers()))
}

// taskSpan starts the agent's span for a task, when it has a tracer.
func (c *Client) taskSpan(ctx context.Context, t *Task) (context.Context, trace.Span) {
	if c.cfg.TracerProvider == nil {
		return ctx, nil
	}
	return c.cfg.TracerProvider.Tracer("github.com/tollgate/tollgate/broker/agent").Start(ctx, "task "+c.cfg.ID,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("tollgate.run_id", t.Context.RunID),
			attribute.String("tollgate.hop_id", t.Context.HopID),
			attribute.String("tollgate.caller", t.From),
			attribute.String("tollgate.agent", c.cfg.ID),
		))
}

func endTaskSpan(span trace.Span, res *Result, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else if res != nil && res.Status != "" && res.Status != schemas.StateCompleted {
		span.SetStatus(codes.Error, string(res.Status))
	}
	span.End()
}
