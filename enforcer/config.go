package enforcer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/limits"
)

// Config tunes an Enforcer. The zero value of each field means its default.
type Config struct {
	// Limits are the gateway's run limits.
	Limits limits.Run
	// Workflows override run limits per workflow (the workflow of a run is
	// the one its entry agent belongs to). Only the fields set override.
	Workflows map[string]limits.Run
	// PerAgent governs every calling agent; Agents override it per agent.
	PerAgent limits.Agent
	Agents   map[string]limits.Agent
	// PerPrincipal bounds what is done on behalf of one principal.
	PerPrincipal limits.Principal
	// Quotas bound spend across runs over time windows (limits.Quota);
	// QuotaZone is the time zone of their calendar windows (nil: UTC).
	Quotas    []limits.Quota
	QuotaZone *time.Location
	// Targets are the retry policies, fallbacks and circuit breakers of
	// hops to each target; WorkflowRetries override retries per workflow.
	Targets         map[string]limits.Target
	WorkflowRetries map[string]map[string]limits.Retry
	// SpendSpikes configures the spend-spike alerts (off by default).
	SpendSpikes limits.SpendSpikes
	// BindWindow is how recently a target's consumer must have taken a
	// delivery, when it has no pull request waiting, to count as bound: a
	// target with fallbacks and no consumer bound has its hops re-routed.
	// Default 10 s.
	BindWindow time.Duration
	// Operators maps the ids of operators allowed to halt runs to their
	// nkey public keys; their halt requests must be signed.
	Operators map[string]string
	// OperatorGroups maps operators to the approver groups they belong to
	// (policy.ApproversAnnotation).
	OperatorGroups map[string][]string
	// ApprovalTimeout is how long a hop held for approval waits before it
	// is rejected. Default 1 hour.
	ApprovalTimeout time.Duration
	// MaxProgressPerHop bounds the progress a hop's target may send
	// (decision.DefaultMaxProgressPerHop when zero).
	MaxProgressPerHop int
	// MaxEnvelopeBytes is the largest submission decoded; larger ones are
	// denied as malformed. Default 256 KiB.
	MaxEnvelopeBytes int
	// ReplayWindow is how far an envelope's sent_at may be from the time
	// the broker stored it. Default 5 minutes.
	ReplayWindow time.Duration
	// DefaultTimeout is a hop's timeout when its target sets none.
	// Default 5 minutes.
	DefaultTimeout time.Duration
	// Shards is the number of workers. Work is queued per run and a run is
	// worked on by one worker at a time, in order; a slow run (a slow
	// append) holds one worker and never delays the others, so this bounds
	// how many runs are worked on at once. Default 64.
	Shards int
	// RunCacheBytes bounds the run states the enforcer keeps in memory, by
	// an estimate of their size (ledger.State.Bytes), one cache shared by
	// every worker; cold runs are folded from the ledger again when
	// they are next touched. Default 128 MiB.
	RunCacheBytes int
	// MaxAckPending bounds submissions in flight. Default 16384.
	MaxAckPending int
	// AckWait is how long a submission may stay unacknowledged before the
	// broker redelivers it. Default 30 s.
	AckWait time.Duration
	// OpTimeout bounds each ledger or broker call. Default 10 s.
	OpTimeout time.Duration
	// Consumer is the durable consumer's name. Default
	// broker.EnforcerConsumer; the timers consumer is named after it
	// (broker.TimersConsumer).
	Consumer string
	// Partitions is the number of run partitions, the same as the SUBMIT
	// stream's (broker.StreamOptions.Partitions); zero for none (one
	// queue shared by every instance). Each partition has a durable
	// consumer of SUBMIT and of TIMERS with a pinned-client priority
	// group: the server gives a partition to one instance at a time, so
	// all the work of one run is done by one instance, and moves it when
	// that instance stops pulling for PinnedTTL.
	Partitions int
	// Instance and Instances say which partitions this instance prefers
	// (those with p mod Instances = Instance): it pulls from them at once
	// and from the others, as a standby, after StandbyDelay times its
	// rank. Default: instance 0 of 1, every partition preferred.
	Instance, Instances int
	// PinnedTTL is how long a partition stays pinned to an instance that
	// stopped pulling, so how soon a dead instance's partitions are taken
	// over. Default 5 s.
	PinnedTTL time.Duration
	// StandbyDelay is how long an instance waits per rank before pulling
	// from partitions it does not prefer. Default 2 s.
	StandbyDelay time.Duration
	// ReclaimInterval is how often an instance checks whether another
	// holds a partition it prefers, and takes it back (unpins it) when the
	// same holder is seen twice in a row: a restarted instance gets its
	// partitions back within about two intervals. Default PinnedTTL;
	// negative turns reclaiming off.
	ReclaimInterval time.Duration
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// Clock returns the time; tests set it. Default time.Now.
	Clock func() time.Time
	// Publishers are extra JetStream contexts, each on a connection of its
	// own, that shards append and forward on (shard i uses publisher
	// i mod n, so a run always uses the same one). NATS reads each
	// connection on one goroutine and flushes a full buffer under the
	// connection's lock, so a single connection caps throughput. Empty:
	// everything goes over the enforcer's own connection.
	Publishers []jetstream.JetStream
	// TracerProvider, when set, receives one span per hop. It must honour
	// the ids set with tracing.WithIDs: build it with tracing.NewProvider
	// (or tracing.NewProviderWith).
	TracerProvider trace.TracerProvider
	// Metrics, when set, receive the enforcer's Prometheus metrics
	// (NewMetrics).
	Metrics *Metrics
	// Hooks are test seams; leave them nil in production.
	Hooks Hooks
}

// Hooks let tests stop the enforcer at chosen points.
type Hooks struct {
	// AfterAppend runs after a submission's (or a timer's) events are in
	// the ledger and before anything is forwarded. An error makes the
	// enforcer abandon the message without acking or nacking it, as a crash
	// would.
	AfterAppend func(run, hop string) error
}

func (c *Config) setDefaults() {
	c.Limits.SetDefaults()
	if c.BindWindow == 0 {
		c.BindWindow = 10 * time.Second
	}
	if c.PerAgent.Mode == "" {
		c.PerAgent.Mode = limits.ModeEnforce
	}
	if c.MaxEnvelopeBytes == 0 {
		c.MaxEnvelopeBytes = 256 << 10
	}
	if c.ReplayWindow == 0 {
		c.ReplayWindow = 5 * time.Minute
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 5 * time.Minute
	}
	if c.Shards == 0 {
		c.Shards = 64
	}
	if c.RunCacheBytes == 0 {
		c.RunCacheBytes = DefaultRunCacheBytes
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 16384
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 10 * time.Second
	}
	if c.PinnedTTL == 0 {
		c.PinnedTTL = 5 * time.Second
	}
	if c.ReclaimInterval == 0 {
		c.ReclaimInterval = c.PinnedTTL
	}
	if c.StandbyDelay == 0 {
		c.StandbyDelay = 2 * time.Second
	}
	if c.Consumer == "" {
		c.Consumer = broker.EnforcerConsumer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	errs = append(errs, c.limitSet().Validate())
	for id, pub := range c.Operators {
		if _, err := broker.ParsePublicKey(pub); err != nil {
			errs = append(errs, fmt.Errorf("operator %q: %w", id, err))
		}
	}
	check(c.MaxEnvelopeBytes >= 0, "max_envelope_bytes must not be negative")
	check(c.ReplayWindow >= 0, "replay_window must not be negative")
	check(c.DefaultTimeout >= 0, "default timeout must not be negative")
	check(c.ApprovalTimeout >= 0, "approval_timeout must not be negative")
	check(c.MaxProgressPerHop >= 0, "max_progress_per_hop must not be negative")
	check(c.Shards >= 0 && c.Shards <= 4096, "shards is %d, want 1 to 4096", c.Shards)
	check(c.RunCacheBytes >= 0, "run_cache_bytes must not be negative")
	check(c.MaxAckPending >= 0, "max_ack_pending must not be negative")
	check(c.AckWait >= 0 && (c.AckWait == 0 || c.AckWait >= 100*time.Millisecond), "ack_wait is %s, want at least 100ms", c.AckWait)
	check(c.OpTimeout >= 0, "op_timeout must not be negative")
	check(c.Partitions >= 0 && c.Partitions <= broker.MaxPartitions, "partitions is %d, want 0 to %d", c.Partitions, broker.MaxPartitions)
	check(c.Instances >= 0 && c.Instance >= 0 && (c.Instance == 0 || c.Instance < c.Instances),
		"instance is %d of %d, want 0 to instances-1", c.Instance, c.Instances)
	check(c.PinnedTTL == 0 || c.PinnedTTL >= 3*time.Second, "pinned_ttl is %s, want at least 3s (idle pulls renew it)", c.PinnedTTL)
	check(c.StandbyDelay >= 0, "standby_delay must not be negative")
	return errors.Join(errs...)
}

// LimitSet returns every limit of the config as one set, with defaults.
func (c Config) LimitSet() limits.Set { return c.limitSet() }

// limitSet returns every limit of the config as one set.
func (c Config) limitSet() limits.Set {
	s := limits.Set{Run: c.Limits, Workflows: c.Workflows, PerAgent: c.PerAgent, Agents: c.Agents, PerPrincipal: c.PerPrincipal,
		Quotas: c.Quotas, QuotaZone: c.QuotaZone, Targets: c.Targets, WorkflowRetries: c.WorkflowRetries, SpendSpikes: c.SpendSpikes}
	s.SetDefaults()
	return s
}

// DefaultRunCacheBytes is the run cache's budget when Config.RunCacheBytes
// is zero.
const DefaultRunCacheBytes = 128 << 20
