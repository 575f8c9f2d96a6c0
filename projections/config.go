package projections

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/tollgate/tollgate/projections/internal/store"
)

// Defaults.
const (
	// DefaultDatabase is the database when neither Config.Database nor the
	// DSN names one.
	DefaultDatabase = "tollgate"
	// DefaultBatchSize bounds the events of one batch. ClickHouse pays a
	// fixed cost per column and part on every insert, so large batches are
	// cheap per event; each buffered event holds about 2 KB.
	DefaultBatchSize = 20000
	// DefaultFlushInterval bounds how long an event waits for its batch.
	DefaultFlushInterval = time.Second
	// DefaultAckWait is how long the broker waits for an ack.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxRuns bounds the runs kept folded in memory.
	DefaultMaxRuns = 10000
)

// Config configures the projections: where ClickHouse is, and how the
// projector batches.
type Config struct {
	// DSN is the ClickHouse server, native protocol:
	// clickhouse://[user[:password]@]host:port[/database][?dial_timeout=5s].
	// Required.
	DSN string
	// Database holds the tables and views. Default: the DSN's database,
	// else "tollgate".
	Database string
	// BatchSize bounds the events of one batch of inserts. Default 20000.
	BatchSize int
	// FlushInterval bounds how long an event waits for its batch to fill
	// before the batch is inserted anyway. Default 1 s.
	FlushInterval time.Duration
	// Consumer names the durable consumer of LEDGER. Required to project
	// (New) and to ask for lag: the gateway's is broker.ProjectorConsumer,
	// which operators' read-only permissions keep them off. Two projectors
	// with the same name share the work; with different names each
	// projects every event (harmless: rows are idempotent).
	Consumer string
	// AckWait is how long the broker waits for the projector to ack an
	// event before it delivers it again. It must cover a batch's flush
	// interval and insert. Default 30 s.
	AckWait time.Duration
	// MaxRuns bounds the runs whose state the projector keeps in memory; a
	// run it has forgotten is read back from the ledger. Default 10000.
	MaxRuns int
	// Logger receives the projector's logs. Default: discard.
	Logger *slog.Logger
	// LogEvery, when set, makes the projector log its counters and lag
	// (Info) at that interval. Zero: never.
	LogEvery time.Duration
	// Hooks are test seams; leave them zero in production.
	Hooks Hooks
}

// Hooks let tests stop the projector at chosen points.
type Hooks struct {
	// AfterInsert runs after ClickHouse accepted a batch's rows for one
	// table (events, breaches, hops, runs, in that order) and before the
	// batch is acked. An error stops the projector right there, as a crash
	// would: nothing of the batch is acked, so it is delivered again.
	AfterInsert func(table string, b BatchInfo) error
}

// BatchInfo describes a batch being written.
type BatchInfo struct {
	// Number counts the projector's batches from 1.
	Number uint64
	// Events is how many ledger events the batch holds.
	Events int
	// FirstStreamSeq and LastStreamSeq are the LEDGER stream sequences of
	// its first and last event.
	FirstStreamSeq, LastStreamSeq uint64
}

var consumerNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) setDefaults() {
	if c.Database == "" {
		c.Database = DefaultDatabase
		if _, db, err := store.ParseDSN(c.DSN); err == nil && db != "" {
			c.Database = db
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxRuns == 0 {
		c.MaxRuns = DefaultMaxRuns
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the config at once; zero values
// stand for their defaults.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn is required (clickhouse://host:port)"))
	} else if _, _, err := store.ParseDSN(c.DSN); err != nil {
		errs = append(errs, err)
	}
	if err := store.CheckDatabase(c.Database); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	if c.BatchSize < 1 || c.BatchSize > 1_000_000 {
		errs = append(errs, fmt.Errorf("batch_size is %d, want 1 to 1000000", c.BatchSize))
	}
	if c.FlushInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("flush_interval is %s, want at least 1ms", c.FlushInterval))
	}
	if c.AckWait < 2*c.FlushInterval || c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack_wait is %s, want at least 1s and twice the flush interval (%s)", c.AckWait, c.FlushInterval))
	}
	if c.Consumer != "" && !consumerNameRe.MatchString(c.Consumer) {
		errs = append(errs, fmt.Errorf("consumer %q: want 1 to 64 letters, digits, '_' or '-'", c.Consumer))
	}
	if c.LogEvery < 0 {
		errs = append(errs, fmt.Errorf("log_every is %s, want zero (never) or more", c.LogEvery))
	}
	if c.MaxRuns < 1 {
		errs = append(errs, fmt.Errorf("max_runs is %d, want at least 1", c.MaxRuns))
	}
	return errors.Join(errs...)
}

// DatabaseName returns the database the config names, defaults applied.
func (c Config) DatabaseName() string {
	c.setDefaults()
	return c.Database
}

// resolved returns the config with its defaults, after validating it.
func (c Config) resolved() (Config, error) {
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("projections config: %w", err)
	}
	c.setDefaults()
	return c, nil
}
