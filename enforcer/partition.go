package enforcer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
)

// pinned is one partition consumer this enforcer pulls from, with the pin
// id the server last gave this enforcer on it.
type pinned struct {
	stream, name string
	part         int
	cons         jetstream.Consumer
	mu           sync.Mutex
	pin          string
}

func (p *pinned) note(m jetstream.Msg) {
	if id := m.Headers().Get(pinHeader); id != "" {
		p.mu.Lock()
		p.pin = id
		p.mu.Unlock()
	}
}

// pinHeader is the header the server stamps every message of a pinned
// consumer with: the id of the client it is pinned to.
const pinHeader = "Nats-Pin-Id"

// startPartitions creates the durable consumers of every partition and
// starts pulling from them: at once from the partitions this instance
// prefers, after StandbyDelay (times its rank) from the others, so that
// instances started together share the partitions out and every instance
// stands by for every partition. The server pins each partition to the
// first instance that pulls and moves it only when that instance stops
// pulling for PinnedTTL.
func (e *Enforcer) startPartitions(ctx context.Context, onErr jetstream.PullConsumeOpt) error {
	n := e.cfg.Partitions
	// Idle pulls are renewed well within the pinned TTL, so a live
	// instance keeps its partitions.
	expiry := max(e.cfg.PinnedTTL/3, time.Second)
	for p := range n {
		for _, c := range []struct {
			stream, base, filter, desc string
			fn                         jetstream.MessageHandler
		}{
			{broker.StreamSubmit, e.cfg.Consumer, e.subjects.SubmitPartition(p), "Tollgate enforcers: submissions of one run partition", e.dispatch},
			{broker.StreamTimers, broker.TimersConsumer(e.cfg.Consumer), e.subjects.TimerFirePartition(p), "Tollgate enforcers: fired timers of one run partition", e.dispatchTimer},
		} {
			name := broker.PartitionConsumer(c.base, p)
			cons, err := e.js.CreateOrUpdateConsumer(ctx, e.subjects.Stream(c.stream), jetstream.ConsumerConfig{
				Durable:        name,
				Description:    fmt.Sprintf("%s (%d of %d)", c.desc, p, n),
				AckPolicy:      jetstream.AckExplicitPolicy,
				AckWait:        e.cfg.AckWait,
				MaxDeliver:     -1,
				MaxAckPending:  e.cfg.MaxAckPending,
				FilterSubject:  c.filter,
				PriorityPolicy: jetstream.PriorityPolicyPinned,
				PriorityGroups: []string{broker.PartitionGroup},
				PinnedTTL:      e.cfg.PinnedTTL,
			})
			if err != nil {
				return fmt.Errorf("enforcer partition consumer %s: %w", name, err)
			}
			pc := &pinned{stream: e.subjects.Stream(c.stream), name: name, part: p, cons: cons}
			e.pinned = append(e.pinned, pc)
			fn := c.fn
			start := func() error {
				cc, err := cons.Consume(func(m jetstream.Msg) { pc.note(m); fn(m) },
					jetstream.PullPriorityGroup(broker.PartitionGroup), jetstream.PullExpiry(expiry),
					jetstream.PullMaxMessages(min(e.cfg.MaxAckPending, 2048)), onErr)
				if err != nil {
					return fmt.Errorf("enforcer consume %s: %w", name, err)
				}
				e.consumeMu.Lock()
				defer e.consumeMu.Unlock()
				if e.stopped {
					cc.Stop()
					return nil
				}
				e.consumes = append(e.consumes, cc)
				return nil
			}
			rank := e.rank(p)
			if rank == 0 {
				if err := start(); err != nil {
					return err
				}
				continue
			}
			e.consumeMu.Lock()
			e.standby = append(e.standby, time.AfterFunc(time.Duration(rank)*e.cfg.StandbyDelay, func() {
				if err := start(); err != nil {
					e.cfg.Logger.Warn("standby consume", "consumer", name, "err", err)
				}
			}))
			e.consumeMu.Unlock()
		}
	}
	return nil
}

// reclaimer takes this instance's preferred partitions back from the
// instances that took them over while it was away.
type reclaimer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startReclaim starts taking back, every ReclaimInterval, the partitions
// this instance prefers that another instance holds: a partition pinned
// to another client on two checks in a row is unpinned
// (jetstream.Stream.UnpinConsumer). The holder's waiting pulls carry its
// pin id, so the server refuses them (423) when it next delivers, and pins
// the oldest pull that names no pin: this instance's, which has been
// waiting since it started. The holder finishes the work it already
// received; a run it is still appending to when this instance starts on
// the run's next hop is kept consistent by the appends' expected last
// sequence (the second writer's append is refused and its submission
// redelivered to the new owner), so no hop is lost or decided twice.
func (e *Enforcer) startReclaim() {
	if e.cfg.Partitions == 0 || e.cfg.Instances < 2 || e.cfg.ReclaimInterval < 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &reclaimer{cancel: cancel, done: make(chan struct{})}
	e.reclaim = r
	go func() {
		defer close(r.done)
		seen := map[*pinned]string{} // foreign pin seen at the last check
		t := time.NewTicker(e.cfg.ReclaimInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, pc := range e.pinned {
				if e.rank(pc.part) != 0 {
					continue
				}
				e.reclaimOne(ctx, pc, seen)
			}
		}
	}()
}

// reclaimOne unpins pc if another client has held it since the last
// check.
func (e *Enforcer) reclaimOne(ctx context.Context, pc *pinned, seen map[*pinned]string) {
	cctx, cancel := context.WithTimeout(ctx, e.cfg.OpTimeout)
	defer cancel()
	info, err := pc.cons.Info(cctx)
	if err != nil {
		return
	}
	pc.mu.Lock()
	own := pc.pin
	pc.mu.Unlock()
	holder := ""
	for _, g := range info.PriorityGroups {
		if g.Group == broker.PartitionGroup {
			holder = g.PinnedClientID
		}
	}
	if holder == "" || holder == own {
		delete(seen, pc)
		return
	}
	// A pin this instance was just given reaches it with the first
	// message; a pin seen on two checks in a row is another instance's.
	if seen[pc] != holder {
		seen[pc] = holder
		return
	}
	delete(seen, pc)
	s, err := e.js.Stream(cctx, pc.stream)
	if err == nil {
		err = s.UnpinConsumer(cctx, pc.name, broker.PartitionGroup)
	}
	if err != nil {
		e.cfg.Logger.Warn("reclaim partition", "consumer", pc.name, "err", err)
		return
	}
	e.cfg.Logger.Info("reclaimed partition", "consumer", pc.name, "from", holder)
}

// stopReclaim stops taking partitions back; it may be called again.
func (e *Enforcer) stopReclaim() {
	if e.reclaim == nil {
		return
	}
	e.reclaim.cancel()
	<-e.reclaim.done
	e.reclaim = nil
}

// rank is how far back this instance stands for partition p: 0 for the
// partitions it prefers (p mod Instances = Instance), then in turn.
func (e *Enforcer) rank(p int) int {
	k := max(e.cfg.Instances, 1)
	return ((p-e.cfg.Instance)%k + k) % k
}

// releasePartitions unpins the partitions this enforcer holds, once its
// work is done, so that a standby takes them over at once instead of
// after the pinned TTL.
func (e *Enforcer) releasePartitions(ctx context.Context) {
	for _, pc := range e.pinned {
		pc.mu.Lock()
		pin := pc.pin
		pc.mu.Unlock()
		if pin == "" {
			continue
		}
		info, err := pc.cons.Info(ctx)
		if err != nil {
			continue
		}
		for _, g := range info.PriorityGroups {
			if g.Group != broker.PartitionGroup || g.PinnedClientID != pin {
				continue
			}
			s, err := e.js.Stream(ctx, pc.stream)
			if err == nil {
				err = s.UnpinConsumer(ctx, pc.name, broker.PartitionGroup)
			}
			if err != nil {
				e.cfg.Logger.Warn("release partition", "consumer", pc.name, "err", err)
			}
		}
	}
	e.pinned = nil
}
