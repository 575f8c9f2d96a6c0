package enforcer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config tunes an Enforcer. The zero value of each field means its default.
type Config struct {
	// Limits are the run limits.
	Limits Limits
	// MaxEnvelopeBytes is the largest submission decoded; larger ones are
	// denied as malformed. Default 256 KiB.
	MaxEnvelopeBytes int
	// ReplayWindow is how far an envelope's sent_at may be from the time
	// the broker stored it. Default 5 minutes.
	ReplayWindow time.Duration
	// DefaultTimeout is a hop's timeout when its target sets none.
	// Default 5 minutes.
	DefaultTimeout time.Duration
	// Shards is the number of run-ordered workers. Default 64.
	Shards int
	// RunCacheSize is how many run states each shard keeps. Default 1024.
	RunCacheSize int
	// MaxAckPending bounds submissions in flight. Default 16384.
	MaxAckPending int
	// AckWait is how long a submission may stay unacknowledged before the
	// broker redelivers it. Default 30 s.
	AckWait time.Duration
	// OpTimeout bounds each ledger or broker call. Default 10 s.
	OpTimeout time.Duration
	// Consumer is the durable consumer's name. Default "enforcer".
	Consumer string
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// Clock returns the time; tests set it. Default time.Now.
	Clock func() time.Time
	// Hooks are test seams; leave them nil in production.
	Hooks Hooks
}

// Limits are the run limits. They are recorded in run.started and a run is
// held to the limits it started with.
type Limits struct {
	// MaxDelegationDepth is the deepest a hop may be; a run's first hop has
	// depth 0. Default 5.
	MaxDelegationDepth int `yaml:"max_delegation_depth"`
}

// Hooks let tests stop the enforcer at chosen points.
type Hooks struct {
	// AfterAppend runs after a submission's events are in the ledger and
	// before anything is forwarded. An error makes the enforcer abandon the
	// submission without acking or nacking it, as a crash would.
	AfterAppend func(run, hop string) error
}

func (c *Config) setDefaults() {
	if c.Limits.MaxDelegationDepth == 0 {
		c.Limits.MaxDelegationDepth = 5
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
	if c.RunCacheSize == 0 {
		c.RunCacheSize = 1024
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
	if c.Consumer == "" {
		c.Consumer = "enforcer"
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
	check(c.Limits.MaxDelegationDepth >= 0, "max_delegation_depth is %d, want 0 or more", c.Limits.MaxDelegationDepth)
	check(c.MaxEnvelopeBytes >= 0, "max_envelope_bytes must not be negative")
	check(c.ReplayWindow >= 0, "replay_window must not be negative")
	check(c.DefaultTimeout >= 0, "default timeout must not be negative")
	check(c.Shards >= 0 && c.Shards <= 4096, "shards is %d, want 1 to 4096", c.Shards)
	check(c.RunCacheSize >= 0, "run_cache_size must not be negative")
	check(c.MaxAckPending >= 0, "max_ack_pending must not be negative")
	check(c.AckWait >= 0 && (c.AckWait == 0 || c.AckWait >= 100*time.Millisecond), "ack_wait is %s, want at least 100ms", c.AckWait)
	check(c.OpTimeout >= 0, "op_timeout must not be negative")
	return errors.Join(errs...)
}
