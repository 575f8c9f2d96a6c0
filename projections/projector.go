package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections/internal/store"
)

// Projector is the durable consumer of LEDGER that keeps ClickHouse up to
// date. Create it with New, then Start it (or Run it); Stop flushes it.
type Projector struct {
	cfg    Config
	ledger *ledger.Ledger

	mu      sync.Mutex
	started bool
	st      *store.Store
	iter    jetstream.MessagesContext
	abort   context.CancelFunc
	done    chan struct{}
	err     error

	stats stats
}

// stats are the projector's counters, read by Info from any goroutine.
type stats struct {
	events, skipped, batches, loads atomic.Uint64
	lastSeq, pending, buffered      atomic.Uint64
	lastStored, lastBatch           atomic.Int64 // unix nanoseconds
	lastErr                         atomic.Pointer[string]
	errs                            atomic.Uint64
}

// New returns a projector of the ledger's stream into the ClickHouse of
// cfg, as the durable consumer cfg.Consumer, which is required (the
// gateway's is broker.ProjectorConsumer). It checks cfg but connects to
// nothing yet.
func New(l *ledger.Ledger, cfg Config) (*Projector, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	if cfg.Consumer == "" {
		return nil, fmt.Errorf("projections config: %w", ErrNoConsumer)
	}
	return &Projector{cfg: cfg, ledger: l}, nil
}

// Start connects to ClickHouse, applies the migrations the database
// lacks, creates (or binds to) the durable consumer and starts projecting.
// It returns once projection has begun; ctx bounds only that setup. The
// projector then runs until Stop, or until it fails (see Done and Err).
func (p *Projector) Start(ctx context.Context) (err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return ErrStarted
	}
	pl, err := newPipeline(p.cfg, p.ledger)
	if err != nil {
		return err
	}
	p.st, err = store.Open(ctx, p.cfg.DSN, p.cfg.Database)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	defer func() {
		if err != nil {
			p.st.Close()
		}
	}()
	if _, err := p.st.Migrate(ctx); err != nil {
		return fmt.Errorf("projector: migrate %s: %w", p.cfg.Database, err)
	}
	cons, err := p.ledger.JetStream().CreateOrUpdateConsumer(ctx, p.ledger.StreamName(), jetstream.ConsumerConfig{
		Durable:       p.cfg.Consumer,
		Description:   "Tollgate projections: LEDGER into ClickHouse",
		FilterSubject: p.ledger.Subjects().LedgerAll(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.cfg.AckWait,
		MaxDeliver:    -1,
		// Room for the batch being filled, the one queued, the one being
		// written, and the client's pull buffer.
		MaxAckPending: 3*p.cfg.BatchSize + pullBuffer(p.cfg.BatchSize),
	})
	if err != nil {
		return fmt.Errorf("projector consumer %s: %w", p.cfg.Consumer, err)
	}
	p.iter, err = cons.Messages(jetstream.PullMaxMessages(pullBuffer(p.cfg.BatchSize)))
	if err != nil {
		return fmt.Errorf("projector consume: %w", err)
	}
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	p.abort, p.done, p.started = abort, make(chan struct{}), true
	batches := make(chan *batch, 1)
	go p.read(work, pl, batches)
	go p.write(work, pl, batches)
	if p.cfg.LogEvery > 0 {
		go p.logEvery(p.cfg.LogEvery, p.done)
	}
	p.cfg.Logger.Info("projector started", "consumer", p.cfg.Consumer, "database", p.cfg.Database,
		"batch_size", p.cfg.BatchSize, "flush_interval", p.cfg.FlushInterval)
	return nil
}

// pullBuffer is how many messages the client keeps buffered ahead.
func pullBuffer(batchSize int) int { return min(batchSize, 4096) }

// Run starts the projector and projects until ctx ends, then stops it
// gracefully (flushing the batch in hand, for at most 30 s). It returns
// the error that stopped the projector, nil after a clean stop.
func (p *Projector) Run(ctx context.Context) error {
	if err := p.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.done:
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return p.Stop(stopCtx)
}

// Done is closed when the projector has stopped, after Stop or a failure.
func (p *Projector) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Err returns the error that stopped the projector, if any.
func (p *Projector) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop stops consuming, writes and acks the events already received, and
// waits until that is done or ctx ends (then the batch in hand is left
// unacked, to be delivered again). It returns the error that stopped the
// projector earlier, if any.
func (p *Projector) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return ErrNotStarted
	}
	iter, done, abort := p.iter, p.done, p.abort
	p.mu.Unlock()
	iter.Drain()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		abort()
		<-done
		err = fmt.Errorf("projector stop: %w", ctx.Err())
	}
	abort()
	p.st.Close()
	return errors.Join(err, p.Err())
}

// fail records the error that stops the projector and stops consuming.
func (p *Projector) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	msg := err.Error()
	p.stats.lastErr.Store(&msg)
	p.stats.errs.Add(1)
	p.cfg.Logger.Error("projector stopped", "err", err)
	p.iter.Stop()
	p.abort()
}

// read folds delivered events into batches and hands each to the writer
// once it is full or its first event has waited FlushInterval.
func (p *Projector) read(ctx context.Context, pl *pipeline, out chan<- *batch) {
	defer close(out)
	cur := newBatch()
	var full flushDeadline
	defer full.stop()
	send := func() bool {
		full.stop()
		if cur.info.Events == 0 {
			return true
		}
		select {
		case out <- cur:
			cur = newBatch()
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var m jetstream.Msg
		var err error
		if cur.info.Events == 0 {
			m, err = p.iter.Next()
		} else {
			m, err = p.iter.Next(jetstream.NextContext(full.ctx))
		}
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			if cur.pending >= uint64(p.cfg.BatchSize-cur.info.Events) && full.extend(ctx, p.cfg.FlushInterval, p.cfg.AckWait/3) {
				continue // a backlog that fills the batch: no small insert
			}
			if !send() {
				return
			}
			continue
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			send() // stopping: the writer flushes what there is
			return
		case ctx.Err() != nil: // aborted
			return
		case err != nil:
			p.cfg.Logger.Warn("projector consume", "err", err)
			continue
		}
		if cur.info.Events == 0 {
			full.start(ctx, p.cfg.FlushInterval)
		}
		if err := pl.add(ctx, cur, m, true); err != nil {
			if ctx.Err() == nil {
				p.fail(err)
			}
			return
		}
		p.stats.buffered.Add(1)
		p.stats.pending.Store(cur.pending)
		p.stats.loads.Store(pl.folder.Loads())
		if cur.info.Events >= p.cfg.BatchSize && !send() {
			return
		}
	}
}

// flushDeadline is when the batch in hand must be written: one context
// per batch, where a timeout per Next would cost a timer per message.
//
// A batch is written when it is full, or once its first event has waited
// the flush interval; but while the consumer has a backlog that would
// fill the batch (the broker holds at least as many undelivered events as
// the batch has room for), waiting does not make those events any later,
// and a small batch costs ClickHouse almost as much as a full one (a part
// per table, its files and buffers: about a quarter of a second of the
// server's CPU per batch on 18.16, whatever its size). So then the
// deadline is extended, interval by interval, until the batch is full or
// its first event has waited a third of AckWait (which leaves the rest for
// the queue and the insert, before the broker would deliver the events
// again). Live traffic, a few events pending at a time, is flushed by the
// interval as before.
type flushDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
	first  time.Time // when the batch's first event arrived
}

func (d *flushDeadline) start(parent context.Context, after time.Duration) {
	d.first = time.Now()
	d.ctx, d.cancel = context.WithTimeout(parent, after)
}

// extend moves the deadline one interval further unless the batch's first
// event would then have waited longer than maxAge. It reports whether it
// did.
func (d *flushDeadline) extend(parent context.Context, interval, maxAge time.Duration) bool {
	if d.cancel == nil || time.Since(d.first)+interval > maxAge {
		return false
	}
	d.cancel()
	d.ctx, d.cancel = context.WithTimeout(parent, interval)
	return true
}

func (d *flushDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
		d.ctx, d.cancel = nil, nil
	}
}

// write inserts each batch and then acks its events.
func (p *Projector) write(ctx context.Context, pl *pipeline, in <-chan *batch) {
	defer close(p.done)
	for b := range in {
		if err := pl.write(ctx, p.st, b, -1); err != nil {
			if ctx.Err() == nil {
				p.fail(err)
			}
			for range in { // let the reader finish
			}
			return
		}
		for _, m := range b.msgs {
			if err := m.Ack(); err != nil {
				// The event is in ClickHouse; a redelivery rewrites the same rows.
				p.cfg.Logger.Warn("ack ledger event", "err", err)
			}
		}
		s := &p.stats
		s.events.Add(uint64(b.info.Events - b.skipped))
		s.skipped.Add(uint64(b.skipped))
		s.batches.Add(1)
		s.buffered.Add(^uint64(b.info.Events - 1))
		s.lastSeq.Store(b.info.LastStreamSeq)
		s.lastStored.Store(b.lastStored.UnixNano())
		s.lastBatch.Store(time.Now().UnixNano())
	}
}

// logEvery logs the projector's counters every interval until done.
func (p *Projector) logEvery(interval time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			i := p.Info()
			p.cfg.Logger.Info("projector", "events", i.Events, "skipped", i.Skipped, "batches", i.Batches,
				"last_stream_seq", i.LastStreamSeq, "lag", i.Lag(), "run_loads", i.RunLoads, "last_error", i.LastError)
		}
	}
}

// Info is what the projector has done since it started.
type Info struct {
	// Consumer and Database name what the projector reads and writes.
	Consumer, Database string
	// Events counts the events projected and acked; Skipped those that
	// could not be projected (logged, acked all the same).
	Events, Skipped uint64
	// Batches counts the batches written.
	Batches uint64
	// LastStreamSeq is the LEDGER sequence of the last event acked.
	LastStreamSeq uint64
	// LastEventStored is when the broker stored that event.
	LastEventStored time.Time
	// LastBatch is when the last batch was written.
	LastBatch time.Time
	// Pending is how many events the broker had not delivered yet when the
	// last one was; Buffered how many were delivered but not yet written.
	Pending, Buffered uint64
	// RunLoads counts the runs read back from the ledger because their
	// earlier events were not in memory.
	RunLoads uint64
	// LastError is the last error the projector hit, if any, and Errors
	// how many it hit.
	LastError string
	Errors    uint64
}

// Lag is how many events the projection trails the ledger by, as of the
// projector's last delivery (Lag on the package reads the broker instead).
func (i Info) Lag() uint64 { return i.Pending + i.Buffered }

// Info returns the projector's counters. It is cheap and safe to call from
// any goroutine.
func (p *Projector) Info() Info {
	s := &p.stats
	i := Info{
		Consumer: p.cfg.Consumer, Database: p.cfg.Database,
		Events: s.events.Load(), Skipped: s.skipped.Load(), Batches: s.batches.Load(),
		LastStreamSeq: s.lastSeq.Load(), Pending: s.pending.Load(), Buffered: s.buffered.Load(),
		RunLoads: s.loads.Load(), Errors: s.errs.Load(),
	}
	if ns := s.lastStored.Load(); ns != 0 {
		i.LastEventStored = time.Unix(0, ns).UTC()
	}
	if ns := s.lastBatch.Load(); ns != 0 {
		i.LastBatch = time.Unix(0, ns).UTC()
	}
	if e := s.lastErr.Load(); e != nil {
		i.LastError = *e
	}
	return i
}

// Lag asks the broker how far the projector's consumer trails LEDGER.
func (p *Projector) Lag(ctx context.Context) (Lag, error) {
	return ConsumerLag(ctx, p.ledger, p.cfg.Consumer)
}
