package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections/internal/store"
)

// RebuildOptions tune Rebuild.
type RebuildOptions struct {
	// Progress, when set, is called after every batch.
	Progress func(RebuildProgress)
	// KeepOld keeps the replaced tables in the database <database>_old
	// instead of dropping them.
	KeepOld bool
}

// RebuildProgress says how far a rebuild is.
type RebuildProgress struct {
	// Pass is 1 while re-projecting the ledger into fresh tables, 2 while
	// catching up with the events recorded meanwhile, after the swap.
	Pass int
	// Done and Total count the pass's events.
	Done, Total uint64
}

// RebuildResult is what a rebuild did.
type RebuildResult struct {
	Database string `json:"database"`
	// LedgerEvents is how many events LEDGER held when the rebuild ended;
	// Events how many distinct events the rebuilt tables hold. They match.
	LedgerEvents uint64 `json:"ledger_events"`
	Events       uint64 `json:"events"`
	// Skipped counts ledger events that could not be projected.
	Skipped uint64 `json:"skipped"`
	// Hops, Runs and Breaches count the rebuilt rows.
	Hops     uint64 `json:"hops"`
	Runs     uint64 `json:"runs"`
	Breaches uint64 `json:"breaches"`
	// CaughtUp counts the events recorded during the first pass and
	// projected after the swap.
	CaughtUp uint64        `json:"caught_up"`
	Duration time.Duration `json:"duration_ns"`
}

// Rebuild re-projects the whole ledger, from its first event, into fresh
// tables and swaps them in:
//
//  1. the tables are created empty in <database>_rebuild and every event
//     LEDGER holds at the start is projected into them;
//  2. the fresh tables replace the live ones (RENAME TABLE; the views read
//     them by name), the old ones move to <database>_old and are dropped;
//  3. the events recorded meanwhile are projected into the live tables.
//
// A projector running meanwhile keeps writing to the live tables, old then
// new; the third pass covers what it wrote to the old ones, and rows are
// idempotent, so nothing is lost or counted twice. Run one rebuild at a
// time. The result's Events must equal LedgerEvents; when they differ the
// error wraps ErrMismatch.
func Rebuild(ctx context.Context, l *ledger.Ledger, cfg Config, opts RebuildOptions) (*RebuildResult, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	live, err := store.Open(ctx, cfg.DSN, cfg.Database)
	if err != nil {
		return nil, err
	}
	defer live.Close()
	fresh, err := live.WithDatabase(suffixed(cfg.Database, "_rebuild"))
	if err != nil {
		return nil, err
	}
	old, err := live.WithDatabase(suffixed(cfg.Database, "_old"))
	if err != nil {
		return nil, err
	}
	if _, err := live.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", live.Database(), err)
	}
	for _, db := range []string{fresh.Database(), old.Database()} {
		if err := live.DropDatabase(ctx, db); err != nil {
			return nil, err
		}
	}
	if _, err := fresh.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", fresh.Database(), err)
	}
	pl, err := newPipeline(cfg, l)
	if err != nil {
		return nil, err
	}
	stream, err := l.JetStream().Stream(ctx, l.StreamName())
	if err != nil {
		return nil, fmt.Errorf("ledger stream: %w", err)
	}
	res := &RebuildResult{Database: cfg.Database}
	snapshot, err := streamState(ctx, stream)
	if err != nil {
		return nil, err
	}
	if err := replay(ctx, l, pl, fresh, snapshot.FirstSeq, snapshot.LastSeq, 1, opts.Progress, res); err != nil {
		return nil, fmt.Errorf("rebuild pass 1: %w", err)
	}
	if err := swap(ctx, live, fresh, old); err != nil {
		return nil, err
	}
	now, err := streamState(ctx, stream)
	if err != nil {
		return nil, err
	}
	if now.LastSeq > snapshot.LastSeq {
		before := res.Skipped
		if err := replay(ctx, l, pl, live, snapshot.LastSeq+1, now.LastSeq, 2, opts.Progress, res); err != nil {
			return nil, fmt.Errorf("rebuild pass 2: %w", err)
		}
		res.CaughtUp = now.LastSeq - snapshot.LastSeq - (res.Skipped - before)
	}
	var errs []error
	drop := []string{fresh.Database()}
	if !opts.KeepOld {
		drop = append(drop, old.Database())
	}
	for _, db := range drop {
		errs = append(errs, live.DropDatabase(ctx, db))
	}
	// A projector may have written events past the last pass meanwhile:
	// count those the ledger held when it ended.
	res.LedgerEvents = now.Msgs
	errs = append(errs, live.QueryRow(ctx, "SELECT count() FROM {db}.events FINAL WHERE stream_seq <= ?", []any{&res.Events}, now.LastSeq))
	for _, c := range []struct {
		table string
		n     *uint64
	}{{store.TableHops, &res.Hops}, {store.TableRuns, &res.Runs}, {store.TableBreaches, &res.Breaches}} {
		errs = append(errs, live.QueryRow(ctx, "SELECT count() FROM {db}."+c.table+" FINAL", []any{c.n}))
	}
	res.Duration = time.Since(started)
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if res.Events+res.Skipped != res.LedgerEvents {
		return res, fmt.Errorf("%w: %d events projected (%d skipped), the ledger holds %d", ErrMismatch, res.Events, res.Skipped, res.LedgerEvents)
	}
	return res, nil
}

func suffixed(db, suffix string) string {
	if len(db)+len(suffix) > 64 {
		db = db[:64-len(suffix)]
	}
	return db + suffix
}

func streamState(ctx context.Context, s jetstream.Stream) (jetstream.StreamState, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("ledger stream: %w", err)
	}
	return info.State, nil
}

// replay projects the LEDGER events from..to (stream sequences) into st,
// in order, through an ordered consumer: nothing is acked.
func replay(ctx context.Context, l *ledger.Ledger, pl *pipeline, st *store.Store,
	from, to uint64, pass int, progress func(RebuildProgress), res *RebuildResult) error {
	if to < from || to == 0 {
		return nil
	}
	total := to - from + 1
	report := func(done uint64) {
		if progress != nil {
			progress(RebuildProgress{Pass: pass, Done: done, Total: total})
		}
	}
	report(0)
	cons, err := l.JetStream().OrderedConsumer(ctx, l.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{l.Subjects().LedgerAll()},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
		// The only read consumer on LEDGER (one per rebuild pass): a rebuild
		// killed mid-pass leaves it for the server to remove this soon.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("read the ledger: %w", err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(pullBuffer(pl.cfg.BatchSize)))
	if err != nil {
		return fmt.Errorf("read the ledger: %w", err)
	}
	defer iter.Stop()
	var done uint64
	cur := newBatch()
	flush := func() error {
		if err := pl.write(ctx, st, cur, 5); err != nil {
			return err
		}
		done += uint64(cur.info.Events)
		res.Skipped += uint64(cur.skipped)
		cur = newBatch()
		report(done)
		return nil
	}
	for {
		m, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read the ledger: %w", err)
		}
		if err := pl.add(ctx, cur, m, false); err != nil {
			return err
		}
		last := cur.info.LastStreamSeq >= to || cur.pending == 0
		if cur.info.Events >= pl.cfg.BatchSize || last {
			if err := flush(); err != nil {
				return err
			}
		}
		if last {
			return nil
		}
	}
}

// swap moves the fresh tables into the live database and the live ones
// into old, in one RENAME.
func swap(ctx context.Context, live, fresh, old *store.Store) error {
	tables, err := fresh.Tables(ctx)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return errors.New("rebuild: no fresh tables to swap in")
	}
	if err := old.Exec(ctx, "CREATE DATABASE IF NOT EXISTS {db}"); err != nil {
		return err
	}
	var renames []string
	for _, t := range tables {
		renames = append(renames,
			live.SQL("{db}.`"+t+"`")+" TO "+old.SQL("{db}.`"+t+"`"),
			fresh.SQL("{db}.`"+t+"`")+" TO "+live.SQL("{db}.`"+t+"`"))
	}
	if err := live.Exec(ctx, "RENAME TABLE "+strings.Join(renames, ", ")); err != nil {
		return fmt.Errorf("swap the rebuilt tables in: %w", err)
	}
	return nil
}
