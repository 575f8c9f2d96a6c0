package security_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// floodSize is how many messages a flood sends: 5,000, or 1,000 under
// -short.
func floodSize() int {
	if testing.Short() {
		return 1000
	}
	return 5000
}

// rssBound is how much a flood may grow a process's resident memory.
const rssBound = 256 << 20

// rss is the resident memory of serve and, for the external variant, of
// the nats-server process.
func (g *gw) rss(t testing.TB) (serve, natsServer int64) {
	t.Helper()
	serve = vmRSS(t, g.pid())
	if g.nats != nil {
		natsServer = vmRSS(t, g.natsPid(t))
	}
	return serve, natsServer
}

func (g *gw) rssWithin(t testing.TB, serve0, nats0 int64) {
	t.Helper()
	serve, natsServer := g.rss(t)
	t.Logf("RSS: serve %d -> %d MiB, nats-server %d -> %d MiB", serve0>>20, serve>>20, nats0>>20, natsServer>>20)
	if serve-serve0 > rssBound || natsServer-nats0 > rssBound {
		t.Fatalf("RSS grew past %d MiB", rssBound>>20)
	}
}

// legitWithin runs a legitimate run and fails if it takes longer than d.
// It returns the run and how long it took.
func (g *gw) legitWithin(t testing.TB, d time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	run := g.cast.legit(t)
	took := time.Since(start)
	if took > d {
		t.Fatalf("a legitimate run took %s during the flood (bound %s)", took, d)
	}
	return run, took
}

// TestGarbageFlood: thousands of garbage submissions from one agent add at
// most reject_rate_limit rejection entries to the ledger (plus what the
// bucket refills while the flood lasts); the rest are dropped unrecorded.
// The gateway stays responsive meanwhile and its memory stays bounded.
func TestGarbageFlood(t *testing.T) {
	const limit, period = 200, time.Minute
	eachVariant(t, setup{rejectRate: fmt.Sprintf("%d/min", limit)}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		run := schemas.NewID()
		before := g.ops.snapshot(t)
		serve0, nats0 := g.rss(t)
		start := time.Now()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := g.subj.Submit("mallory", run)
			for i := range floodSize() {
				if err := mallory.nc.Publish(subject, []byte(`{"garbage":`+strconv.Itoa(i)+`}`)); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
			if err := mallory.nc.FlushTimeout(30 * time.Second); err != nil {
				t.Errorf("flush: %v", err)
			}
		}()
		legit, took := g.legitWithin(t, 15*time.Second)
		wg.Wait()
		// A run started on the flood's run token by another identity is
		// decided by the same shard, after the flood: its reply says the
		// shard is through the flood.
		eve := g.attacker(t, "eve")
		env := eve.envelope(schemas.KindInvoke)
		env.RunID, env.To, env.Message = run, "orchestrator", message("delegate")
		env.HopID = env.DerivedHopID()
		eve.submit(t, run, eve.sign(t, env), nil)
		_, m := eve.await(t, 2*time.Minute, "the reply of the run after the flood", func(d *schemas.Delivery) bool {
			return d.Kind == schemas.DeliverReply && d.Context.RunID == run
		})
		_ = m.Ack()
		elapsed := time.Since(start)
		own := g.ops.onlyOwnRejections(t, before, "mallory", run, legit)
		bound := limit + int(float64(limit)*elapsed.Seconds()/period.Seconds()) + 16
		t.Logf("%d garbage submissions in %s: %d rejection entries (bound %d); a legitimate run took %s meanwhile",
			floodSize(), elapsed.Round(time.Millisecond), len(own), bound, took.Round(time.Millisecond))
		if len(own) > bound || len(own) < limit/2 {
			t.Fatalf("%d rejection entries, want at most %d (and some)", len(own), bound)
		}
		g.rssWithin(t, serve0, nats0)
		g.cast.legit(t)
	})
}

// TestRunFlood: a flood of new runs is bounded by per_principal.run_rate:
// a user gets at most that many runs to their target; an agent with no
// start_run permit gets none. Neither can grow the ledger without bound,
// and the gateway stays responsive with bounded memory.
func TestRunFlood(t *testing.T) {
	const runRate, rejectRate = 50, 100
	eachVariant(t, setup{runRate: fmt.Sprintf("%d/min", runRate), rejectRate: fmt.Sprintf("%d/min", rejectRate)}, func(t *testing.T, g *gw) {
		var mu sync.Mutex
		served := 0
		g.agentClient(t, "sink", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
			mu.Lock()
			served++
			mu.Unlock()
			return &agent.Result{Output: agent.AgentText("sunk")}, nil
		})
		n := floodSize() / 5
		for _, who := range []string{"eve", "mallory"} {
			t.Run(strings.ToUpper(who[:1])+who[1:], func(t *testing.T) {
				a := g.attacker(t, who)
				before := g.ops.snapshot(t)
				serve0, nats0 := g.rss(t)
				mu.Lock()
				served0 := served
				mu.Unlock()
				start := time.Now()
				runs := make([]string, n)
				for i := range runs {
					env := a.envelope(schemas.KindInvoke)
					env.RunID, env.To, env.Message = schemas.NewID(), "sink", message("flood")
					env.HopID = env.DerivedHopID()
					runs[i] = env.RunID
					if err := a.nc.Publish(g.subj.Submit(who, env.RunID), a.sign(t, env)); err != nil {
						t.Fatal(err)
					}
				}
				if err := a.nc.FlushTimeout(30 * time.Second); err != nil {
					t.Fatal(err)
				}
				_, took := g.legitWithin(t, 15*time.Second)
				// Every run is decided once each has an outcome or is dropped:
				// wait until the ledger stops growing.
				var after ledgerState
				stable := 0
				brokertest.Eventually(t, 2*time.Minute, "the flood is decided", func() bool {
					s := g.ops.snapshot(t)
					if s.msgs == after.msgs {
						stable++
					} else {
						stable = 0
					}
					after = s
					return stable >= 25
				})
				elapsed := time.Since(start)
				mu.Lock()
				got := served - served0
				mu.Unlock()
				newRuns := 0
				for subj := range after.subjects {
					if _, had := before.subjects[subj]; !had {
						newRuns++
					}
				}
				t.Logf("%s: %d runs started in %s: %d served, %d new ledger subjects, %d ledger messages; a legitimate run took %s",
					who, n, elapsed.Round(time.Millisecond), got, newRuns, after.msgs-before.msgs, took.Round(time.Millisecond))
				wantServed := runRate + runRate*int(elapsed.Minutes()+1)
				if who == "mallory" {
					wantServed = 0
				}
				if got > wantServed {
					t.Errorf("%d runs served, want at most %d", got, wantServed)
				}
				bound := runRate + rejectRate + (runRate+rejectRate)*int(elapsed.Minutes()+1) + 16
				if newRuns > bound {
					t.Errorf("%d runs attempted grew the ledger by %d runs, want at most %d", n, newRuns, bound)
				}
				g.rssWithin(t, serve0, nats0)
				g.cast.legit(t)
			})
		}
		t.Run("DeniedDelegationsInOwnRun", func(t *testing.T) {
			// A member of a run (it holds a hop) sends delegations the
			// gateway denies (the target is a user). Every denial is
			// charged to the sender's rate of rejected submissions: past
			// it they are dropped, so even a member cannot grow its run's
			// ledger without bound; see docs/security.md.
			// spawner, not mallory: mallory spent its rejection rate in
			// the subtest above.
			member := g.attacker(t, "spawner")
			tk := member.delegatedTo(t)
			events := len(g.ops.read(t, tk.Run))
			serve0, nats0 := g.rss(t)
			start := time.Now()
			for i := range n {
				env := member.envelope(schemas.KindInvoke)
				env.RunID, env.ParentHopID, env.To, env.Message, env.HopKey = tk.Run, tk.Hop, "tomas", message("x"), strconv.Itoa(i)
				env.HopID = env.DerivedHopID()
				if err := member.nc.Publish(g.subj.Submit(member.id, tk.Run), member.sign(t, env)); err != nil {
					t.Fatal(err)
				}
			}
			_, took := g.legitWithin(t, 15*time.Second)
			// A submission on the same run token from another identity is
			// decided by the same shard, after the flood: its denial says
			// the shard is through the flood.
			eve := g.attacker(t, "eve")
			barrier := eve.envelope(schemas.KindInvoke)
			barrier.RunID, barrier.To, barrier.Message = tk.Run, "orchestrator", message("after the flood")
			barrier.HopID = barrier.DerivedHopID()
			eve.wantDenied(t, tk.Run, eve.sign(t, barrier), nil, schemas.ReasonRun, "")
			added := len(g.ops.verified(t, tk.Run)) - events
			t.Logf("%d denied delegations added %d events to the member's run; a legitimate run took %s", n, added, took.Round(time.Millisecond))
			// The bucket holds rejectRate and refills at rejectRate a
			// minute while the flood is decided.
			bound := rejectRate + int(float64(rejectRate)*time.Since(start).Minutes()) + 1
			if added < 1 || added > bound {
				t.Fatalf("%d denied delegations added %d events to the run, want 1 to %d (the rejection rate and its refill)", n, added, bound)
			}
			g.rssWithin(t, serve0, nats0)
			tk.finish(t, nil)
			g.cast.legit(t)
		})
	})
}

// natsPid finds the nats-server process of the external variant by its
// config file.
func (g *gw) natsPid(t testing.TB) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), g.nats.Config) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil {
			return pid
		}
	}
	t.Fatal("no nats-server process")
	return 0
}

// TestResponseFlood: every request an identity sends through its imports
// leaves the gateway's account a response mapping until it is answered or
// expires. A flood of pulls that are never answered and of acks that
// never get one must not exhaust the server's memory or stall the gateway.
func TestResponseFlood(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		serve0, nats0 := g.rss(t)
		n := floodSize() * 10
		for i := range n {
			reply := broker.InboxPrefix("mallory") + ".flood." + strconv.Itoa(i)
			// A pull that waits a minute for a delivery that never comes.
			if err := mallory.nc.PublishRequest(mallory.nextSubject(), reply, []byte(`{"batch":1,"expires":60000000000}`)); err != nil {
				t.Fatal(err)
			}
			// An ack of a delivery that does not exist, asking for an answer.
			if err := mallory.nc.PublishRequest(fmt.Sprintf("$JS.ACK.DELIVER.%s.1.%d.%d.1.0", broker.AgentConsumer("mallory"), 1<<40+i, i+1), reply, []byte("+ACK")); err != nil {
				t.Fatal(err)
			}
		}
		if err := mallory.nc.FlushTimeout(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		_, took := g.legitWithin(t, 15*time.Second)
		t.Logf("%d pulls and %d acks; a legitimate run took %s", n, n, took.Round(time.Millisecond))
		g.rssWithin(t, serve0, nats0)
		g.streamsIntact(t)
	})
}
