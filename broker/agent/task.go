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
	return t.c.submit(ctx, t.Context.RunID, env)
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

func (c *Client) startTask(m jetstream.Msg, d *schemas.Delivery) {
	if redelivered(m) && c.answered(d.Context) {
		// The task was answered before and only its acknowledgement was
		// lost (a crash, a server restart): the reply is in the ledger. Run
		// it again and it would run twice.
		c.ackSync(m, d.Context.HopID)
		return
	}
	env, err := d.DecodeEnvelope()
	if err != nil || env == nil {
		c.log.Warn("task without a readable envelope", "hop", d.Context.HopID, "err", err)
		_ = m.Term()
		return
	}
	var msg Message
	if err := json.Unmarshal(env.Message, &msg); err != nil {
		c.log.Warn("task message is not A2A", "hop", d.Context.HopID, "err", err)
	}
	t := &Task{c: c, Context: d.Context, From: env.From, Message: &msg, Envelope: env}
	if c.cfg.Handler == nil {
		c.finish(m, t, &Result{Status: schemas.StateRejected, Error: c.cfg.ID + " serves no tasks"})
		return
	}
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
	c.running[d.Context.HopID] = cancel
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.running, d.Context.HopID)
			c.mu.Unlock()
			cancel()
		}()
		c.sem <- struct{}{}
		defer func() { <-c.sem }()
		stop := keepAlive(ctx, m)
		hctx, span := c.taskSpan(ctx, t)
		res, err := c.cfg.Handler(hctx, t)
		endTaskSpan(span, res, err)
		stop()
		if err != nil {
			res = &Result{Status: schemas.StateFailed, Error: err.Error(), Usage: usageOf(res)}
		}
		if res == nil {
			res = &Result{}
		}
		if res.Status == "" && errors.Is(ctx.Err(), context.Canceled) {
			res.Status = schemas.StateCanceled
		}
		c.finish(m, t, res)
	}()
}

func usageOf(r *Result) *schemas.Usage {
	if r == nil {
		return nil
	}
	return r.Usage
}

// keepAlive tells the broker the task is still being worked on, so a long
// task is not redelivered.
func keepAlive(ctx context.Context, m jetstream.Msg) func() {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(15 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				_ = m.InProgress()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// finish replies to the caller and acks the task.
func (c *Client) finish(m jetstream.Msg, t *Task, res *Result) {
	if res == nil {
		res = &Result{}
	}
	if res.Status == "" {
		res.Status = schemas.StateCompleted
	}
	env := &schemas.Envelope{
		Kind: schemas.KindReply, HopID: t.Context.HopID, RunID: t.Context.RunID, To: t.From,
		Result: &schemas.Result{Status: res.Status, Error: res.Error}, Usage: res.Usage,
	}
	if res.Output != nil {
		out, err := json.Marshal(res.Output)
		if err != nil {
			res.Output = nil
			env.Result.Error = fmt.Sprintf("output does not encode: %v", err)
		}
		env.Result.Output = out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.submit(ctx, t.Context.RunID, env); err != nil {
		c.log.Warn("reply", "hop", t.Context.HopID, "err", err)
		_ = m.Nak() // try again: the task will be redone
		return
	}
	// The reply is stored: only now is the task acknowledged, and the
	// acknowledgement confirmed. If it is lost anyway, the redelivered task
	// is recognised as answered (startTask).
	c.remember(t.Context.HopID)
	c.ackSync(m, t.Context.HopID)
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
	c.mu.Lock()
	_, done := c.replied[hc.HopID]
	c.mu.Unlock()
	if done {
		return true
	}
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

// remember notes a hop this process replied to, in a bounded set.
func (c *Client) remember(hop string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.replied) >= maxRemembered {
		clear(c.replied) // the gateway's ledger still knows; this only spares a query
	}
	c.replied[hop] = struct{}{}
}

// maxRemembered bounds the hops a client remembers replying to.
const maxRemembered = 4096

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
