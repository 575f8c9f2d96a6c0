// Package ingress submits governed hops on behalf of callers the gateway
// authenticated itself, over HTTP (bearer tokens, see broker/bearer), and
// awaits their outcome: the A2A ingress (broker/a2ahttp) and the model and
// tool gateways share it.
//
// The ingress holds a gateway-side key. Every envelope it submits names
// the authenticated caller in from, says via "a2a-ingress", and is signed
// with the ingress key, which the enforcer accepts for such envelopes and
// for nothing else (an agent's own connection cannot submit one). The hop
// is tainted "ingress". What it reads back is what the gateway delivered
// to the caller: the reply as the guardrails let it through, a denial, or
// a timeout.
package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Errors the ingress returns.
var (
	// ErrDenied: the gateway denied the hop (see *DeniedError).
	ErrDenied = errors.New("ingress: hop denied")
	// ErrTimedOut: the gateway timed the hop out.
	ErrTimedOut = errors.New("ingress: hop timed out")
	// ErrUnknownHop: the hop is not in the run, or not the caller's.
	ErrUnknownHop = errors.New("ingress: no such hop of this caller")
	// ErrStopped: Pending.OnProgress asked Wait to stop.
	ErrStopped = errors.New("ingress: stopped by the progress callback")
)

// DeniedError is the denial of a submission, as the gateway delivered it.
type DeniedError struct {
	Denial schemas.Denial
	RunID  string
	HopID  string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("hop %s denied (%s): %s", e.HopID, e.Denial.Reason, e.Denial.Message)
}

// Unwrap makes errors.Is(err, ErrDenied) hold.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// Config says how the ingress reaches the bus.
type Config struct {
	// Conn is a connection in the gateway's account: it publishes to any
	// caller's submit subject and reads every delivery.
	Conn *nats.Conn
	// JetStream is Conn's JetStream context.
	JetStream jetstream.JetStream
	Subjects  broker.Subjects
	// Key is the ingress key (the enforcer's Rules.Ingress is its public
	// key).
	Key nkeys.KeyPair
	// Ledger reads the outcome of hops the ingress is asked about later
	// (GetTask).
	Ledger *ledger.Ledger
	// Logger receives the ingress's logs. Default: discard.
	Logger *slog.Logger
}

// Ingress submits hops for authenticated callers. It is safe for
// concurrent use.
type Ingress struct {
	cfg Config
	log *slog.Logger
}

// New returns an ingress.
func New(cfg Config) (*Ingress, error) {
	var errs []error
	if cfg.Conn == nil || cfg.JetStream == nil {
		errs = append(errs, errors.New("ingress: a gateway connection and its JetStream context are required"))
	}
	if cfg.Key == nil {
		errs = append(errs, errors.New("ingress: the ingress key is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ingress{cfg: cfg, log: log}, nil
}

// Call is one invoke on behalf of an authenticated caller.
type Call struct {
	// Caller is the authenticated identity the hop is from.
	Caller string
	// To is the target: an agent, tool or model.
	To string
	// ParentHopID is the hop the caller is working on, when it delegates
	// from inside a task, and RunID its run; the gateway checks the hop
	// was delivered to Caller. Empty starts a run (where policy lets Caller
	// start one).
	ParentHopID, RunID string
	// Key makes the hop unique within its parent (or, for a root call,
	// the caller's runs): the A2A messageId. A retry with the same key is
	// the same hop, answered with its recorded outcome.
	Key string
	// Message is the A2A v1.0 message.
	Message json.RawMessage
	// Estimate is reserved against the run's budget at admission.
	Estimate *schemas.Usage
}

// RootRunID is the run a root call with key starts: derived from the
// caller and the key, so a retried call names the same run and hop.
func RootRunID(caller, key string) string { return schemas.DeriveHopID("ingress:"+caller, key) }

// Pending is a submitted hop whose outcome is awaited.
type Pending struct {
	RunID, HopID string
	// OnProgress, when set before Wait, is called by Wait, in order, with
	// each progress of the hop the gateway forwards before its outcome;
	// returning false stops Wait with ErrStopped. Unset, progress is
	// skipped.
	OnProgress func(*schemas.Delivery) bool
	sub, extra *nats.Subscription
	ch         chan *nats.Msg
	// js, stream and subjects let Wait read an outcome the subscription
	// missed (a reconnect) from DELIVER itself.
	js         jetstream.JetStream
	streamName string
	stream     jetstream.Stream
	subjects   []string
}

// pollEvery is how often Wait looks in DELIVER for an outcome the
// subscription may have missed.
const pollEvery = 2 * time.Second

// stored returns an outcome of the hop already stored in DELIVER.
func (p *Pending) stored(ctx context.Context) *nats.Msg {
	if p.stream == nil {
		st, err := p.js.Stream(ctx, p.streamName)
		if err != nil {
			return nil
		}
		p.stream = st
	}
	for _, subject := range p.subjects {
		if m, err := p.stream.GetLastMsgForSubject(ctx, subject); err == nil {
			return &nats.Msg{Subject: m.Subject, Data: m.Data}
		}
	}
	return nil
}

// Invoke submits call and returns the pending hop; Wait gives its outcome.
// The subscription to the caller's deliveries for the hop is in place
// before the submission is published, so no outcome is missed.
func (i *Ingress) Invoke(ctx context.Context, call Call) (*Pending, error) {
	if err := schemas.CheckPrincipalID(call.Caller); err != nil {
		return nil, fmt.Errorf("ingress: caller: %w", err)
	}
	if call.Key == "" {
		call.Key = schemas.NewID()
	}
	env := &schemas.Envelope{Kind: schemas.KindInvoke, To: call.To, ParentHopID: call.ParentHopID, HopKey: call.Key,
		Message: call.Message, Estimate: call.Estimate}
	if call.ParentHopID == "" {
		env.RunID = RootRunID(call.Caller, call.Key)
	} else {
		// The gateway derives a delegation's run from its parent hop; the
		// run named here only routes the submission to the enforcer that
		// owns the run.
		if !schemas.ValidID(call.RunID) {
			return nil, fmt.Errorf("ingress: a delegation names the run of its parent hop (run id %q)", call.RunID)
		}
		env.RunID = call.RunID
	}
	run := env.RunID
	env.HopID = env.DerivedHopID()
	p, err := i.await(call.Caller, env.HopID)
	if err != nil {
		return nil, err
	}
	p.RunID = env.RunID
	seq, digest, err := i.submit(ctx, call.Caller, run, env)
	if err != nil {
		p.Close()
		return nil, err
	}
	// A denial is delivered under a token of the submission (its SUBMIT
	// sequence and digest), not the hop id the submission claims.
	if err := i.awaitDenial(ctx, p, call.Caller, fmt.Sprintf("s%d-%.12s", seq, digest)); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// awaitDenial adds the subject of the submission's denial to p, and looks
// for a denial delivered before the subscription was in place.
func (i *Ingress) awaitDenial(ctx context.Context, p *Pending, caller, token string) error {
	subject := i.cfg.Subjects.Deliver(caller, token, schemas.DeliverDenied)
	sub, err := i.cfg.Conn.ChanSubscribe(subject, p.ch)
	if err != nil {
		return fmt.Errorf("ingress: subscribe to the denial of hop %s: %w", p.HopID, err)
	}
	p.extra = sub
	if err := i.cfg.Conn.Flush(); err != nil {
		return fmt.Errorf("ingress: subscribe: %w", err)
	}
	stream, err := i.cfg.JetStream.Stream(ctx, i.cfg.Subjects.Stream(broker.StreamDeliver))
	if err != nil {
		return fmt.Errorf("ingress: deliveries: %w", err)
	}
	p.stream = stream
	p.subjects = append(p.subjects, subject)
	if m, err := stream.GetLastMsgForSubject(ctx, subject); err == nil {
		select {
		case p.ch <- &nats.Msg{Subject: m.Subject, Data: m.Data}:
		default:
		}
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("ingress: read the denial of hop %s: %w", p.HopID, err)
	}
	return nil
}

func (i *Ingress) await(caller, hop string) (*Pending, error) {
	// Room for a burst of progress: a message the channel has no room for
	// is dropped (an outcome is then read from DELIVER by Wait's poll).
	ch := make(chan *nats.Msg, 256)
	sub, err := i.cfg.Conn.ChanSubscribe(i.cfg.Subjects.DeliverHop(caller, hop), ch)
	if err != nil {
		return nil, fmt.Errorf("ingress: subscribe to the deliveries of hop %s: %w", hop, err)
	}
	if err := i.cfg.Conn.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("ingress: subscribe: %w", err)
	}
	subj := i.cfg.Subjects
	return &Pending{HopID: hop, sub: sub, ch: ch, js: i.cfg.JetStream, streamName: subj.Stream(broker.StreamDeliver), subjects: []string{
		subj.Deliver(caller, hop, schemas.DeliverReply), subj.Deliver(caller, hop, schemas.DeliverTimeout), subj.Deliver(caller, hop, schemas.DeliverDenied),
	}}, nil
}

// Close stops waiting.
func (p *Pending) Close() {
	_ = p.sub.Unsubscribe()
	if p.extra != nil {
		_ = p.extra.Unsubscribe()
	}
}

// Outcome is how a hop ended, as the gateway delivered it to the caller.
type Outcome struct {
	// Context is the hop's governance context (run, depth, principal).
	Context schemas.Context
	// Reply is the reply delivered (the guardrails' redacted or blocked
	// version when they changed it); nil for a denial or timeout.
	Reply *schemas.Envelope
	// Delivery is the delivery itself.
	Delivery *schemas.Delivery
}

// Wait waits for the hop's outcome. A denial returns a *DeniedError
// (ErrDenied), a timeout ErrTimedOut; both with the outcome.
func (p *Pending) Wait(ctx context.Context) (*Outcome, error) {
	defer p.Close()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ingress: hop %s: %w", p.HopID, ctx.Err())
		case <-tick.C:
			if m = p.stored(ctx); m == nil {
				continue
			}
		case m = <-p.ch:
		}
		d, err := schemas.DecodeDelivery(m.Data)
		if err != nil {
			continue // not the gateway's; nothing else writes here
		}
		if d.Kind == schemas.DeliverDenied && d.Denial != nil && d.Denial.SubmitKind != "" && d.Denial.SubmitKind != schemas.KindInvoke {
			continue // the denial of a cancel of this hop: the hop goes on
		}
		if d.Kind == schemas.DeliverProgress {
			if p.OnProgress != nil && !p.OnProgress(d) {
				return nil, fmt.Errorf("ingress: hop %s: %w", p.HopID, ErrStopped)
			}
			continue // progress never ends the wait
		}
		if p.RunID == "" {
			p.RunID = d.Context.RunID
		}
		return outcome(d)
	}
}

func outcome(d *schemas.Delivery) (*Outcome, error) {
	o := &Outcome{Context: d.Context, Delivery: d}
	switch d.Kind {
	case schemas.DeliverDenied:
		den := schemas.Denial{Reason: schemas.ReasonMalformed, Message: "denied"}
		if d.Denial != nil {
			den = *d.Denial
		}
		return o, &DeniedError{Denial: den, RunID: d.Context.RunID, HopID: d.Context.HopID}
	case schemas.DeliverTimeout:
		return o, fmt.Errorf("hop %s: %w", d.Context.HopID, ErrTimedOut)
	case schemas.DeliverReply:
		env, err := d.DecodeEnvelope()
		if err != nil || env == nil || env.Result == nil {
			return o, fmt.Errorf("ingress: hop %s: reply without a readable result: %v", d.Context.HopID, err)
		}
		o.Reply = env
		return o, nil
	}
	return o, fmt.Errorf("ingress: hop %s: unexpected %s delivery", d.Context.HopID, d.Kind)
}

// Cancel submits the caller's cancel of an open hop of run; the gateway
// closes it and tells the callee. A cancel the gateway refuses (the hop
// is not the caller's, or closed) comes back as a denial delivery, which
// Wait of the hop ignores.
func (i *Ingress) Cancel(ctx context.Context, caller, run, hop, to string) error {
	env := &schemas.Envelope{Kind: schemas.KindCancel, HopID: hop, RunID: run, To: to}
	_, _, err := i.submit(ctx, caller, run, env)
	return err
}

// submit signs env with the ingress key, for caller, and publishes it on
// caller's submit subject. It returns the submission's SUBMIT sequence
// and digest.
func (i *Ingress) submit(ctx context.Context, caller, run string, env *schemas.Envelope) (uint64, string, error) {
	env.Version, env.Via, env.From, env.SentAt = schemas.EnvelopeVersion, schemas.ViaIngress, caller, time.Now().UTC()
	wire, err := env.Sign(i.cfg.Key.Sign)
	if err != nil {
		return 0, "", fmt.Errorf("ingress: sign: %w", err)
	}
	digest := schemas.Digest(wire)
	msg := nats.NewMsg(i.cfg.Subjects.Submit(caller, run))
	msg.Data = wire
	ack, err := i.cfg.JetStream.PublishMsg(ctx, msg, jetstream.WithMsgID(digest))
	if err != nil {
		return 0, "", fmt.Errorf("ingress: submit %s hop %s for %s: %w", env.Kind, env.HopID, caller, err)
	}
	return ack.Sequence, digest, nil
}

// Hop is what the ledger says of a hop the caller made (GetTask).
type Hop struct {
	*ledger.Hop
	RunID string
	// Reply is the reply delivered, once the hop completed with one.
	Reply *schemas.Envelope
}

// Lookup reads hop of run from the ledger. Only the hop's caller may read
// it: another caller gets ErrUnknownHop, as for a hop that does not exist.
func (i *Ingress) Lookup(ctx context.Context, caller, run, hop string) (*Hop, error) {
	if i.cfg.Ledger == nil || !schemas.ValidID(run) || !schemas.ValidID(hop) {
		return nil, ErrUnknownHop
	}
	st, err := i.cfg.Ledger.Load(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("ingress: read run %s: %w", run, err)
	}
	return i.Task(ctx, caller, run, st.Hops[hop])
}

// Task is Lookup for a hop of run already folded from the ledger (the
// A2A ingress's task list holds them): it reads only the event that
// closed the hop, for the reply delivered, with one get by stream
// sequence. A nil hop, or another caller's, is ErrUnknownHop.
func (i *Ingress) Task(ctx context.Context, caller, run string, h *ledger.Hop) (*Hop, error) {
	if h == nil || h.From != caller || i.cfg.Ledger == nil {
		return nil, ErrUnknownHop
	}
	out := &Hop{Hop: h, RunID: run}
	if h.CloseStreamSeq == 0 {
		return out, nil
	}
	rec, err := i.cfg.Ledger.Get(ctx, h.CloseStreamSeq)
	if err != nil {
		return nil, fmt.Errorf("ingress: read the close of hop %s: %w", h.ID, err)
	}
	data, err := rec.Event.DecodeData()
	if err != nil {
		return out, nil
	}
	if c, ok := data.(*schemas.HopCompleted); ok && c.By != caller {
		if env, _, err := schemas.DecodeEnvelope(c.Delivered(), 0); err == nil && env.Kind == schemas.KindReply {
			out.Reply = env
		}
	}
	return out, nil
}

// Await waits for the outcome of an open hop of run the caller made
// (SubscribeToTask): the pending hop, as Invoke returns it.
func (i *Ingress) Await(caller, run, hop string) (*Pending, error) {
	p, err := i.await(caller, hop)
	if err != nil {
		return nil, err
	}
	p.RunID = run
	return p, nil
}

// Run reads a run's state from the ledger (an empty state for a run that
// does not exist).
func (i *Ingress) Run(ctx context.Context, run string) (*ledger.State, error) {
	if i.cfg.Ledger == nil {
		return ledger.NewState(run), nil
	}
	st, err := i.cfg.Ledger.Load(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("ingress: read run %s: %w", run, err)
	}
	return st, nil
}
