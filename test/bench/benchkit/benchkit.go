// Package benchkit measures the enforcer against a raw JetStream relay
// doing the same message work, on the same machine, in the same process:
// only the ratio travels between machines.
//
// Both consume pre-loaded submissions from SUBMIT. The relay appends each
// to LEDGER, forwards it to DELIVER (async publishes) and acks once both
// are stored, sharded by run like the enforcer. The enforcer does its whole
// job: decode, Ed25519 signature, run state, Cedar, limits, a hash-chained
// append with optimistic concurrency, the delivery, the hop's deadline
// timer, and the ack.
package benchkit

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/test/bench/cputime"
)

// Workload shapes a measurement: runs, each a root invoke followed by
// hops delegations from the orchestrator.
type Workload struct {
	Runs, Hops int
	// Unsigned sends envelopes without signatures (identities registered
	// with require_signature false).
	Unsigned bool
	// RateLimit, when set, turns on a (never reached) per-agent rate limit,
	// to measure its cost.
	RateLimit bool
	// Quota, when set, turns on a (never reached) per-agent token quota
	// (scope agent, match "*", day window) that every hop reserves in, to
	// measure its cost. The workload never replies, so every hop's
	// reservation stays open: the worst case for a quota's entry.
	Quota bool
	// Shards is the enforcer's shard count (0: its default).
	Shards int
	// Conns is how many extra connections the enforcer publishes on
	// (enforcer.connections); -1 leaves the gateway's default (4).
	Conns int
	// NoGuardrails turns message scanning off (guardrails.disabled), to
	// measure its cost.
	NoGuardrails bool
	// Instances, when above zero, partitions the runs (Partitions, default
	// 8) and runs that many enforcer instances in the process, each on a
	// connection of its own, owning the partitions it prefers.
	Instances, Partitions int
	// Profile, when set, receives a CPU profile of the measured part
	// only (from the start of consuming to the drain), not the loading.
	Profile io.Writer
}

func (w Workload) partitions() int {
	if w.Partitions > 0 {
		return w.Partitions
	}
	return 8
}

// Total is the number of submissions.
func (w Workload) Total() int { return w.Runs * (1 + w.Hops) }

// Result is one measurement.
type Result struct {
	Name     string
	Messages int
	Elapsed  time.Duration
	Cost
}

// PerSecond is the throughput.
func (r Result) PerSecond() float64 { return float64(r.Messages) / r.Elapsed.Seconds() }

// env is a gateway as serve assembles it (embedded server, streams,
// identities), with its enforcer not started yet, and the workload's
// submissions loaded into SUBMIT.
type env struct {
	dir      string
	g        *gateway.Gateway
	js       jetstream.JetStream
	subjects broker.Subjects
	keys     map[string]nkeys.KeyPair
}

const benchPolicy = `@id("all") permit (principal, action, resource);
@id("no-research-to-tomas") forbid (principal == Agent::"research", action, resource == Agent::"orchestrator") when { context.depth > 3 };`

// newEnv starts the gateway and loads the workload.
func newEnv(ctx context.Context, w Workload) (*env, error) {
	dir, err := os.MkdirTemp("", "tollgate-bench-")
	if err != nil {
		return nil, err
	}
	keys := map[string]nkeys.KeyPair{}
	cfg := &gateway.Config{NATS: gateway.NATSConfig{DataDir: dir, Listen: gateway.ListenNone}}
	cfg.Guardrails.Disabled = w.NoGuardrails
	if w.Instances > 0 {
		cfg.NATS.Partitions = w.partitions()
	}
	require := !w.Unsigned
	for _, id := range []struct {
		id, typ string
		tags    []string
	}{{"tomas", "user", nil}, {"orchestrator", "agent", []string{"entry"}}, {"research", "agent", nil}} {
		kp, err := broker.NewKey()
		if err != nil {
			return nil, err
		}
		pub, _ := kp.PublicKey()
		keys[id.id] = kp
		ic := gateway.IdentityConfig{ID: id.id, Type: id.typ, Tags: id.tags, PublicKey: pub, RequireSignature: &require}
		if id.typ == "user" {
			cfg.Users = append(cfg.Users, ic)
		} else {
			cfg.Agents = append(cfg.Agents, ic)
		}
	}
	if w.Conns >= 0 {
		cfg.Enforcer.Connections = &w.Conns
	}
	g, err := gateway.Start(ctx, cfg, gateway.Options{Policies: []policy.File{{Name: "bench.cedar", Src: []byte(benchPolicy)}}, NoEnforcer: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &env{dir: dir, g: g, subjects: g.Subjects(), keys: keys}
	if e.js, err = jetstream.New(g.Conn(), jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		e.close()
		return nil, err
	}
	if err := e.load(ctx, w); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	e.g.Close(ctx)
	os.RemoveAll(e.dir)
}

// load publishes the workload's submissions into SUBMIT, signed with the
// identities' keys.
func (e *env) load(ctx context.Context, w Workload) error {
	err := e.submissions(w, w.Runs, func(m *nats.Msg) error {
		_, err := e.js.PublishMsgAsync(m)
		return err
	})
	if err != nil {
		return err
	}
	select {
	case <-e.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submissions builds the submissions of runs runs of the workload, in
// order (each run's root invoke, then its delegations), signed with the
// identities' keys, and hands each to f. Each carries its hop id in the
// benchHopHeader header, which the enforcer ignores and the relay uses.
func (e *env) submissions(w Workload, runs int, f func(*nats.Msg) error) error {
	msg := json.RawMessage(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"summarise the sources on agent governance and list the open questions"}]}`)
	now := time.Now().UTC()
	build := func(from, run string, env *schemas.Envelope) error {
		env.Version, env.From, env.SentAt, env.Message, env.Kind = schemas.EnvelopeVersion, from, now, msg, schemas.KindInvoke
		var wire []byte
		var err error
		if w.Unsigned {
			wire, err = env.Marshal()
		} else {
			wire, err = env.Sign(e.keys[from].Sign)
		}
		if err != nil {
			return err
		}
		m := nats.NewMsg(e.subjects.Submit(from, run))
		m.Data = wire
		m.Header.Set(benchHopHeader, env.HopID)
		return f(m)
	}
	for range runs {
		run := schemas.NewID()
		root := schemas.DeriveHopID(schemas.RunScope(run), "0")
		if err := build("tomas", run, &schemas.Envelope{HopID: root, RunID: run, To: "orchestrator"}); err != nil {
			return err
		}
		for i := range w.Hops {
			key := strconv.Itoa(i)
			env := &schemas.Envelope{HopKey: key, HopID: schemas.DeriveHopID(root, key), ParentHopID: root, To: "research"}
			if err := build("orchestrator", run, env); err != nil {
				return err
			}
		}
	}
	return nil
}

// benchHopHeader carries a submission's hop id for the relay, which
// does not decode envelopes, so that its delivery subject names the hop as
// the enforcer's does.
const benchHopHeader = "Tg-Bench-Hop"

// drain measures the workload's drain: it starts what start starts, waits
// until SUBMIT is empty, and returns the wall time and the process's CPU
// time that took, with the workload's CPU profile (if any) covering
// exactly that.
func (e *env) drain(ctx context.Context, w Workload, start func() error) (elapsed, cpu time.Duration, err error) {
	cpu0, err := cputime.Process()
	if err != nil {
		return 0, 0, err
	}
	stopProfile, err := w.startProfile()
	if err != nil {
		return 0, 0, err
	}
	defer stopProfile()
	t0 := time.Now()
	if err := start(); err != nil {
		return 0, 0, err
	}
	err = e.drained(ctx)
	elapsed = time.Since(t0)
	cpu1, _ := cputime.Process()
	return elapsed, cpu1 - cpu0, err
}

// drained waits until SUBMIT is empty (every submission acked).
func (e *env) drained(ctx context.Context) error {
	s, err := e.js.Stream(ctx, e.subjects.Stream(broker.StreamSubmit))
	if err != nil {
		return err
	}
	for {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d submissions left: %w", info.State.Msgs, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// enforcerConfig is the gateway's enforcer configuration for the
// workload, with the run limits that would stop a 20-hop fan-out lifted.
func (e *env) enforcerConfig(w Workload) enforcer.Config {
	cfg := e.g.Config().EnforcerConfig()
	cfg.Shards, cfg.MaxAckPending = w.Shards, 20000
	cfg.Limits = limits.Run{MaxEdgeRepeats: -1, MaxHops: -1, MaxTotalTokens: -1, MaxCostUSD: -1}
	cfg.PerPrincipal.RunRate.Count = -1 // the workload starts its runs at once
	if w.RateLimit {
		cfg.PerAgent.InvokeRateLimit.Count, cfg.PerAgent.InvokeRateLimit.Period = 1<<30, time.Second
	}
	if w.Quota {
		cfg.Quotas = []limits.Quota{{Name: "bench", Scope: limits.ScopeAgent, Window: limits.WindowDay, MaxTokens: 1 << 50}}
	}
	return cfg
}

// Governed measures the enforcer on the workload: the gateway's own
// enforcer, started as serve starts it, with the run limits that would
// stop a 20-hop fan-out lifted.
func Governed(ctx context.Context, w Workload) (Result, error) {
	e, err := newEnv(ctx, w)
	if err != nil {
		return Result{}, err
	}
	defer e.close()
	cfg := e.enforcerConfig(w)
	var extra []*enforcer.Enforcer
	if w.Instances > 0 {
		cfg.Partitions, cfg.Instances = w.partitions(), w.Instances
	}
	for i := 1; i < w.Instances; i++ {
		nc, err := e.g.Connect(fmt.Sprintf("bench enforcer %d", i))
		if err != nil {
			return Result{}, err
		}
		defer nc.Close()
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
		if err != nil {
			return Result{}, err
		}
		ic := cfg
		ic.Instance, ic.Publishers = i, []jetstream.JetStream{}
		enf, err := enforcer.New(js, e.subjects, e.g.Registry(), ic)
		if err != nil {
			return Result{}, err
		}
		extra = append(extra, enf)
	}
	elapsed, cpu, err := e.drain(ctx, w, func() error {
		if err := e.g.StartEnforcer(ctx, cfg); err != nil {
			return err
		}
		for _, enf := range extra {
			if err := enf.Start(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	stored, serr := e.stored(ctx)
	enfs := append([]*enforcer.Enforcer{e.g.Enforcer()}, extra...)
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var allowed, errs, denied uint64
	for i, enf := range enfs {
		if i == 0 {
			e.g.StopEnforcer(stopCtx)
		} else {
			enf.Stop(stopCtx)
		}
		s := enf.Stats()
		allowed, errs, denied = allowed+s.Allowed, errs+s.Errors, denied+s.Denied
	}
	if err != nil {
		return Result{}, err
	}
	if int(allowed) != w.Total() || errs != 0 {
		return Result{}, fmt.Errorf("enforcers allowed %d of %d with %d errors, denied %d", allowed, w.Total(), errs, denied)
	}
	if serr != nil {
		return Result{}, serr
	}
	return Result{Name: "governed", Messages: w.Total(), Elapsed: elapsed, Cost: Cost{CPU: cpu, Stored: stored}}, nil
}

// RawRelay measures a plain JetStream relay on the same workload: consume,
// append to LEDGER, forward to DELIVER, ack once both are stored, sharded
// by run over the same number of workers.
func RawRelay(ctx context.Context, w Workload) (Result, error) {
	return relay(ctx, w, false)
}

// Floor measures the message work the design requires of the enforcer and
// nothing else: for each submission, an append to its run's LEDGER subject
// with the run's expected last sequence, waited for before anything is
// forwarded (write-ahead), then the forward to DELIVER, then the ack, with
// the ledger event and the delivery padded to about the governed sizes
// (FloorLedgerExtra, FloorDeliverExtra). No decoding, signature, state,
// policy or hashing: it is the rate a governed path could not beat on this
// bus, whatever its decisions cost.
func Floor(ctx context.Context, w Workload) (Result, error) {
	return relay(ctx, w, true)
}

// The bytes Floor adds to a submission to make its ledger event and its
// delivery about the size of the governed ones (the decision, chain hash
// and context around the envelope): the hops tool prints the bytes stored
// per hop of both.
const (
	FloorLedgerExtra  = 880
	FloorDeliverExtra = 490
)

func relay(ctx context.Context, w Workload, floor bool) (Result, error) {
	w.Instances = 0 // the relay reads SUBMIT unpartitioned
	e, err := newEnv(ctx, w)
	if err != nil {
		return Result{}, err
	}
	defer e.close()
	var stop func()
	elapsed, cpu, err := e.drain(ctx, w, func() (err error) {
		stop, err = e.startRelay(ctx, w.Shards, floor)
		return err
	})
	if stop != nil {
		stop()
	}
	if err != nil {
		return Result{}, err
	}
	stored, err := e.stored(ctx)
	if err != nil {
		return Result{}, err
	}
	name := "raw relay"
	if floor {
		name = "floor"
	}
	return Result{Name: name, Messages: w.Total(), Elapsed: elapsed, Cost: Cost{CPU: cpu, Stored: stored}}, nil
}

// startRelay starts the raw relay on SUBMIT over shards workers (0: 64)
// and returns what stops it. Each submission is appended to LEDGER and
// forwarded to DELIVER under its hop id (benchHopHeader). With floor, the
// append expects the run's last sequence and is stored before the forward
// is sent, and both carry the padding (Floor).
func (e *env) startRelay(ctx context.Context, shards int, floor bool) (stop func(), err error) {
	cons, err := e.js.CreateOrUpdateConsumer(ctx, e.subjects.Stream(broker.StreamSubmit), jetstream.ConsumerConfig{
		Durable: "relay", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
	})
	if err != nil {
		return nil, err
	}
	if shards == 0 {
		shards = 64
	}
	type job struct {
		m   jetstream.Msg
		run string
	}
	type pending struct {
		m  jetstream.Msg
		fs [2]jetstream.PubAckFuture
	}
	var wg sync.WaitGroup
	ins := make([]chan job, shards)
	for i := range ins {
		ins[i] = make(chan job, 256)
		acks := make(chan pending, 1024)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(acks)
			last := map[string]uint64{} // floor: each run's last LEDGER sequence (this worker owns its runs)
			for j := range ins[i] {
				hop := j.m.Headers().Get(benchHopHeader)
				if hop == "" {
					hop = schemas.NewID()
				}
				if floor {
					f, err := e.floorAppend(ctx, j.run, last[j.run], j.m.Data())
					if err != nil {
						_ = j.m.Nak()
						continue
					}
					last[j.run] = f
					d, err := e.js.PublishAsync(e.subjects.Deliver("research", hop, schemas.DeliverInvoke), padded(j.m.Data(), FloorDeliverExtra))
					if err != nil {
						_ = j.m.Nak()
						continue
					}
					acks <- pending{m: j.m, fs: [2]jetstream.PubAckFuture{d}}
					continue
				}
				l, err1 := e.js.PublishAsync(e.subjects.Ledger(j.run), j.m.Data())
				d, err2 := e.js.PublishAsync(e.subjects.Deliver("research", hop, schemas.DeliverInvoke), j.m.Data())
				if err1 != nil || err2 != nil {
					_ = j.m.Nak()
					continue
				}
				acks <- pending{m: j.m, fs: [2]jetstream.PubAckFuture{l, d}}
			}
		}()
		go func() {
			defer wg.Done()
			for p := range acks {
				ok := true
				for _, f := range p.fs {
					if f == nil {
						continue
					}
					select {
					case <-f.Ok():
					case <-f.Err():
						ok = false
					}
				}
				if ok {
					_ = p.m.Ack()
				} else {
					_ = p.m.Nak()
				}
			}
		}()
	}
	// closing guards ins: a message the client still hands over after
	// Stop is dropped (it is redelivered to no one; the measurement is
	// over), not sent on a closed channel.
	var closing sync.RWMutex
	closed := false
	closeIns := func() {
		closing.Lock()
		closed = true
		for _, in := range ins {
			close(in)
		}
		closing.Unlock()
		wg.Wait()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_, run, _ := e.subjects.ParseSubmit(m.Subject())
		h := fnv.New32a()
		h.Write([]byte(run))
		closing.RLock()
		defer closing.RUnlock()
		if !closed {
			ins[h.Sum32()%uint32(shards)] <- job{m: m, run: run}
		}
	}, jetstream.PullMaxMessages(2048))
	if err != nil {
		closeIns()
		return nil, err
	}
	return func() { cc.Stop(); closeIns() }, nil
}

// floorAppend appends data, padded, to run's LEDGER subject expecting
// last as the subject's last sequence, and waits until it is stored, as
// the enforcer's write-ahead append does; it returns the new sequence.
func (e *env) floorAppend(ctx context.Context, run string, last uint64, data []byte) (uint64, error) {
	f, err := e.js.PublishAsync(e.subjects.Ledger(run), padded(data, FloorLedgerExtra),
		jetstream.WithExpectLastSequencePerSubject(last), jetstream.WithExpectStream(e.subjects.Stream(broker.StreamLedger)))
	if err != nil {
		return 0, err
	}
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err := <-f.Err():
		return 0, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// padded is data followed by extra spaces.
func padded(data []byte, extra int) []byte {
	out := make([]byte, len(data), len(data)+extra)
	copy(out, data)
	for range extra {
		out = append(out, ' ')
	}
	return out
}
