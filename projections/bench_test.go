package projections_test

import (
	"context"
	"errors"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/test/bench/cputime"
)

// BenchmarkIngest measures how fast the projector drains a LEDGER backlog
// of b.N events (synthetic governed runs, 11 events each, envelopes of a
// realistic size) into ClickHouse, against a baseline measured on the same
// stream in the same run: a plain durable consumer that receives and acks
// every event and does nothing else. Only the ratio travels between
// machines. It also reports the CPU time this process (projector and the
// embedded NATS server; ClickHouse runs apart) spends per event, which
// neighbours on a shared machine disturb less than the rates.
// PROJ_BATCH overrides the batch size; PROJ_CPUPROFILE writes a CPU
// profile of the projection; PROJ_CLICKHOUSE_PID (the pid of the
// ClickHouse server, e.g. `pgrep -f clickhouse-server`) adds the server's
// CPU time per event during the projection, which shares the machine. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkIngest -benchtime 220000x ./projections
func BenchmarkIngest(b *testing.B) {
	e := newEnv(b)
	runs := max((b.N+runEvents-1)/runEvents, 1)
	publish(b, e.bus.JS, sealRuns(b, e.bus.Subjects, runs))
	events := runs * runEvents

	// CPU time is this process's: the projector and the embedded NATS
	// server. ClickHouse runs in a process of its own and is not counted.
	cpu0 := cputime.Now(b)
	baseline := consumeAll(b, e.bus.JS, e.bus.Subjects, uint64(events))
	baselineCPU := cputime.Now(b) - cpu0

	cfg := e.db.Config
	cfg.FlushInterval, cfg.AckWait = time.Second, time.Minute
	if n, err := strconv.Atoi(os.Getenv("PROJ_BATCH")); err == nil {
		cfg.BatchSize = n
	}
	p, err := projections.New(e.l, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if f := os.Getenv("PROJ_CPUPROFILE"); f != "" {
		out, _ := os.Create(f)
		pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	chPid, _ := strconv.Atoi(os.Getenv("PROJ_CLICKHOUSE_PID"))
	ch0 := clickhouseCPU(b, chPid)
	start, cpu1 := time.Now(), cputime.Now(b)
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	var maxLag uint64
	for p.Info().Events < uint64(events) {
		if err := p.Err(); err != nil {
			b.Fatal(err)
		}
		maxLag = max(maxLag, p.Info().Lag())
		time.Sleep(5 * time.Millisecond)
	}
	elapsed, cpu := time.Since(start), cputime.Now(b)-cpu1
	chCPU := clickhouseCPU(b, chPid) - ch0
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	if n := e.db.Count("SELECT count() FROM events FINAL"); n != uint64(events) {
		b.Fatalf("%d events in ClickHouse, want %d", n, events)
	}
	rate := float64(events) / elapsed.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(baseline, "baseline-events/s")
	b.ReportMetric(rate/baseline, "ratio")
	b.ReportMetric(float64(p.Info().Batches), "batches")
	b.ReportMetric(float64(cpu.Microseconds())/float64(events), "cpu-µs/event")
	b.ReportMetric(float64(baselineCPU.Microseconds())/float64(events), "baseline-cpu-µs/event")
	b.ReportMetric(float64(maxLag), "max-lag-events")
	if chPid > 0 {
		b.ReportMetric(float64(chCPU.Microseconds())/float64(events), "clickhouse-cpu-µs/event")
	}
	b.ReportMetric(0, "ns/op")
}

// clickhouseCPU is the CPU time the ClickHouse server of pid has used, 0
// when pid is not set.
func clickhouseCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	if pid <= 0 {
		return 0
	}
	d, err := cputime.Of(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkLiveLag publishes synthetic runs at a steady rate (PROJ_RATE
// events/s, default 20000) while the projector runs (flush interval
// 200 ms) and reports how far it trails: the largest lag seen (in events),
// how long after the last publish every event was in ClickHouse, and the
// lag in time sampled every 10 ms (p50, p99, max): the age of the oldest
// event published but not yet written and acked, 0 when none is.
//
//	go test -run '^$' -bench BenchmarkLiveLag -benchtime 110000x ./projections
func BenchmarkLiveLag(b *testing.B) {
	e := newEnv(b)
	cfg := e.db.Config
	cfg.FlushInterval, cfg.AckWait = 200*time.Millisecond, time.Minute
	p, err := projections.New(e.l, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Stop(ctx)
	}()
	runs := max((b.N+runEvents-1)/runEvents, 1)
	msgs := sealRuns(b, e.bus.Subjects, runs)
	events := uint64(len(msgs))
	rate := 20000 // events per second offered
	if n, err := strconv.Atoi(os.Getenv("PROJ_RATE")); err == nil && n > 0 {
		rate = n
	}
	var (
		maxLag uint64
		pubMu  sync.Mutex
		pubs   []published // in order of publishing
		lags   []time.Duration
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			<-tick.C
			info := p.Info()
			maxLag = max(maxLag, info.Lag())
			pubMu.Lock()
			// The oldest chunk with an event not yet projected.
			i := sort.Search(len(pubs), func(i int) bool { return pubs[i].upTo > info.Events })
			if i < len(pubs) {
				lags = append(lags, time.Since(pubs[i].at))
			} else if len(pubs) > 0 {
				lags = append(lags, 0)
			}
			pubMu.Unlock()
			if info.Events >= events {
				return
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	per := max(rate/100, 1) // events per 10 ms
	for sent := 0; sent < len(msgs); sent += per {
		at := time.Now()
		upTo := min(sent+per, len(msgs))
		publish(b, e.bus.JS, msgs[sent:upTo])
		pubMu.Lock()
		pubs = append(pubs, published{at: at, upTo: uint64(upTo)})
		pubMu.Unlock()
		if wait := time.Until(start.Add(time.Duration(sent+per) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
	}
	offered := float64(events) / time.Since(start).Seconds()
	published := time.Now()
	<-done
	catchUp := time.Since(published)
	b.StopTimer()
	b.ReportMetric(offered, "offered-events/s")
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(maxLag), "max-lag-events")
	b.ReportMetric(float64(catchUp.Milliseconds()), "catch-up-ms")
	slices.Sort(lags)
	if len(lags) > 0 {
		q := func(f float64) float64 {
			return float64(lags[min(int(f*float64(len(lags))), len(lags)-1)].Microseconds()) / 1000
		}
		b.ReportMetric(q(0.5), "lag-p50-ms")
		b.ReportMetric(q(0.99), "lag-p99-ms")
		b.ReportMetric(q(1), "lag-max-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// published is a chunk of BenchmarkLiveLag's events: when its publishing
// began and how many events were published with it.
type published struct {
	at   time.Time
	upTo uint64
}

// consumeAll is the baseline: a durable consumer that receives and acks n
// events, nothing else. It returns events per second.
func consumeAll(b *testing.B, js jetstream.JetStream, subjects broker.Subjects, n uint64) float64 {
	b.Helper()
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, subjects.Stream(broker.StreamLedger), jetstream.ConsumerConfig{
		Durable: "baseline", FilterSubject: subjects.LedgerAll(), AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: 40000, AckWait: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		b.Fatal(err)
	}
	defer iter.Stop()
	start := time.Now()
	for got := uint64(0); got < n; got++ {
		m, err := iter.Next(jetstream.NextMaxWait(10 * time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			b.Fatalf("baseline consumer got %d of %d events", got, n)
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Ack(); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
