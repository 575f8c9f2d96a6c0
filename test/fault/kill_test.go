package fault_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// seed returns the seed of a scenario's random kill moments, printed so a
// failure can be replayed with -fault.seed.
func seed(t *testing.T) int64 {
	s := *flagSeed
	if s == 0 {
		s = time.Now().UnixNano() % 1_000_000_007
	}
	t.Logf("seed %d (replay: go test ./test/fault -run '%s$' -fault.seed %d)", s, t.Name(), s)
	return s
}

// killLoop kills victim() kills times at random moments around every
// interval (half to one and a half of it), restarting each victim with
// restart; the load runs all along.
func killLoop(t *testing.T, rng *rand.Rand, kills int, interval time.Duration, l *load, victim func(i int) *proc, restart func(p *proc)) {
	t.Helper()
	for i := range kills {
		time.Sleep(interval/2 + time.Duration(rng.Int64N(int64(interval))))
		p := victim(i)
		before := l.count()
		p.kill()
		// Down for a random moment too.
		time.Sleep(time.Duration(rng.Int64N(int64(interval / 2))))
		restart(p)
		t.Logf("kill %d of %s (runs started so far %d)", i+1, p.name, before)
	}
}

// TestKillEnforcer: serve against an external nats-server is killed with
// SIGKILL at random moments under sustained load.
func TestKillEnforcer(t *testing.T) {
	c := sizes()
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 1))
	s := start(t, options{external: true})
	l := startLoad(s, c.workers)
	killLoop(t, rng, c.kills, c.interval, l, func(int) *proc { return s.serves[0] }, func(p *proc) { p.start() })
	time.Sleep(c.interval)
	account(t, s, "SIGKILL enforcer (serve on external NATS)", sd, c.kills, l.finish()).assertAllCompleted(t)
	checkBus(t, s, s.reader())
}

// TestKillEmbeddedGateway: serve with its embedded NATS server (file
// store) is killed with SIGKILL at random moments under sustained load.
func TestKillEmbeddedGateway(t *testing.T) {
	c := sizes()
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 2))
	s := start(t, options{})
	l := startLoad(s, c.workers)
	killLoop(t, rng, c.kills, c.interval, l, func(int) *proc { return s.serves[0] }, func(p *proc) { p.start() })
	time.Sleep(c.interval)
	account(t, s, "SIGKILL embedded gateway (NATS + enforcer)", sd, c.kills, l.finish()).assertAllCompleted(t)
}

// TestRestartNATS: the external nats-server is killed and restarted mid-run
// under load; serve and the agents reconnect.
func TestRestartNATS(t *testing.T) {
	c := sizes()
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 3))
	s := start(t, options{external: true})
	l := startLoad(s, c.workers)
	restarts := max(c.kills/5, 3)
	killLoop(t, rng, restarts, 2*c.interval, l, func(int) *proc { return s.nats }, func(p *proc) { p.start() })
	time.Sleep(2 * c.interval)
	account(t, s, "nats-server SIGKILL + restart", sd, restarts, l.finish()).assertAllCompleted(t)
}

// TestKillOneOfTwoEnforcers: two serve processes share the bus; one of
// them, picked at random, is killed again and again.
func TestKillOneOfTwoEnforcers(t *testing.T) {
	c := sizes()
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 4))
	s := start(t, options{external: true, instances: 2})
	l := startLoad(s, c.workers)
	killLoop(t, rng, c.kills, c.interval, l, func(int) *proc { return s.serves[rng.IntN(2)] }, func(p *proc) { p.start() })
	time.Sleep(c.interval)
	account(t, s, "two enforcers, one SIGKILLed repeatedly", sd, c.kills, l.finish()).assertAllCompleted(t)
	checkBus(t, s, s.reader())
}

// TestKillAgents: the agent processes themselves are killed with SIGKILL
// at random moments under load, each picked at random, and restarted. A
// task cut off before its reply was stored is delivered again (after
// agent_ack_wait) and runs again in the agent's next life: that re-run
// makes the same delegations, which the gateway answers from the ledger,
// so no hop is decided twice, no delegated agent runs its hop again and no
// run spends more than once. A task whose reply was stored is never run
// again, and every run completes.
func TestKillAgents(t *testing.T) {
	c := sizes()
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 5))
	s := start(t, options{external: true, agents: []agentSpec{
		{id: "orchestrator", delegate: "research,writer", tokens: 50, entry: true},
		// A task takes a moment, so kills land in the middle of some.
		{id: "research", tokens: 100, extra: []string{"-delay", "30ms"}},
		{id: "writer", tokens: 200, extra: []string{"-delay", "30ms"}},
	}})
	l := startLoad(s, c.workers)
	killLoop(t, rng, c.kills, c.interval, l, func(int) *proc { return s.agents[rng.IntN(len(s.agents))] }, func(p *proc) {
		// It is dead: what the log holds of it so far was its last life.
		s.markKill(strings.TrimPrefix(p.name, "agent-"))
		p.start()
	})
	time.Sleep(2 * c.interval)
	tl := account(t, s, "SIGKILL agents (orchestrator, research, writer)", sd, c.kills, l.finish())
	tl.assertAllCompleted(t)
	// No hop times out here (60s), so an answer denied as late is a task
	// run again after its reply had been stored.
	if tl.lateAnswers != 0 {
		t.Fatalf("%d answers came for closed hops: a task whose reply was stored ran again", tl.lateAnswers)
	}
	if tl.crashReruns == 0 {
		t.Fatalf("no kill cut a task off: the scenario proved nothing (replay with -fault.seed %d)", sd)
	}
}
