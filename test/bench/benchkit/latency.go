package benchkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
)

// OpenLoop is an open-loop latency measurement: submissions offered at a
// fixed rate whatever the system does, each timed from the moment it was
// scheduled to be sent (not from when it was sent: a stalled sender does
// not hide the stall, so the figures are safe from coordinated omission)
// to its delivery at the target, read by a consumer of DELIVER on a
// connection of its own, as an agent reads its deliveries.
type OpenLoop struct {
	// Workload shapes the runs (Hops delegations after each root invoke,
	// Unsigned, Shards, Conns); Runs is derived from Rate and the
	// durations.
	Workload
	// Rate is the offered rate in submissions (hops) per second.
	Rate float64
	// Warmup is offered at Rate first and not counted; Duration is the
	// measured part.
	Warmup, Duration time.Duration
}

// count is how many submissions the measurement offers, in whole runs.
func (o OpenLoop) count() (runs, total int) {
	per := 1 + o.Hops
	n := int(o.Rate * (o.Warmup + o.Duration).Seconds())
	runs = (n + per - 1) / per
	return runs, runs * per
}

// Latencies is the result of an open-loop measurement.
type Latencies struct {
	Name string
	// Offered is the rate asked for; Sent the submissions offered in the
	// measured part; Delivered how many of those reached the target before
	// the measurement gave up waiting.
	Offered         float64
	Sent, Delivered int
	// SendLag is the largest delay of an actual send behind its schedule
	// (how far the generator itself fell behind).
	SendLag time.Duration
	// P50 … Max are the latencies from the scheduled send to the delivery
	// of the measured submissions; an undelivered one counts as the wait.
	P50, P90, P99, P999, Max time.Duration
}

// quantile is the q-quantile of sorted ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// GovernedLatency offers the load to the gateway's enforcer (one
// instance, started as serve starts it).
func GovernedLatency(ctx context.Context, o OpenLoop) (Latencies, error) {
	o.Instances = 0
	return openLoop(ctx, o, "governed", func(ctx context.Context, e *env) (func(), error) {
		if err := e.g.StartEnforcer(ctx, e.enforcerConfig(o.Workload)); err != nil {
			return nil, err
		}
		return func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e.g.StopEnforcer(sctx)
		}, nil
	})
}

// RawLatency offers the load to the raw JetStream relay.
func RawLatency(ctx context.Context, o OpenLoop) (Latencies, error) {
	o.Instances = 0
	return openLoop(ctx, o, "raw relay", func(ctx context.Context, e *env) (func(), error) {
		return e.startRelay(ctx, o.Shards, false)
	})
}

// FloorLatency offers the load to the floor (Floor): the write-ahead
// append and the delivery the design requires, with no decisions.
func FloorLatency(ctx context.Context, o OpenLoop) (Latencies, error) {
	o.Instances = 0
	return openLoop(ctx, o, "floor", func(ctx context.Context, e *env) (func(), error) {
		return e.startRelay(ctx, o.Shards, true)
	})
}

// openLoop runs one measurement against what start starts.
func openLoop(ctx context.Context, o OpenLoop, name string, start func(context.Context, *env) (func(), error)) (Latencies, error) {
	if o.Rate <= 0 || o.Duration <= 0 {
		return Latencies{}, errors.New("open loop: rate and duration must be positive")
	}
	w := o.Workload
	w.Runs = 0 // nothing pre-loaded: the generator offers it all
	e, err := newEnv(ctx, w)
	if err != nil {
		return Latencies{}, err
	}
	defer e.close()
	runs, total := o.count()
	msgs := make([]*nats.Msg, 0, total)
	index := make(map[string]int, total) // hop id → position in the schedule
	if err := e.submissions(o.Workload, runs, func(m *nats.Msg) error {
		index[m.Header.Get(benchHopHeader)] = len(msgs)
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		return Latencies{}, err
	}

	// The target: a consumer of every delivery, on its own connection.
	rc, err := e.g.Connect("bench target")
	if err != nil {
		return Latencies{}, err
	}
	defer rc.Close()
	rjs, err := jetstream.New(rc)
	if err != nil {
		return Latencies{}, err
	}
	target, err := rjs.OrderedConsumer(ctx, e.subjects.Stream(broker.StreamDeliver), jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return Latencies{}, fmt.Errorf("target consumer: %w", err)
	}
	got := make([]time.Time, total)
	var mu sync.Mutex
	delivered := 0
	all := make(chan struct{})
	cc, err := target.Consume(func(m jetstream.Msg) {
		now := time.Now()
		_, hop, _, ok := e.subjects.ParseDeliver(m.Subject())
		i, known := index[hop]
		if !ok || !known {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if got[i].IsZero() {
			got[i] = now
			if delivered++; delivered == total {
				close(all)
			}
		}
	})
	if err != nil {
		return Latencies{}, fmt.Errorf("target consume: %w", err)
	}
	defer cc.Stop()

	// The generator, on its own connection.
	sc, err := e.g.Connect("bench generator")
	if err != nil {
		return Latencies{}, err
	}
	defer sc.Close()
	sjs, err := jetstream.New(sc, jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		return Latencies{}, err
	}
	stop, err := start(ctx, e)
	if err != nil {
		return Latencies{}, err
	}
	defer stop()

	period := time.Duration(float64(time.Second) / o.Rate)
	sched := make([]time.Time, total)
	t0 := time.Now().Add(50 * time.Millisecond)
	var lag time.Duration
	for i, m := range msgs {
		at := t0.Add(time.Duration(i) * period)
		sched[i] = at
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		} else {
			lag = max(lag, -d)
		}
		if _, err := sjs.PublishMsgAsync(m); err != nil {
			return Latencies{}, fmt.Errorf("offer %d: %w", i, err)
		}
	}
	wait := 30*time.Second + o.Duration
	select {
	case <-all:
	case <-time.After(wait):
	case <-ctx.Done():
		return Latencies{}, ctx.Err()
	}
	end := time.Now()

	// The measured part: every submission scheduled after the warm-up.
	from := t0.Add(o.Warmup)
	mu.Lock()
	defer mu.Unlock()
	var ds []time.Duration
	res := Latencies{Name: name, Offered: o.Rate, SendLag: lag}
	for i, at := range sched {
		if at.Before(from) {
			continue
		}
		res.Sent++
		if got[i].IsZero() {
			ds = append(ds, end.Sub(at))
			continue
		}
		res.Delivered++
		ds = append(ds, got[i].Sub(at))
	}
	slices.Sort(ds)
	res.P50, res.P90, res.P99, res.P999, res.Max = quantile(ds, 0.5), quantile(ds, 0.9), quantile(ds, 0.99), quantile(ds, 0.999), ds[len(ds)-1]
	return res, nil
}
