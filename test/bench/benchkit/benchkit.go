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
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
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
	// CPU is the CPU time the process (the embedded server included) used
	// while the messages were worked off. On a shared machine it moves much
	// less than Elapsed: the wall time includes waiting for a core.
	CPU time.Duration
}

// PerSecond is the throughput.
func (r Result) PerSecond() float64 { return float64(r.Messages) / r.Elapsed.Seconds() }

// CPUPerMessage is the CPU time per message.
func (r Result) CPUPerMessage() time.Duration { return r.CPU / time.Duration(r.Messages) }

// cpuTime is the CPU time the process has used, user and system, every
// thread.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// env is a gateway as serve assembles it (embedded server, streams,
// identities), with its enforcer not started yet, and the workload's
// submissions loaded into SUBMIT.
type env struct {
	dir      string
	g        *gateway.Gateway
	js       jetstream.JetStream
	subjects broker.Subjects
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
	e := &env{dir: dir, g: g, subjects: g.Subjects()}
	if e.js, err = jetstream.New(g.Conn(), jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		e.close()
		return nil, err
	}
	if err := e.load(ctx, w, keys); err != nil {
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
func (e *env) load(ctx context.Context, w Workload, keys map[string]nkeys.KeyPair) error {
	msg := json.RawMessage(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"summarise the sources on agent governance and list the open questions"}]}`)
	now := time.Now().UTC()
	publish := func(from, run string, env *schemas.Envelope) error {
		env.Version, env.From, env.SentAt, env.Message, env.Kind = schemas.EnvelopeVersion, from, now, msg, schemas.KindInvoke
		var wire []byte
		var err error
		if w.Unsigned {
			wire, err = env.Marshal()
		} else {
			wire, err = env.Sign(keys[from].Sign)
		}
		if err != nil {
			return err
		}
		_, err = e.js.PublishAsync(e.subjects.Submit(from, run), wire)
		return err
	}
	for range w.Runs {
		run := schemas.NewID()
		root := schemas.DeriveHopID(schemas.RunScope(run), "0")
		if err := publish("tomas", run, &schemas.Envelope{HopID: root, RunID: run, To: "orchestrator"}); err != nil {
			return err
		}
		for i := range w.Hops {
			key := strconv.Itoa(i)
			env := &schemas.Envelope{HopKey: key, HopID: schemas.DeriveHopID(root, key), ParentHopID: root, To: "research"}
			if err := publish("orchestrator", run, env); err != nil {
				return err
			}
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

// Governed measures the enforcer on the workload: the gateway's own
// enforcer, started as serve starts it, with the run limits that would
// stop a 20-hop fan-out lifted.
func Governed(ctx context.Context, w Workload) (Result, error) {
	e, err := newEnv(ctx, w)
	if err != nil {
		return Result{}, err
	}
	defer e.close()
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
	start, cpu := time.Now(), cpuTime()
	if err := e.g.StartEnforcer(ctx, cfg); err != nil {
		return Result{}, err
	}
	for _, enf := range extra {
		if err := enf.Start(ctx); err != nil {
			return Result{}, err
		}
	}
	err = e.drained(ctx)
	elapsed, cpu := time.Since(start), cpuTime()-cpu
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
	return Result{Name: "governed", Messages: w.Total(), Elapsed: elapsed, CPU: cpu}, nil
}

// RawRelay measures a plain JetStream relay on the same workload: consume,
// append to LEDGER, forward to DELIVER, ack once both are stored, sharded
// by run over the same number of workers.
func RawRelay(ctx context.Context, w Workload) (Result, error) {
	w.Instances = 0 // the relay reads SUBMIT unpartitioned
	e, err := newEnv(ctx, w)
	if err != nil {
		return Result{}, err
	}
	defer e.close()
	cons, err := e.js.CreateOrUpdateConsumer(ctx, e.subjects.Stream(broker.StreamSubmit), jetstream.ConsumerConfig{
		Durable: "relay", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
	})
	if err != nil {
		return Result{}, err
	}
	shards := w.Shards
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
			for j := range ins[i] {
				l, err1 := e.js.PublishAsync(e.subjects.Ledger(j.run), j.m.Data())
				d, err2 := e.js.PublishAsync(e.subjects.Deliver("research", schemas.NewID(), schemas.DeliverInvoke), j.m.Data())
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
	start, cpu := time.Now(), cpuTime()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_, run, _ := e.subjects.ParseSubmit(m.Subject())
		h := fnv.New32a()
		h.Write([]byte(run))
		ins[h.Sum32()%uint32(shards)] <- job{m: m, run: run}
	}, jetstream.PullMaxMessages(2048))
	if err != nil {
		return Result{}, err
	}
	err = e.drained(ctx)
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	cc.Stop()
	for _, in := range ins {
		close(in)
	}
	wg.Wait()
	if err != nil {
		return Result{}, err
	}
	return Result{Name: "raw relay", Messages: w.Total(), Elapsed: elapsed, CPU: cpu}, nil
}
