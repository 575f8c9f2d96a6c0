package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// Handler does the work of a task and returns its result. Returning an
// error replies with status "failed" and the error's text.
type Handler func(ctx context.Context, t *Task) (*Result, error)

// Config says who the agent is and how it reaches the bus.
type Config struct {
	// ID is the agent's (or user's) registered id.
	ID string
	// Key is its nkey: the NATS credential and the envelope signing key.
	Key nkeys.KeyPair
	// URL of the NATS server, or InProcess for an embedded one.
	URL       string
	InProcess *broker.Embedded
	// Subjects must match the gateway's; default broker.DefaultSubjects().
	Subjects *broker.Subjects
	// Handler serves the tasks delivered to the agent; nil for a caller
	// that only starts runs.
	Handler Handler
	// MaxConcurrent bounds tasks handled at once. Default 64.
	MaxConcurrent int
	// Unsigned sends envelopes without a signature (only accepted for
	// identities registered with require_signature: false).
	Unsigned bool
	// OnDelivery, when set, sees every delivery that is not a task and
	// that no call is waiting for (e.g. a reply that arrives after a
	// restart, or the denial of one of this agent's replies).
	OnDelivery func(*schemas.Delivery)
	// Logger receives the client's logs. Default: discard.
	Logger *slog.Logger
	// ErrorHandler receives NATS asynchronous errors, such as permission
	// violations.
	ErrorHandler nats.ErrHandler
	// TracerProvider, when set, gets a span per task the agent serves, a
	// child of the hop's span. The W3C trace context is carried to the
	// handler and on into every delegation either way, so spans the handler
	// makes itself join the run's trace.
	TracerProvider trace.TracerProvider
}

// Client is a connected agent.
type Client struct {
	cfg  Config
	subj broker.Subjects
	nc   *nats.Conn
	js   jetstream.JetStream
	cc   jetstream.ConsumeContext
	sem  chan struct{}
	// progressEvery is how often a running task is marked in progress: a
	// third of the consumer's ack wait.
	progressEvery time.Duration
	wg            sync.WaitGroup
	log           *slog.Logger

	mu      sync.Mutex
	waiters map[string]chan *schemas.Delivery  // hop id -> its outcome
	watch   map[string]func(*schemas.Envelope) // hop id -> its progress callback
	running map[string]context.CancelFunc      // hop id -> its task
	// tasks are the hops whose handler this process has started: a
	// handler runs at most once per hop and process, however often the
	// task is delivered (a lost acknowledgement, a server restart).
	tasks  map[string]*taskRecord
	done   []string // answered hops in tasks, oldest first (bounded)
	closed bool
}

// Connect connects the agent with its key, binds its delivery consumer
// (provisioned by the gateway) and starts receiving.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	if err := schemas.CheckPrincipalID(cfg.ID); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	subj := broker.DefaultSubjects()
	if cfg.Subjects != nil {
		subj = *cfg.Subjects
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc, err := broker.Connect(broker.ConnectConfig{
		URL: cfg.URL, InProcess: cfg.InProcess, Key: cfg.Key, InboxPrefix: broker.InboxPrefix(cfg.ID),
		Name: "agent " + cfg.ID, ErrorHandler: cfg.ErrorHandler,
	})
	if err != nil {
		return nil, err
	}
	// A key that is not this identity's fails here, naming whose it is,
	// instead of every request waiting for its deadline.
	if _, err := subj.CheckOwner(ctx, nc, "the key given to agent "+cfg.ID, broker.OwnerIdentity, cfg.ID); err != nil {
		nc.Close()
		return nil, fmt.Errorf("agent %s: %w", cfg.ID, err)
	}
	// The agent's account imports its consumer's API under the gateway's
	// API prefix (see broker.AccountsConfig).
	js, err := jetstream.NewWithAPIPrefix(nc, subj.JSAPIPrefix())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("agent %s: %w", cfg.ID, err)
	}
	c := &Client{
		cfg: cfg, subj: subj, nc: nc, js: js, log: log,
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		waiters: map[string]chan *schemas.Delivery{},
		watch:   map[string]func(*schemas.Envelope){},
		running: map[string]context.CancelFunc{},
		tasks:   map[string]*taskRecord{},
	}
	cons, err := js.Consumer(ctx, subj.Stream(broker.StreamDeliver), broker.AgentConsumer(cfg.ID))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("agent %s: bind delivery consumer: %w", cfg.ID, err)
	}
	c.progressEvery = 15 * time.Second
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		c.progressEvery = max(info.Config.AckWait/3, 100*time.Millisecond)
	}
	// Short pulls: when the consumer's leader moves (a cluster node lost),
	// pulls waiting at the old one are noticed by their missing
	// heartbeats and renewed within seconds, not half a minute.
	c.cc, err = cons.Consume(c.receive, jetstream.PullMaxMessages(cfg.MaxConcurrent*2), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("agent %s: consume: %w", cfg.ID, err)
	}
	return c, nil
}

// ID returns the agent's id.
func (c *Client) ID() string { return c.cfg.ID }

// Conn returns the agent's NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Close stops receiving, cancels running tasks, waits for them to return,
// and closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, cancel := range c.running {
		cancel()
	}
	c.mu.Unlock()
	c.cc.Stop()
	<-c.cc.Closed()
	c.wg.Wait()
	c.nc.Close()
}

// Message is an A2A v1.0 message.
type Message = a2a.Message

// Text returns an A2A message with one text part.
func Text(role a2a.MessageRole, text string) *Message {
	return a2a.NewMessage(role, a2a.NewTextPart(text))
}

// UserText returns a user-role A2A text message: what a caller sends.
func UserText(text string) *Message { return Text(a2a.MessageRoleUser, text) }

// AgentText returns an agent-role A2A text message: what a task returns.
func AgentText(text string) *Message { return Text(a2a.MessageRoleAgent, text) }

// MessageText concatenates the text parts of an A2A message.
func MessageText(m *Message) string {
	if m == nil {
		return ""
	}
	var out string
	for _, p := range m.Parts {
		out += p.Text()
	}
	return out
}

// Result is what a task produced.
type Result struct {
	// Status defaults to completed.
	Status schemas.TaskState
	// Output is the A2A message (or task) to return.
	Output *Message
	// Usage is what the task spent; it counts against the run's budget.
	Usage *schemas.Usage
	// Error explains a failed task.
	Error string
	// ErrorClass classifies a failed task ("rate_limited", "overloaded":
	// 1-64 of a-z, 0-9, '_', '.', '-'): the classes the agent's retry
	// policy lists (docs/limits.md) make the gateway deliver the task
	// again, with the same hop id and the next context.attempt.
	ErrorClass string
}

// Reply is the outcome of a call.
type Reply struct {
	RunID, HopID string
	// Status is the task state the callee reported, or "rejected" when the
	// gateway denied the call and "failed" when it timed out.
	Status schemas.TaskState
	Output *Message
	Usage  *schemas.Usage
	Error  string
	// Delivery is the delivery the outcome came in.
	Delivery *schemas.Delivery
}

// DeniedError is returned when the gateway denied a call.
type DeniedError struct {
	Denial schemas.Denial
	HopID  string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("hop %s denied (%s): %s", e.HopID, e.Denial.Reason, e.Denial.Message)
}

// ErrTimedOut is returned when the gateway timed the call out.
var ErrTimedOut = errors.New("agent: call timed out")

// CallOption tunes a call.
type CallOption func(*callOptions)

// callOptions is what the options of a call set: its envelope, and who
// watches its progress.
type callOptions struct {
	env        *schemas.Envelope
	onProgress func(*schemas.Envelope)
}

// WithEstimate states what the call is expected to spend; the gateway
// reserves it against the run's budget.
func WithEstimate(u schemas.Usage) CallOption {
	return func(o *callOptions) { o.env.Estimate = &u }
}

// WithRunID starts the run under a chosen id instead of a fresh one.
func WithRunID(id string) CallOption {
	return func(o *callOptions) { o.env.RunID = id }
}

// WithEnvelope has fn change the call's envelope before it is signed (a
// field no other option sets, e.g. spawned_from).
func WithEnvelope(fn func(*schemas.Envelope)) CallOption {
	return func(o *callOptions) { fn(o.env) }
}

// WithProgress has fn called, in order, with each progress the callee
// sends before its reply (a kind "progress" envelope whose result.output
// is an A2A v1.0 TaskStatusUpdateEvent or TaskArtifactUpdateEvent, as the
// gateway forwarded it: redacted when a guardrail redacted it). Without
// it, progress is acknowledged and ignored.
func WithProgress(fn func(*schemas.Envelope)) CallOption {
	return func(o *callOptions) { o.onProgress = fn }
}

// WithHopKey names a delegation instead of its ordinal within the task
// (see schemas.DeriveHopID): a handler whose delegations may come in
// another order when it is run again names each one itself, so that a
// re-run after a crash still finds the recorded outcome of each.
func WithHopKey(key string) CallOption {
	return func(o *callOptions) { o.env.HopKey = key }
}

// apply applies opts to env and returns the progress callback they set.
func apply(env *schemas.Envelope, opts []CallOption) func(*schemas.Envelope) {
	o := callOptions{env: env}
	for _, opt := range opts {
		opt(&o)
	}
	return o.onProgress
}

// Start starts a new run by invoking the target, and waits for its reply.
func (c *Client) Start(ctx context.Context, to string, msg *Message, opts ...CallOption) (*Reply, error) {
	env := &schemas.Envelope{Kind: schemas.KindInvoke, RunID: schemas.NewID(), To: to}
	return c.call(ctx, env, msg, apply(env, opts))
}

func (c *Client) call(ctx context.Context, env *schemas.Envelope, msg *Message, onProgress func(*schemas.Envelope)) (*Reply, error) {
	raw, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	env.Message, env.HopID = raw, env.DerivedHopID()
	wait := make(chan *schemas.Delivery, 1)
	c.mu.Lock()
	c.waiters[env.HopID] = wait
	if onProgress != nil {
		c.watch[env.HopID] = onProgress
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, env.HopID)
		delete(c.watch, env.HopID)
		c.mu.Unlock()
	}()
	wire, err := c.seal(ctx, env)
	if err != nil {
		return nil, err
	}
	if err := c.publish(ctx, wire); err != nil {
		return nil, fmt.Errorf("submit %s hop %s: %w", env.Kind, env.HopID, err)
	}
	select {
	case d := <-wait:
		return outcome(env, d)
	case <-ctx.Done():
		return nil, fmt.Errorf("call %s -> %s (hop %s): %w", env.From, env.To, env.HopID, ctx.Err())
	}
}

func outcome(env *schemas.Envelope, d *schemas.Delivery) (*Reply, error) {
	r := &Reply{RunID: d.Context.RunID, HopID: env.HopID, Delivery: d}
	switch d.Kind {
	case schemas.DeliverDenied:
		r.Status = schemas.StateRejected
		return r, &DeniedError{Denial: *d.Denial, HopID: env.HopID}
	case schemas.DeliverTimeout:
		r.Status = schemas.StateFailed
		return r, fmt.Errorf("hop %s: %w", env.HopID, ErrTimedOut)
	}
	reply, err := d.DecodeEnvelope()
	if err != nil || reply == nil || reply.Result == nil {
		return r, fmt.Errorf("hop %s: reply delivery without a readable result: %v", env.HopID, err)
	}
	r.Status, r.Usage, r.Error = reply.Result.Status, reply.Usage, reply.Result.Error
	if len(reply.Result.Output) > 0 {
		var m Message
		if err := json.Unmarshal(reply.Result.Output, &m); err == nil {
			r.Output = &m
		}
	}
	return r, nil
}

// pullExpiry is how long a pull for deliveries waits at the server.
const pullExpiry = 5 * time.Second

// sealed is a submission ready to publish: its subject, headers and the
// signed bytes. Publishing it again (a retry) sends the very same bytes
// under the same dedupe id, so the broker and the gateway recognise it.
type sealed struct {
	msg *nats.Msg
	id  string
	env *schemas.Envelope
}

// seal stamps and signs env for the agent's submit subject.
func (c *Client) seal(ctx context.Context, env *schemas.Envelope) (*sealed, error) {
	env.Version, env.From, env.SentAt = schemas.EnvelopeVersion, c.cfg.ID, time.Now().UTC()
	var wire []byte
	var err error
	if c.cfg.Key != nil && !c.cfg.Unsigned {
		wire, err = env.Sign(c.cfg.Key.Sign)
	} else {
		wire, err = env.Marshal()
	}
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(c.subj.Submit(c.cfg.ID, env.RunID))
	msg.Data = wire
	propagation.TraceContext{}.Inject(ctx, broker.HeaderCarrier(msg.Header))
	// The dedupe id is the digest of the very bytes sent: a retry of this
	// publish is recognised, and no other identity can have used it first.
	return &sealed{msg: msg, id: schemas.Digest(wire), env: env}, nil
}

// publish stores a sealed submission, trying again until the broker
// confirms it or ctx ends: a server restarting or a gateway failing over
// loses unconfirmed publishes, and each attempt is bounded by
// PublishAttemptTimeout so a lost one is sent again soon.
func (c *Client) publish(ctx context.Context, s *sealed) error {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, PublishAttemptTimeout)
		ack, err := c.js.PublishMsg(actx, s.msg, jetstream.WithMsgID(s.id))
		cancel()
		if err == nil {
			if ack.Duplicate {
				c.log.Info("submission was already stored (an earlier attempt of this publish)", "kind", s.env.Kind, "hop", s.env.HopID, "seq", ack.Sequence)
			}
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		c.log.Info("submission not confirmed, sending it again", "kind", s.env.Kind, "hop", s.env.HopID, "attempt", attempt+1, "err", err)
		select {
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		case <-ctx.Done():
			return err
		}
	}
}

// PublishAttemptTimeout bounds one attempt to store a submission. A NATS
// server restarting takes a few seconds; an attempt lost in it is sent
// again after this long.
const PublishAttemptTimeout = 3 * time.Second

// retryable reports whether a publish error may succeed when tried again:
// anything but a refusal the broker stated (a permission, a bad subject).
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503-like answers (no stream leader, JetStream not ready) pass.
		return apiErr.Code >= 500
	}
	return !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubject) &&
		!errors.Is(err, nats.ErrMaxPayload)
}

// receive handles one delivery.
func (c *Client) receive(m jetstream.Msg) {
	d, err := schemas.DecodeDelivery(m.Data())
	if err != nil {
		c.log.Warn("undecodable delivery", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	switch d.Kind {
	case schemas.DeliverInvoke:
		c.startTask(m, d)
		return
	case schemas.DeliverCancel:
		c.mu.Lock()
		cancel := c.running[taskKey(d.Context)]
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case schemas.DeliverProgress:
		// Progress never ends a call: it goes to the call's callback, if
		// any, and is acknowledged either way.
		c.mu.Lock()
		fn := c.watch[d.Context.HopID]
		c.mu.Unlock()
		if env, err := d.DecodeEnvelope(); fn != nil && err == nil && env != nil && env.Kind == schemas.KindProgress {
			fn(env)
		}
	default:
		c.mu.Lock()
		wait := c.waiters[d.Context.HopID]
		c.mu.Unlock()
		if wait != nil && (d.Kind != schemas.DeliverDenied || d.Denial == nil || d.Denial.SubmitKind == schemas.KindInvoke) {
			select {
			case wait <- d:
			default:
			}
		} else if c.cfg.OnDelivery != nil {
			c.cfg.OnDelivery(d)
		} else {
			c.log.Info("delivery nobody waits for", "kind", d.Kind, "hop", d.Context.HopID)
		}
	}
	if err := m.Ack(); err != nil {
		c.log.Warn("ack delivery", "err", err)
	}
}
