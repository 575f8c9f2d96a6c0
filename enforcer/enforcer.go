package enforcer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/enforcer/decision"
	"github.com/tollgate/tollgate/enforcer/guardrail"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/ledger"
)

// Registry is what hops are judged against: the identities, the enforced
// policies and, optionally, audit-only policies whose denials are recorded
// but not enforced. Engines must be built from the same directory.
type Registry struct {
	Dir    *broker.Directory
	Engine *policy.Engine
	// Audit, when set, is evaluated on every invoke that is allowed; what
	// it would deny is recorded in the hop's audit findings.
	Audit *policy.Engine
	// Limits and Operators, when set, replace those of the enforcer's
	// Config (a reload changes them with the policies and identities).
	Limits    *limits.Set
	Operators map[string]string
	// OperatorGroups, when set, replaces the Config's.
	OperatorGroups map[string][]string
	// Guard, when set, scans every governed message (docs/guardrails.md);
	// Checker is its external checker, nil for none.
	Guard   *guardrail.Engine
	Checker guardrail.Checker
	// Ingress is the public key the gateway's HTTP ingress signs the
	// envelopes it submits on behalf of its callers with (envelopes with
	// via "a2a-ingress"); nil: no ingress, and such envelopes are denied.
	Ingress ed25519.PublicKey
}

// Enforcer is the governing consumer. Create it with New, then Start it;
// Stop drains it.
type Enforcer struct {
	cfg      Config
	js       jetstream.JetStream
	subjects broker.Subjects
	ledger   *ledger.Ledger
	limiter  *ratelimit.Limiter
	quotas   *quota.Store
	binds    bindings
	spikes   spikes
	// breakers is the circuit-breaker bucket, opened on first use.
	breakerMu sync.Mutex
	breakers  jetstream.KeyValue
	tracer    trace.Tracer
	// rules are what hops are decided against; swapped whole on reload.
	rules atomic.Pointer[decision.Rules]
	// operators maps the operators allowed to send control commands to
	// their public keys; swapped whole on reload.
	operators atomic.Pointer[map[string]string]
	// operatorGroups maps operators to the approver groups they are in.
	operatorGroups atomic.Pointer[map[string][]string]

	// mailbox queues work per run for the workers; cache holds the runs'
	// states; pubs are the connections appends and forwards go out on.
	mailbox *mailbox
	cache   *runCache
	pubs    []publisher
	workers int
	// consumeMu guards consumes, standby and stopped: standby partitions
	// start consuming from timers.
	consumeMu sync.Mutex
	consumes  []jetstream.ConsumeContext
	standby   []*time.Timer
	stopped   bool
	// pinned are the partition consumers (Config.Partitions); reclaim
	// takes the preferred ones back after a restart.
	pinned     []*pinned
	reclaim    *reclaimer
	haltSub    *nats.Subscription
	approveSub *nats.Subscription
	quotaSub   *nats.Subscription
	querySub   *nats.Subscription
	wg         sync.WaitGroup
	stats      counters
	// cacheBytes is the estimated size of every shard's run cache, and
	// openRuns the open runs among them.
	cacheBytes atomic.Int64
	openRuns   atomic.Int64
	// timers is the TIMERS stream, looked up once.
	timersMu sync.Mutex
	timers   jetstream.Stream
	// sweepCancel stops the start-up sweep of ended runs' timers;
	// spendCancel the spend-spike watch (which flushes once more).
	sweepCancel context.CancelFunc
	spendCancel context.CancelFunc
}

// New returns an enforcer that judges hops against reg.
func New(js jetstream.JetStream, subjects broker.Subjects, reg Registry, cfg Config) (*Enforcer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enforcer config: %w", err)
	}
	if reg.Dir == nil || reg.Engine == nil {
		return nil, errors.New("enforcer: a directory and a policy engine are required")
	}
	cfg.setDefaults()
	e := &Enforcer{
		cfg:      cfg,
		js:       js,
		subjects: subjects,
		ledger:   ledger.New(js, subjects.Stream(broker.StreamLedger), subjects),
	}
	if cfg.TracerProvider != nil {
		e.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	e.Reload(reg)
	return e, nil
}

// Reload swaps the registry; hops decided after it returns use the new one.
func (e *Enforcer) Reload(reg Registry) {
	lim := e.cfg.limitSet()
	if reg.Limits != nil {
		lim = *reg.Limits
		lim.SetDefaults()
	}
	e.rules.Store(&decision.Rules{
		Dir: reg.Dir, Engine: reg.Engine, Audit: reg.Audit, Limits: lim, Guard: reg.Guard, Checker: reg.Checker, Ingress: reg.Ingress,
		ReplayWindow: e.cfg.ReplayWindow, DefaultTimeout: e.cfg.DefaultTimeout, ApprovalTimeout: e.cfg.ApprovalTimeout,
		MaxProgressPerHop: e.cfg.MaxProgressPerHop,
	})
	ops := e.cfg.Operators
	if reg.Operators != nil {
		ops = reg.Operators
	}
	e.operators.Store(&ops)
	groups := e.cfg.OperatorGroups
	if reg.OperatorGroups != nil {
		groups = reg.OperatorGroups
	}
	e.operatorGroups.Store(&groups)
}

// Ledger returns the ledger the enforcer appends to.
func (e *Enforcer) Ledger() *ledger.Ledger { return e.ledger }

// Start creates (or binds to) the durable consumers of SUBMIT and TIMERS,
// subscribes to operator halts, and starts consuming. It returns once
// consumption has begun.
func (e *Enforcer) Start(ctx context.Context) error {
	kv, err := e.js.KeyValue(ctx, e.subjects.Bucket(broker.BucketRate))
	if err != nil {
		return fmt.Errorf("enforcer: rate-limit bucket (provision the streams first): %w", err)
	}
	e.limiter = ratelimit.New(kv)
	if e.quotas, err = quota.Open(ctx, e.js, e.subjects); err != nil {
		return fmt.Errorf("enforcer: %w (provision the streams first)", err)
	}
	filter, desc := e.subjects.SubmitAll(), "Tollgate enforcers: every submission passes here"
	if e.cfg.Partitions > 0 {
		filter, desc = e.subjects.SubmitUnmapped(), "Tollgate enforcers: submissions on no run's subject (runs go to the partition consumers)"
	}
	submit, err := e.consumer(ctx, broker.StreamSubmit, e.cfg.Consumer, filter, desc)
	if err != nil {
		return err
	}
	timers, err := e.consumer(ctx, broker.StreamTimers, broker.TimersConsumer(e.cfg.Consumer), e.subjects.TimerFireAll(), "Tollgate enforcers: fired hop deadlines and run wall clocks")
	if err != nil {
		return err
	}
	// In-flight work finishes even when ctx ends; Stop waits for it.
	work := context.WithoutCancel(ctx)
	e.mailbox = newMailbox()
	if e.cache, err = newRunCache(e, e.cfg.RunCacheBytes, e.mailbox.queued); err != nil {
		return err
	}
	conns := e.cfg.Publishers
	if len(conns) == 0 {
		conns = []jetstream.JetStream{e.js}
	}
	e.pubs = make([]publisher, len(conns))
	for i, js := range conns {
		e.pubs[i] = publisher{js: js, ledger: ledger.New(js, e.subjects.Stream(broker.StreamLedger), e.subjects)}
	}
	e.workers = e.cfg.Shards
	for range e.workers {
		s := newShard(e, work)
		e.wg.Add(2)
		go s.run(&e.wg)
		go s.acker(&e.wg)
	}
	onErr := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			e.cfg.Logger.Warn("consume", "err", err)
		}
	})
	batch := jetstream.PullMaxMessages(min(e.cfg.MaxAckPending, 2048))
	for _, c := range []struct {
		cons jetstream.Consumer
		fn   jetstream.MessageHandler
	}{{submit, e.dispatch}, {timers, e.dispatchTimer}} {
		// Short pulls, renewed within seconds when a cluster node is lost.
		cc, err := c.cons.Consume(c.fn, batch, jetstream.PullExpiry(5*time.Second), onErr)
		if err != nil {
			e.stopConsuming(ctx)
			e.closeShards()
			return fmt.Errorf("enforcer consume: %w", err)
		}
		e.consumeMu.Lock()
		e.consumes = append(e.consumes, cc)
		e.consumeMu.Unlock()
	}
	if e.cfg.Partitions > 0 {
		if err := e.startPartitions(ctx, onErr); err != nil {
			e.stopConsuming(ctx)
			e.closeShards()
			return err
		}
		e.startReclaim()
	}
	e.haltSub, err = e.js.Conn().QueueSubscribe(e.subjects.CtlHalt("*"), "tollgate-enforcers", e.onHalt)
	if err != nil {
		e.stopConsuming(ctx)
		e.closeShards()
		return fmt.Errorf("enforcer: subscribe to operator halts: %w", err)
	}
	e.approveSub, err = e.js.Conn().QueueSubscribe(e.subjects.CtlApprove("*"), "tollgate-enforcers", e.onApprove)
	if err != nil {
		e.stopConsuming(ctx)
		e.closeShards()
		return fmt.Errorf("enforcer: subscribe to approvals: %w", err)
	}
	e.quotaSub, err = e.js.Conn().QueueSubscribe(e.subjects.CtlQuota(), "tollgate-enforcers", e.onQuotaStatus)
	if err != nil {
		e.stopConsuming(ctx)
		e.closeShards()
		return fmt.Errorf("enforcer: subscribe to quota status requests: %w", err)
	}
	e.querySub, err = e.js.Conn().QueueSubscribe(e.subjects.QueryAll(), "tollgate-enforcers", e.onQuery)
	if err != nil {
		e.stopConsuming(ctx)
		e.closeShards()
		return fmt.Errorf("enforcer: subscribe to queries: %w", err)
	}
	// Schedules a crash left to ended runs are removed in the background.
	sweepCtx, cancel := context.WithCancel(work)
	e.sweepCancel = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if n := e.sweepTimers(sweepCtx); n > 0 {
			e.cfg.Logger.Info("removed the timers of ended runs", "runs", n)
		}
	}()
	// The spend-spike watch adds this instance's spend to the fleet's.
	spendCtx, spendCancel := context.WithCancel(work)
	e.spendCancel = spendCancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.watchSpend(spendCtx)
	}()
	// Once Start returns, the server knows the subscriptions: a control
	// request sent then finds a responder.
	if err := e.js.Conn().FlushTimeout(e.cfg.OpTimeout); err != nil {
		e.stopConsuming(ctx)
		e.closeShards()
		return fmt.Errorf("enforcer: flush subscriptions: %w", err)
	}
	return nil
}

func (e *Enforcer) consumer(ctx context.Context, stream, name, filter, desc string) (jetstream.Consumer, error) {
	cons, err := e.js.CreateOrUpdateConsumer(ctx, e.subjects.Stream(stream), jetstream.ConsumerConfig{
		Durable:       name,
		Description:   desc,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: e.cfg.MaxAckPending,
		FilterSubject: filter,
	})
	if err != nil {
		return nil, fmt.Errorf("enforcer consumer %s: %w", name, err)
	}
	return cons, nil
}

// dispatch queues a submission behind its run's earlier work, so each run
// is handled in order by one worker at a time. It never blocks: a busy run
// cannot hold up the consumer, and so the other runs.
func (e *Enforcer) dispatch(m jetstream.Msg) {
	_, caller, run, ok := e.subjects.ParsePartitioned(m.Subject())
	if !ok {
		caller, run, ok = e.subjects.ParseSubmit(m.Subject())
	}
	if !ok {
		run = "" // a malformed subject: the submission belongs to no run
	}
	e.mailbox.put(work{run: run, caller: caller, msg: m})
}

// dispatchTimer queues a fired timer behind its run's earlier work.
func (e *Enforcer) dispatchTimer(m jetstream.Msg) {
	run, key, ok := e.subjects.ParseTimerFireIn(m.Subject())
	if !ok {
		run, key, ok = e.subjects.ParseTimerFire(m.Subject())
	}
	if !ok {
		_ = m.Term() // not ours to act on
		return
	}
	e.mailbox.put(work{run: run, msg: m, timer: true, timerKey: key})
}

// publisher returns the connection a run appends and forwards on.
func (e *Enforcer) publisher(run string) publisher {
	if len(e.pubs) == 1 {
		return e.pubs[0]
	}
	h := fnv.New32a()
	h.Write([]byte(run))
	return e.pubs[h.Sum32()%uint32(len(e.pubs))]
}

// Stop stops consuming, finishes the work in flight and waits for its
// publishes to be acknowledged, or until ctx ends.
func (e *Enforcer) Stop(ctx context.Context) error {
	if e.sweepCancel != nil {
		e.sweepCancel()
	}
	e.stopConsuming(ctx)
	e.closeShards()
	if e.spendCancel != nil {
		e.spendCancel() // after the shards: their last spend is flushed
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		// Its work done, the enforcer hands its partitions on at once.
		e.releasePartitions(ctx)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("enforcer stop: %w", ctx.Err())
	}
}

func (e *Enforcer) stopConsuming(ctx context.Context) {
	e.stopReclaim()
	for _, sub := range []*nats.Subscription{e.haltSub, e.approveSub, e.quotaSub, e.querySub} {
		if sub != nil {
			_ = sub.Drain()
		}
	}
	e.consumeMu.Lock()
	e.stopped = true
	for _, t := range e.standby {
		t.Stop()
	}
	consumes := e.consumes
	e.consumes, e.standby = nil, nil
	e.consumeMu.Unlock()
	for _, cc := range consumes {
		cc.Drain()
	}
	for _, cc := range consumes {
		select {
		case <-cc.Closed():
		case <-ctx.Done():
		}
	}
}

func (e *Enforcer) closeShards() {
	if e.mailbox != nil {
		e.mailbox.close()
	}
}

// Run starts the enforcer and stops it when ctx ends.
func (e *Enforcer) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	return e.Stop(stopCtx)
}

// CacheBytes is the estimated size of the run states the enforcer keeps in
// memory.
func (e *Enforcer) CacheBytes() int64 { return e.cacheBytes.Load() }

// OpenRuns counts the open runs (started, not ended) the enforcer holds in
// memory: the runs it governs now, give or take those evicted.
func (e *Enforcer) OpenRuns() int64 { return e.openRuns.Load() }

// Stats are counts since the enforcer started. Dropped counts the
// submissions dropped unrecorded because their sender was over its rate of
// rejected submissions; Replayed the repeated invokes answered with their
// recorded outcome.
// Unavailable counts the submissions answered "unavailable" because the
// ledger had no room to record them; Kept the tries of replies and
// cancels the ledger had no room for, kept in SUBMIT for a later try;
// Conflicts the submissions and timers
// nacked because another instance had appended to their run (while a
// partition changed hands, or without partitions).
type Stats struct {
	Allowed, Denied, Completed, TimedOut, Halted, Redelivered, Dropped, Replayed, Unavailable, Kept, Errors, Conflicts uint64
}

type counters struct {
	allowed, denied, completed, timedOut, halted, redelivered, dropped, replayed, unavailable, kept, errors, conflicts atomic.Uint64
}

// Stats returns counts since the enforcer started.
func (e *Enforcer) Stats() Stats {
	return Stats{
		Allowed: e.stats.allowed.Load(), Denied: e.stats.denied.Load(), Completed: e.stats.completed.Load(),
		TimedOut: e.stats.timedOut.Load(), Halted: e.stats.halted.Load(),
		Redelivered: e.stats.redelivered.Load(), Dropped: e.stats.dropped.Load(), Replayed: e.stats.replayed.Load(),
		Unavailable: e.stats.unavailable.Load(), Kept: e.stats.kept.Load(), Errors: e.stats.errors.Load(), Conflicts: e.stats.conflicts.Load(),
	}
}

func backoff(delivered uint64) time.Duration {
	d := 100 * time.Millisecond << min(delivered, 6)
	return min(d, 10*time.Second)
}
