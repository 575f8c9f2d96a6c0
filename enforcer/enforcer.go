package enforcer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
)

// registry is what a hop is judged against; swapped whole on reload.
type registry struct {
	dir    *broker.Directory
	engine *policy.Engine
}

// Enforcer is the governing consumer. Create it with New, then Start it;
// Stop drains it.
type Enforcer struct {
	cfg      Config
	js       jetstream.JetStream
	subjects broker.Subjects
	ledger   *ledger.Ledger
	registry atomic.Pointer[registry]

	shards []*shard
	cc     jetstream.ConsumeContext
	wg     sync.WaitGroup
	stats  counters
}

// New returns an enforcer that judges hops against dir and engine (which
// must have been built from the same directory).
func New(js jetstream.JetStream, subjects broker.Subjects, dir *broker.Directory, engine *policy.Engine, cfg Config) (*Enforcer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enforcer config: %w", err)
	}
	if dir == nil || engine == nil {
		return nil, errors.New("enforcer: a directory and a policy engine are required")
	}
	cfg.setDefaults()
	e := &Enforcer{
		cfg:      cfg,
		js:       js,
		subjects: subjects,
		ledger:   ledger.New(js, subjects.Stream(broker.StreamLedger), subjects),
	}
	e.registry.Store(&registry{dir: dir, engine: engine})
	return e, nil
}

// Reload swaps the directory and policies; hops decided after it returns use
// the new ones.
func (e *Enforcer) Reload(dir *broker.Directory, engine *policy.Engine) {
	e.registry.Store(&registry{dir: dir, engine: engine})
}

// Ledger returns the ledger the enforcer appends to.
func (e *Enforcer) Ledger() *ledger.Ledger { return e.ledger }

// Start creates (or binds to) the durable consumer of SUBMIT and starts
// consuming. It returns once consumption has begun.
func (e *Enforcer) Start(ctx context.Context) error {
	cons, err := e.js.CreateOrUpdateConsumer(ctx, e.subjects.Stream(broker.StreamSubmit), jetstream.ConsumerConfig{
		Durable:       e.cfg.Consumer,
		Description:   "Tollgate enforcers: every submission passes here",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: e.cfg.MaxAckPending,
		FilterSubject: e.subjects.SubmitAll(),
	})
	if err != nil {
		return fmt.Errorf("enforcer consumer: %w", err)
	}
	// In-flight work finishes even when ctx ends; Stop waits for it.
	work := context.WithoutCancel(ctx)
	e.shards = make([]*shard, e.cfg.Shards)
	for i := range e.shards {
		s, err := newShard(e, work)
		if err != nil {
			return err
		}
		e.shards[i] = s
		e.wg.Add(2)
		go s.run(&e.wg)
		go s.acker(&e.wg)
	}
	cc, err := cons.Consume(e.dispatch,
		jetstream.PullMaxMessages(min(e.cfg.MaxAckPending, 2048)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				e.cfg.Logger.Warn("consume", "err", err)
			}
		}))
	if err != nil {
		e.closeShards()
		return fmt.Errorf("enforcer consume: %w", err)
	}
	e.cc = cc
	return nil
}

// dispatch hands a submission to the shard that owns its run, so each run
// is handled by one goroutine, in order.
func (e *Enforcer) dispatch(m jetstream.Msg) {
	_, run, _ := e.subjects.ParseSubmit(m.Subject())
	h := fnv.New32a()
	h.Write([]byte(run))
	e.shards[h.Sum32()%uint32(len(e.shards))].in <- m
}

// Stop stops consuming, finishes the submissions in flight and waits for
// their deliveries to be acknowledged, or until ctx ends.
func (e *Enforcer) Stop(ctx context.Context) error {
	if e.cc != nil {
		e.cc.Drain()
		select {
		case <-e.cc.Closed():
		case <-ctx.Done():
		}
	}
	e.closeShards()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("enforcer stop: %w", ctx.Err())
	}
}

func (e *Enforcer) closeShards() {
	for _, s := range e.shards {
		if s != nil {
			s.close()
		}
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

// Stats are counts since the enforcer started.
type Stats struct {
	Allowed, Denied, Completed, Redelivered, Errors uint64
}

type counters struct {
	allowed, denied, completed, redelivered, errors atomic.Uint64
}

// Stats returns counts since the enforcer started.
func (e *Enforcer) Stats() Stats {
	return Stats{
		Allowed: e.stats.allowed.Load(), Denied: e.stats.denied.Load(), Completed: e.stats.completed.Load(),
		Redelivered: e.stats.redelivered.Load(), Errors: e.stats.errors.Load(),
	}
}

func backoff(delivered uint64) time.Duration {
	d := 100 * time.Millisecond << min(delivered, 6)
	return min(d, 10*time.Second)
}
